"""`tacit sources list|show|rotate-key`: the configured sources and their stored secrets."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from ingestion.api.views import collect_status, source_detail
from tacit.cli.progress import out
from tacit.cli.shared import JsonOption, context, emit_json
from tacit.secrets import rotate_all

sources_app = typer.Typer(no_args_is_help=True, help="Configured sources.")


@sources_app.command("list")
def sources_list(as_json: JsonOption = False) -> None:
    """List configured sources."""

    data = collect_status(context())["sources"]
    if as_json:
        emit_json(data)
        return
    table = Table()
    for col in ("source", "kind", "team", "status", "schedule", "last sync"):
        table.add_column(col)
    for s in data:
        table.add_row(s["name"], s["kind"], s["team"], s["status"], s["schedule"] or "-", str(s["last_synced_at"] or "-"))
    out.print(table)


@sources_app.command("show")
def sources_show(name: Annotated[str, typer.Argument(help="The source's name.")], as_json: JsonOption = False) -> None:
    """One source: settings (secrets hidden), checkpoint, state and recent runs."""

    data = source_detail(context(), name)
    if as_json:
        emit_json(data)
        return
    out.print_json(json.dumps(data, default=str))


@sources_app.command("rotate-key")
def sources_rotate_key() -> None:
    """Re-encrypt stored secrets with the first key of TACIT_SECRET_KEY (after adding a new key)."""

    ctx = context()
    with ctx.session() as session:
        changed = rotate_all(session, ctx.secrets)
    out.print(f"re-encrypted {changed} stored secrets with the newest key")
