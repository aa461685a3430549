"""`python -m sopflow` runs the CLI."""

from sopflow.cli import app

app(prog_name="sopflow")
