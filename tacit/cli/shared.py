"""What every command module shares: the loaded context, one-line failures, JSON on stdout, options.

The root callback (`tacit.cli.app`) stores the global options in `state`; a command calls
`context()` to load the configuration and the database the way every other command does.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from ingestion.worker.tasks import set_context
from tacit.cli.progress import console
from tacit.context import Context

#: Global options of the root command (`--config`), set before any command runs.
state: dict[str, Path | None] = {"config": None}

JsonOption = Annotated[bool, typer.Option("--json", help="One JSON document on stdout (progress and logs on stderr).")]
ForceOption = Annotated[bool, typer.Option("--force", help="Even if the version carries documents deleted at "
                                                           "their source (recorded as an override).")]


def context(migrate: bool = True) -> Context:
    """The configuration and database of this invocation; migrated to the newest schema by default."""
    ctx = Context.load(state["config"], migrate_db=migrate)
    set_context(ctx)
    return ctx


def fail(message: str, code: int = 1) -> NoReturn:
    console.print(f"[red]tacit:[/red] {message}", highlight=False, markup=True)
    raise typer.Exit(code)


def warn(message: str) -> None:
    console.print(f"[yellow]warning:[/yellow] {message}", highlight=False)


def emit_json(data: Any) -> None:
    """Write `data` as one JSON document on stdout: the whole output of a `--json` command."""
    sys.stdout.write(json.dumps(data, default=str, ensure_ascii=False) + "\n")
