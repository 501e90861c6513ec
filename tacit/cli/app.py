"""The `tacit` command line (Typer + Rich): the root command, its command groups, and `main`.

Each group of commands lives in its own module (status, doctor, sources, intake, train, adapters,
keys, events, export, services, results) and is assembled here. A configuration error or a bad
argument is one line on stderr and exit status 2, an unknown team, source or adapter version 4,
a refusal 5, never a traceback (set TACIT_DEBUG=1 to see one). Every `--json` output is one JSON
document on stdout; progress and logs go to stderr.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, NoReturn

import typer

import tacit
from tacit.cli.adapters import adapters_app
from tacit.cli.doctor import doctor_app
from tacit.cli.events import events_app
from tacit.cli.export import export_app
from tacit.cli.intake import intake_app
from tacit.cli.keys import keys_app
from tacit.cli.results import results_app
from tacit.cli.services import services_app
from tacit.cli.shared import state
from tacit.cli.sources import sources_app
from tacit.cli.status import status_app
from tacit.cli.train import train_app
from tacit.config import ConfigError
from tacit.errors import NotFound, Refused, UsageError
from tacit.logs import ENV as LOG_FORMAT_ENV
from tacit.logs import FORMATS as LOG_FORMATS
from tacit.logs import configure_logging

# A deprecation inside transformers that PEFT triggers on every model it wraps: noise to a user.
warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.*", category=FutureWarning)

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Tacit: learn a team's private context into its own LoRA adapter.")
# Top-level commands, in the order `tacit --help` lists them.
for group in (status_app, doctor_app, intake_app, train_app, results_app, services_app):
    app.add_typer(group)
app.add_typer(sources_app, name="sources")
app.add_typer(adapters_app, name="adapters")
app.add_typer(keys_app, name="keys")
app.add_typer(events_app, name="events")
app.add_typer(export_app, name="export")


def installed_version() -> str:
    try:
        return version("tacitlm")
    except PackageNotFoundError:  # run from a checkout that is not installed
        return tacit.__version__


def _print_version(value: bool) -> None:
    if value:
        sys.stdout.write(f"tacit {installed_version()}\n")
        raise typer.Exit()


def _log_format(value: str) -> str:
    value = value.strip().lower()
    if value not in LOG_FORMATS:
        raise typer.BadParameter(f"{value!r}: use text or json")
    return value


@app.callback()
def _root(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Path to tacit.toml.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")] = False,
    log_format: Annotated[str, typer.Option(
        "--log-format", envvar=LOG_FORMAT_ENV, callback=_log_format, show_default=True,
        help=f"Logs on stderr as text or as JSON lines (also {LOG_FORMAT_ENV}=json).")] = "text",
    _version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                           help="Print the version and exit.")] = False,
) -> None:
    state["config"] = config
    state["log_format"] = log_format
    configure_logging(logging.INFO if verbose else logging.WARNING, log_format)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- entry point
def main(argv: list[str] | None = None) -> None:
    try:
        # Outside standalone mode click returns a command's `typer.Exit(code)` instead of raising it.
        code = app(args=argv, prog_name="tacit", standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except ConfigError as exc:
        _one_line(str(exc), 2)
    except Refused as exc:
        _one_line(str(exc), 5)
    except NotFound as exc:
        _one_line(str(exc), 4)
    except UsageError as exc:
        _one_line(str(exc).strip("'\""), 2)
    except KeyboardInterrupt:
        _one_line("interrupted", 130)
    except Exception as exc:
        # Typer bundles its own copy of click; recognise its exceptions by shape.
        if type(exc).__name__ == "Abort":
            _one_line("aborted", 1)
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            _one_line(exc.format_message(), 2)
        if os.environ.get("TACIT_DEBUG"):
            raise
        _one_line(f"{type(exc).__name__}: {exc}", 1)
    sys.exit(0)


def _one_line(message: str, code: int) -> NoReturn:
    message = " ".join(message.split())
    sys.stderr.write(f"tacit: {message}\n")
    sys.exit(code)


if __name__ == "__main__":
    main()
