"""`tacit init` and `tacit status`: a starter configuration, and what the platform holds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ingestion.api.views import collect_status
from tacit.cli.progress import out
from tacit.cli.shared import JsonOption, context, emit_json, fail, state

status_app = typer.Typer()

TEMPLATE = """\
# Tacit configuration. ${VAR} is read from the environment; see the README.
[storage]
database_url = "sqlite:///.tacit/tacit.db"
data_dir = ".tacit"

[queue]
broker_url = "memory://"          # "redis://localhost:6379/0" to run real workers

[[teams]]
name = "platform"
base_model = "smollm2-135m"

[[sources]]
name = "assistant"
kind = "webhook"                  # pushed to: POST /webhooks/assistant, or tacit import
team = "platform"
# secret = "${ASSISTANT_WEBHOOK_SECRET}"
"""


@status_app.command()
def init(force: Annotated[bool, typer.Option(help="Overwrite an existing tacit.toml.")] = False) -> None:
    """Write a starter tacit.toml here and create the database."""
    path = Path(state["config"] or "tacit.toml")
    if path.exists() and not force:
        fail(f"{path} exists (use --force to overwrite)", 2)
    path.write_text(TEMPLATE, encoding="utf-8")
    state["config"] = path
    ctx = context()
    out.print(f"wrote {path}; database ready at {ctx.database_url}")


@status_app.command()
def status(as_json: JsonOption = False) -> None:
    """Teams, sources, corpus sizes, adapters and pending events."""

    ctx = context()
    data = collect_status(ctx)
    if as_json:
        emit_json(data)
        return
    table = Table(title="Teams")
    for col in ("team", "base model", "documents", "interactions", "chunks", "examples", "active adapter"):
        table.add_column(col)
    for t in data["teams"]:
        table.add_row(t["name"], t["base_model"], str(t["documents"]), str(t["interactions"]), str(t["chunks"]),
                      str(t["examples"]), str(t["active_adapter"] or "-"))
    out.print(table)
    table = Table(title="Sources")
    for col in ("source", "kind", "team", "status", "last sync", "documents", "last error"):
        table.add_column(col)
    for s in data["sources"]:
        table.add_row(s["name"], s["kind"], s["team"], s["status"], str(s["last_synced_at"] or "-"),
                      str(s["documents"]), (s["last_error"] or "")[:80])
    out.print(table)
    out.print(f"events: {data['events']}")
