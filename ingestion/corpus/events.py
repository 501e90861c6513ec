"""Durable push events: raw deliveries are committed first, then turned into records.

Used by the webhook service (`ingestion.api.app`) and by `tacit import`, which is a local push:
the file's lines are stored as events and processed by the same code, on a worker or inline.
Processing is idempotent by delivery id, and a crash between accepting and processing loses
nothing: pending events are picked up again (`pending_event_ids`, `tacit events replay`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError

from connectors.base import Failure
from connectors.registry import connector_class, contributions
from connectors.webhook.connector import WebhookSettings
from connectors.webhook.payload import PayloadError, parse_json, records_from_body
from connectors.webhook.records import records_from_payload
from db import models
from db.base import utcnow
from ingestion.corpus.runner import SyncSummary, ingest_records
from tacit.context import Context

log = logging.getLogger(__name__)

IMPORT_BATCH_LINES = 500
_INVALID_UTF8 = "\x00invalid-utf8"

#: A stored event's channel → the function turning it into records (or running a fetch) for its
#: source. The record format ("webhook", "import") is the default; a vendor channel's handler is
#: one of its connector's contributions (`Contributions.event_handlers`).
EventHandler = Callable[[Context, models.WebhookEvent, str], SyncSummary | None]


class EventRejected(ValueError):
    """The event's content cannot be used (malformed, mapping failed); it is kept as rejected."""


def _channel_handler(kind: str, channel: str) -> EventHandler:
    """The handler the source's connector (of `kind`) contributes for `channel`; the record format otherwise."""
    handlers = contributions(connector_class(kind)).event_handlers
    return handlers.get(channel, _record_format_handler)


def store_event(ctx: Context, source_name: str, delivery_id: str, body: str, *, channel: str = "webhook",
                headers: dict[str, Any] | None = None, status: str = "pending", error: str | None = None) -> tuple[int, bool]:
    """Commit a raw delivery. Returns (event id, created); a repeated delivery id creates nothing."""
    with ctx.session() as session:
        source = ctx.source_row(session, source_name)
        existing = session.scalar(select(models.WebhookEvent.id).where(
            models.WebhookEvent.source_id == source.id, models.WebhookEvent.delivery_id == delivery_id))
        if existing is not None:
            return existing, False
        event = models.WebhookEvent(source_id=source.id, delivery_id=delivery_id, channel=channel, body=body,
                                    headers=headers or {}, status=status, error=error)
        session.add(event)
        try:
            session.flush()
        except IntegrityError:  # a concurrent delivery of the same id won the race
            session.rollback()
            existing = session.scalar(select(models.WebhookEvent.id).where(
                models.WebhookEvent.source_id == source.id, models.WebhookEvent.delivery_id == delivery_id))
            return existing or 0, False
        return event.id, True


def process_event(ctx: Context, event_id: int) -> dict[str, Any]:
    """Turn one stored event into corpus records; a processed event is not processed again.

    Two workers never process the same event at once (a PostgreSQL advisory lock, released by
    the server if the worker dies; an in-process lock on SQLite). A worker killed half-way
    leaves the event pending: processing it again rewrites the same records (upserts are
    idempotent), so nothing is lost and nothing duplicated.
    """
    with _claim(ctx, event_id) as claimed:
        if not claimed:
            return {"event": event_id, "status": "in_progress", "skipped": True}
        return _process_claimed(ctx, event_id)


def _process_claimed(ctx: Context, event_id: int) -> dict[str, Any]:
    with ctx.session() as session:
        event = session.get(models.WebhookEvent, event_id)
        if event is None:
            return {"event": event_id, "status": "missing"}
        if event.status in ("processed", "rejected"):
            return {"event": event_id, "status": event.status, "skipped": True}
        source = session.get(models.Source, event.source_id)
        assert source is not None
        event.attempts += 1  # committed now, so an attempt that dies half-way is still counted
        session.flush()
        session.expunge(event)
        source_name, source_kind = source.name, source.kind
        team_name = session.get(models.Team, source.team_id).name  # type: ignore[union-attr]
    fn = _channel_handler(source_kind, event.channel)
    try:
        summary = fn(ctx, event, source_name)
    except EventRejected as exc:
        lag = _finish(ctx, event_id, "rejected", str(exc), {})
        return {"event": event_id, "team": team_name, "source": source_name, "status": "rejected",
                "error": str(exc), "lag_s": lag}
    except Exception as exc:
        log.exception("event %s failed", event_id)
        _finish(ctx, event_id, "failed", f"{type(exc).__name__}: {exc}", {})
        raise
    result = summary.as_dict() if summary else {}
    status = "processed" if summary is None or summary.status == "succeeded" else "failed"
    lag = _finish(ctx, event_id, status, summary.error if summary else None, result)
    return {"event": event_id, "team": team_name, **result, "source": source_name, "status": status, "lag_s": lag}


_LOCK_NAMESPACE = 0x7AC1 << 48  # advisory lock keys of webhook events: namespace + event id
_local_claims: set[tuple[str, int]] = set()
_local_lock = threading.Lock()


