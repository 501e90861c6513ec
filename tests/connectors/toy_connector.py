"""A connector that exists only in the test suite: the proof that a kind is a folder and an entry point.

`test_contributed_connector.py` installs it by putting a `*.dist-info` with an `entry_points.txt`
line on `sys.path`, exactly as `pip install` of a separate distribution would; nothing in the
platform names it. It contributes what the built-in vendors do: settings the configuration
check validates, a sync, a webhook route with its event handler, a beat entry and status fields.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict

from connectors.base import (
    BeatEntry,
    Checkpoint,
    Connector,
    Contributions,
    Document,
    SourceConfig,
    SyncGenerator,
)
from db import models
from ingestion.api.web import accept_event, get_context, source_of_kind
from ingestion.corpus.events import decode_body
from ingestion.corpus.runner import SyncSummary, ingest_records
from tacit.context import Context

CHANNEL = "toy"
router = APIRouter()


class ToySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    greeting: str  # required: a source without it is a configuration error


class ToyCheckpoint(Checkpoint):
    synced: int = 0


def _document(external_id: str, text: str) -> Document:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return Document(external_id=external_id, title=external_id, text=text, created_at=now, updated_at=now)


class ToyConnector(Connector):
    kind: ClassVar[str] = "toy"
    Settings: ClassVar[type[BaseModel]] = ToySettings
    Checkpoint: ClassVar[type[Checkpoint]] = ToyCheckpoint
    rate_limit: ClassVar[tuple[float | None, int]] = (50.0, 5)

    contributes: ClassVar[str | None] = "tests.connectors.toy_connector:CONTRIBUTIONS"

    def check(self) -> None:
        return None

    def sync(self, checkpoint: Checkpoint | None) -> SyncGenerator:
        done = checkpoint.synced if isinstance(checkpoint, ToyCheckpoint) else 0
        greeting = self.settings.greeting  # type: ignore[attr-defined]
        for i in range(done, 2):
            yield _document(f"toy-{i}", f"{greeting}, page {i} of the toy source.")
        return ToyCheckpoint(synced=2)


@router.post("/webhooks/toy/{source}", tags=["webhooks"])
async def toy_webhook(source: str, request: Request, ctx: Context = Depends(get_context)) -> dict[str, Any]:
    source_of_kind(ctx, source, ("toy",))
    body = (await request.body()).decode()
    event_id, created = accept_event(ctx, source, json.loads(body)["id"], body, channel=CHANNEL)
    return {"toy": event_id, "created": created}


def process_toy_event(ctx: Context, event: models.WebhookEvent, source: str) -> SyncSummary:
    payload = decode_body(event)
    return ingest_records(ctx, source, [_document(payload["id"], payload["text"])], trigger="webhook")


def beat_entries(sources: Sequence[SourceConfig], public_url: str | None) -> list[BeatEntry]:
    return [BeatEntry(f"toy-{s.name}", "tacit.sync_source", "*/5 * * * *", (s.name,)) for s in sources]


def status_fields(ctx: Context, source: str) -> dict[str, Any]:
    return {"toy": {"greeting": ctx.source_config(source).settings["greeting"]}}


CONTRIBUTIONS = Contributions(routers=(router,), event_handlers={CHANNEL: process_toy_event},
                              beat=beat_entries, status=status_fields)
