"""moveshelf-import: declarative, idempotent import of gait-lab session folders into Moveshelf."""

from .workflow import Settings, apply, plan, validate

__all__ = ["Settings", "apply", "plan", "validate"]
