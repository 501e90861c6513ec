"""`tacit events list|replay`: pushed webhook and import events, and processing them again."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from db import models
from ingestion.api.views import list_events
from ingestion.corpus.events import pending_event_ids
from ingestion.worker.tasks import process_event
from tacit.cli.progress import out
from tacit.cli.shared import JsonOption, context, emit_json
from tacit.errors import UsageError

events_app = typer.Typer(no_args_is_help=True, help="Pushed webhook and import events.")


@events_app.command("list")
def events_list(
    status_: Annotated[str | None, typer.Option("--status", help="pending, processed, rejected or failed.")] = None,
    limit: Annotated[int, typer.Option(help="Newest first, at most this many.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Recent events with their status."""

    rows = list_events(context(), status=status_, limit=limit)
    if as_json:
        emit_json(rows)
        return
    table = Table()
    for col in ("id", "source", "channel", "delivery", "status", "received", "error"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r["id"]), r["source"], r["channel"], r["delivery_id"][:40], r["status"],
                      str(r["received_at"])[:19], (r["error"] or "")[:60])
    out.print(table)


@events_app.command("replay")
def events_replay(
    ids: Annotated[list[int] | None, typer.Argument(help="Event ids (default: every pending and failed one).")] = None,
    source: Annotated[str | None, typer.Option("--source")] = None,
) -> None:
    """Process pending and failed events again (processed ones are skipped: idempotent)."""

    ctx = context()
    chosen = ids or pending_event_ids(ctx, include_failed=True, source=source)
    if ids:
        with ctx.session() as session:
            for event_id in ids:
                event = session.get(models.WebhookEvent, event_id)
                if event is None:
                    raise UsageError(f"no event {event_id}")
                if event.status == "failed":
                    event.status = "pending"
    for event_id in chosen:
        process_event.delay(event_id)
    out.print(f"replayed {len(chosen)} events" + ("" if ctx.config.queue.eager else " (queued on the workers)"))