@contextmanager
def _claim(ctx: Context, event_id: int) -> Iterator[bool]:
    """Hold the right to process `event_id` (False: someone else is processing it now)."""
    from db.session import get_engine

    key = (ctx.database_url, event_id)
    with _local_lock:
        busy = key in _local_claims
        _local_claims.add(key)
    if busy:
        yield False
        return
    try:
        engine = get_engine(ctx.database_url)
        if engine.dialect.name != "postgresql":
            yield True
            return
        lock_key = _LOCK_NAMESPACE + event_id
        got = False
        conn = engine.connect()
        try:
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": lock_key}).scalar())
            conn.commit()
            yield got
        finally:
            try:
                if got:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": lock_key})
                    conn.commit()
            except Exception:  # a broken connection: closing it releases the lock on the server
                conn.invalidate()
            conn.close()
    finally:
        with _local_lock:
            _local_claims.discard(key)


def _finish(ctx: Context, event_id: int, status: str, error: str | None, result: dict[str, Any]) -> float | None:
    """Record the outcome; returns the processing lag (seconds from receipt to now)."""
    now = utcnow()
    with ctx.session() as session:
        session.execute(update(models.WebhookEvent).where(models.WebhookEvent.id == event_id).values(
            status=status, error=error, result=_jsonable(result), processed_at=now))
        received = session.scalar(select(models.WebhookEvent.received_at).where(models.WebhookEvent.id == event_id))
    if received is None:
        return None
    if received.tzinfo is None:
        received = received.replace(tzinfo=now.tzinfo)
    return max(0.0, (now - received).total_seconds())


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def decode_body(event: models.WebhookEvent) -> Any:
    try:
        return parse_json(event.body)
    except PayloadError as exc:
        raise EventRejected(str(exc)) from None


def _record_format_handler(ctx: Context, event: models.WebhookEvent, source_name: str) -> SyncSummary:
    if event.channel == "import":
        records: Iterator[Any] = _import_lines(event.body)
    else:
        payload = decode_body(event)
        mapper = MAPPERS.get(event.channel) or MAPPERS.get("default")
        records = mapper(ctx, source_name, payload) if mapper else records_from_payload(payload)
    return ingest_records(ctx, source_name, records, trigger="import" if event.channel == "import" else "webhook")


#: channel -> function turning a parsed body into records for a source (the generic webhook
#: channel maps through the source's JMESPath `mapping`, or reads the record format).
MAPPERS: dict[str, Callable[[Context, str, Any], Iterator[Any]]] = {}


def webhook_settings(ctx: Context, source_name: str) -> WebhookSettings:
    return WebhookSettings.model_validate(ctx.config.source(source_name).settings)


def webhook_records(ctx: Context, source_name: str, payload: Any) -> Iterator[Any]:
    """Records of a generic webhook body, all or nothing (as validated when it was accepted)."""
    try:
        return iter(records_from_body(payload, webhook_settings(ctx, source_name).compiled_mapping))
    except PayloadError as exc:
        raise EventRejected(str(exc)) from None


MAPPERS["webhook"] = webhook_records


def _import_lines(body: str) -> Iterator[Any]:
    payload = json.loads(body)
    first = payload.get("first_line", 1)
    for offset, line in enumerate(payload["lines"]):
        lineno = first + offset
        if not line:
            continue
        if line == _INVALID_UTF8:
            yield Failure(message=f"{payload.get('file', 'import')} line {lineno}: not valid UTF-8")
            continue
        try:
            # The webhook route's strict parser: NUL characters and lone surrogates ("\ud800") are
            # cleaned out of every string, so one such line cannot fail its whole batch on write.
            data = parse_json(line)
        except PayloadError as exc:
            yield Failure(message=f"{payload.get('file', 'import')} line {lineno}: {exc}")
            continue
        yield from records_from_payload(data, where=f"{payload.get('file', 'import')} line {lineno}")


def stage_import(ctx: Context, source_name: str, path: str | Path) -> list[int]:
    """Store a JSONL file as import events (batches of lines); returns the ids still to process.

    The delivery id is derived from the file's content and the batch number, so importing
    the same file twice creates nothing new (an import interrupted before processing
    finishes what it had left).
    """
    path = Path(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:24]
    ids: list[int] = []
    batch: list[str] = []
    first_line = 1
    number = 0

    def flush() -> None:
        nonlocal batch, number
        if not batch:
            return
        body = json.dumps({"file": path.name, "first_line": first_line, "lines": batch})
        event_id, created = store_event(ctx, source_name, f"import:{digest}:{number}", body, channel="import")
        if created or _unfinished(ctx, event_id):
            ids.append(event_id)
        number += 1
        batch = []

    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                line = _INVALID_UTF8
            if not batch:
                first_line = lineno
            batch.append(line)
            if len(batch) >= IMPORT_BATCH_LINES:
                flush()
    flush()
    return ids


def _unfinished(ctx: Context, event_id: int) -> bool:
    with ctx.session() as session:
        event = session.get(models.WebhookEvent, event_id)
        return event is not None and event.status in ("pending", "failed")


def pending_event_ids(ctx: Context, *, include_failed: bool = False, source: str | None = None) -> list[int]:
    statuses = ["pending", "failed"] if include_failed else ["pending"]
    with ctx.session() as session:
        stmt = select(models.WebhookEvent.id).where(models.WebhookEvent.status.in_(statuses))
        if source:
            stmt = stmt.where(models.WebhookEvent.source_id == ctx.source_row(session, source).id)
        return list(session.scalars(stmt.order_by(models.WebhookEvent.id)))
