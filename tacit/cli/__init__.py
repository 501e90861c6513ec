"""The `tacit` command line: `tacit.cli:main` is the console script, `python -m tacit.cli` the same."""

from tacit.cli.app import app, main
from tacit.cli.keys import keys_app

app.add_typer(keys_app, name="keys")

__all__ = ["app", "main"]
