"""`python -m importer` is `moveshelf-import`."""

from .cli import run

run()
