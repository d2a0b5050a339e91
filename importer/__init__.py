"""moveshelf-import: declarative, idempotent import of gait-lab session folders into Moveshelf."""
