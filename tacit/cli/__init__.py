"""The `tacit` command line: `tacit.cli:main` is the console script, `python -m tacit.cli` the same."""

from tacit.cli.app import app, main

__all__ = ["app", "main"]
