"""What every command module shares: the loaded context, one-line failures, JSON on stdout, options.

The root callback (`tacit.cli.app`) stores the global options in `state`; a command calls
`context()` to load the configuration and the database the way every other command does.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any, NoReturn

import typer

from ingestion.worker.tasks import set_context
from tacit.cli.progress import console
from tacit.context import Context
from tacit.errors import UsageError

#: Global options of the root command (`--config`, `--log-format`), set before any command runs.
state: dict[str, Any] = {"config": None, "log_format": "text"}

JsonOption = Annotated[bool, typer.Option("--json", help="One JSON document on stdout (progress and logs on stderr).")]
#: Every command names its team the same way: the first argument, `tacit <command> TEAM …`.
TeamArgument = Annotated[str, typer.Argument(metavar="TEAM", help="The team, as named in tacit.toml.", show_default=False)]
#: The same, where the deprecated `--team NAME` may stand instead (see `pick_team`).
TeamOrOption = Annotated[str | None, typer.Argument(metavar="TEAM", help="The team, as named in tacit.toml.",
                                                    show_default=False)]
#: The old spelling of some commands (`--team NAME`), still accepted with a warning.
DeprecatedTeamOption = Annotated[str | None, typer.Option("--team", hidden=True)]
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
    console.print(f"[yellow]warning:[/yellow] {message}", highlight=False, soft_wrap=True)


def emit_json(data: Any) -> None:
    """Write `data` as one JSON document on stdout: the whole output of a `--json` command."""
    sys.stdout.write(json.dumps(data, default=str, ensure_ascii=False) + "\n")


def pick_team(positional: str | None, option: str | None, command: str, *, required: bool = True) -> str | None:
    """The team named first (`tacit COMMAND TEAM`), or by the deprecated `--team` (with a warning)."""
    if option is not None:
        if positional is not None and positional != option:
            raise UsageError(f"two teams named ({positional!r} and --team {option!r}); name one: tacit {command} TEAM")
        warn(f"--team is deprecated; name the team first: tacit {command} {option}")
        return option
    if positional is None and required:
        raise UsageError(f"missing team: tacit {command} TEAM")
    return positional
