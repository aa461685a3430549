"""`python -m cli` runs the CLI, as the installed `sopflow` command does."""

from cli.main import app

app(prog_name="sopflow")
