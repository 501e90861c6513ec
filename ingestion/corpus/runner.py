"""Drives a connector and writes what it yields: each batch and its checkpoint in ONE transaction.

A sync killed at any point resumes from the last checkpoint that was committed together with
the records before it. Records after that checkpoint are read again, and the idempotent
upserts (`ingestion.corpus.store`) make the replay harmless: nothing is lost, nothing duplicated.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError

from connectors.base import (
    AuthError,
    Checkpoint,
    CheckpointMark,
    ConfigError,
    Connector,
    ConnectorError,
    Document,
    Failure,
    Interaction,
    Tombstone,
)
from db import models
from db.base import utcnow
from ingestion.corpus import store
from tacit.context import Context

log = logging.getLogger(__name__)

BATCH_SIZE = 200
DB_ATTEMPTS = 8
COUNTERS = ("documents_written", "documents_unchanged", "interactions_written", "interactions_unchanged",
            "tombstones", "failures", "requests")
Progress = Callable[["SyncSummary"], None]


class SyncFailed(Exception):
    """A sync that stopped; its checkpoint is kept, so running it again resumes."""

    def __init__(self, summary: SyncSummary, message: str) -> None:
        super().__init__(message)
        self.summary = summary


@dataclass
class SyncSummary:
    source: str
    run_id: int | None = None
    status: str = "running"
    documents_written: int = 0
    documents_unchanged: int = 0
    interactions_written: int = 0
    interactions_unchanged: int = 0
    tombstones: int = 0
    failures: int = 0
    requests: int = 0
    error: str | None = None
    written_document_ids: list[int] = field(default_factory=list)
    written_interaction_ids: list[int] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def records(self) -> int:
        return (self.documents_written + self.documents_unchanged + self.interactions_written
                + self.interactions_unchanged + self.tombstones)

    @property
    def changed(self) -> bool:
        return bool(self.documents_written or self.interactions_written or self.tombstones)

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if not k.startswith("written_")}
        d["records"] = self.records
        return d


class _Writer:
    """Buffers records and writes them with the checkpoint in one transaction."""

    def __init__(self, ctx: Context, source_id: int, team_id: int, run_id: int, summary: SyncSummary,
                 batch_size: int = BATCH_SIZE, progress: Progress | None = None) -> None:
        self.ctx, self.source_id, self.team_id, self.run_id = ctx, source_id, team_id, run_id
        self.summary = summary
        self.batch_size = batch_size
        self.progress = progress
        self.docs: list[Document] = []
        self.interactions: list[Interaction] = []
        self.tombstones: list[str] = []
        self.failures: list[Failure] = []

    def add(self, record: Any) -> None:
        # Within one batch the later of a record and a tombstone for the same id wins.
        if isinstance(record, Document | Interaction):
            record = store.storable(record)
        if isinstance(record, Document):
            self._drop_tombstone(record.external_id)
            self.docs.append(record)
        elif isinstance(record, Interaction):
            self._drop_tombstone(record.external_id)
            self.interactions.append(record)
        elif isinstance(record, Tombstone):
            ext = record.external_id
            self.docs = [d for d in self.docs if d.external_id != ext]
            self.interactions = [i for i in self.interactions if i.external_id != ext]
            self.tombstones.append(ext)
        elif isinstance(record, Failure):
            self.failures.append(record)
        else:
            raise TypeError(f"a connector yielded {type(record).__name__}, not a record")
        if self.pending >= self.batch_size:
            self.flush()

    def _drop_tombstone(self, external_id: str) -> None:
        if self.tombstones and external_id in self.tombstones:
            self.tombstones = [t for t in self.tombstones if t != external_id]

    @property
    def pending(self) -> int:
        return len(self.docs) + len(self.interactions) + len(self.tombstones) + len(self.failures)

    def flush(self, checkpoint: Checkpoint | None = None, *, requests: int | None = None,
              final_status: str | None = None, error: str | None = None) -> None:
        """Write the buffered records, the run's counters and `checkpoint` in one transaction.

        A lost database connection (a restarted PostgreSQL, a locked SQLite file) is retried with
        backoff: the batch is still in memory and the transaction wrote nothing, so the sync goes on.
        """
        totals = retry_db(lambda: self._write(checkpoint, requests, final_status, error))
        s = self.summary
        for key, value in totals.items():
            if key.startswith("written_"):
                getattr(s, key).extend(value)
            else:
                setattr(s, key, value)
        self.docs, self.interactions, self.tombstones, self.failures = [], [], [], []
        if self.progress:
            self.progress(s)

    def _write(self, checkpoint: Checkpoint | None, requests: int | None, final_status: str | None,
               error: str | None) -> dict[str, Any]:
        s = self.summary
        t: dict[str, Any] = {k: getattr(s, k) for k in COUNTERS}
        with self.ctx.session() as session:
            res = store.upsert_documents(session, self.source_id, self.team_id, self.docs)
            t["documents_written"] += res.written
            t["documents_unchanged"] += res.unchanged
            t["written_document_ids"] = list(res.written_ids or [])
            res = store.upsert_interactions(session, self.source_id, self.team_id, self.interactions)
            t["interactions_written"] += res.written
            t["interactions_unchanged"] += res.unchanged
            t["written_interaction_ids"] = list(res.written_ids or [])
            t["tombstones"] += store.tombstone(session, self.source_id, self.tombstones)
            for failure in self.failures:
                session.add(models.ItemFailure(sync_run_id=self.run_id, external_id=failure.external_id,
                                               message=failure.message[:4000], retryable=failure.retryable))
            t["failures"] += len(self.failures)
            if requests is not None:
                t["requests"] = requests
            values: dict[str, Any] = {k: t[k] for k in COUNTERS}
            values.update(heartbeat_at=utcnow(), stats=s.stats)
            if final_status:
                values.update(status=final_status, finished_at=utcnow(), error=error)
            session.execute(update(models.SyncRun).where(models.SyncRun.id == self.run_id).values(**values))
            if checkpoint is not None:
                session.execute(
                    update(models.Source).where(models.Source.id == self.source_id)
                    .values(checkpoint=checkpoint.model_dump(mode="json"))
                )
        return t


def _unreachable(exc: OperationalError) -> bool:
    """A lost or refused connection, or a busy SQLite file: worth waiting for. Anything else
    (an index row too large, a constraint) is permanent and raised at once."""
    if exc.connection_invalidated:
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate:
        return sqlstate.startswith("08") or sqlstate in ("57P01", "57P02", "57P03", "53300")
    message = str(exc.orig).lower()
    return any(s in message for s in ("database is locked", "connection", "server closed", "terminating"))


def retry_db(fn: Callable[[], Any]) -> Any:
    """Run `fn` (one transaction), retrying while the database is unreachable."""
    for attempt in range(DB_ATTEMPTS):
        try:
            return fn()
        except OperationalError as exc:
            if attempt + 1 >= DB_ATTEMPTS or not _unreachable(exc):
                raise
            wait = min(30.0, 0.5 * 2**attempt)
            log.warning("database unavailable (%s); retrying in %.1fs", type(exc.orig).__name__ if exc.orig else exc,
                        wait)
            time.sleep(wait)
    raise AssertionError("unreachable")


def _start_run(ctx: Context, source_name: str, trigger: str) -> tuple[int, int, int, SyncSummary]:
    return retry_db(lambda: _start_run_once(ctx, source_name, trigger))


def _start_run_once(ctx: Context, source_name: str, trigger: str) -> tuple[int, int, int, SyncSummary]:
    with ctx.session() as session:
        source = ctx.source_row(session, source_name)
        # A run still marked running was killed: say so, its checkpoint is what it committed.
        session.execute(
            update(models.SyncRun)
            .where(models.SyncRun.source_id == source.id, models.SyncRun.status == "running")
            .values(status="interrupted", finished_at=utcnow(), error="the process running it stopped")
        )
        run = models.SyncRun(source_id=source.id, trigger=trigger, status="running", heartbeat_at=utcnow())
        session.add(run)
        source.status = "running"
        session.flush()
        return source.id, source.team_id, run.id, SyncSummary(source=source_name, run_id=run.id)


def _finish_source(ctx: Context, source_id: int, status: str, error: str | None, synced: bool) -> None:
    values: dict[str, Any] = {"status": status, "last_error": error}
    if synced:
        values["last_synced_at"] = utcnow()

    def write() -> None:
        with ctx.session() as session:
            session.execute(update(models.Source).where(models.Source.id == source_id).values(**values))

    retry_db(write)


def _consume(writer: _Writer, items: Iterator[Any], connector: Connector | None) -> Checkpoint | None:
    """Feed a sync generator to the writer; return the checkpoint it returns."""
    while True:
        try:
            item = next(items)
        except StopIteration as stop:
            return stop.value
        if isinstance(item, CheckpointMark):
            writer.flush(item.checkpoint, requests=connector.http.stats.requests if connector else None)
        else:
            writer.add(item)


def run_sync(ctx: Context, source_name: str, *, full: bool = False, progress: Progress | None = None,
             batch_size: int = BATCH_SIZE, connector: Connector | None = None) -> SyncSummary:
    """Sync one source: from its stored checkpoint, or from scratch with `full`."""
    connector = connector or ctx.connector(source_name)
    source_id, team_id, run_id, summary = _start_run(ctx, source_name, "full" if full else "sync")
    writer = _Writer(ctx, source_id, team_id, run_id, summary, batch_size, progress)
    raw = retry_db(lambda: _stored_checkpoint(ctx, source_id))
    checkpoint = None if full else connector.load_checkpoint(raw)
    try:
        connector.check()
        final = _consume(writer, connector.sync(checkpoint), connector)
    except (AuthError, ConfigError) as exc:
        return _fail(ctx, writer, source_id, f"{type(exc).__name__}: {exc}", failing=True)
    except ConnectorError as exc:
        return _fail(ctx, writer, source_id, f"{type(exc).__name__}: {exc}")
    except Exception as exc:
        log.exception("sync of %s stopped", source_name)
        return _fail(ctx, writer, source_id, f"{type(exc).__name__}: {exc}")
    summary.status = "succeeded"
    # A connector may count what it skipped and why (`sync_stats`); the HTTP counters win on a clash.
    summary.stats = {**getattr(connector, "sync_stats", {}), **_http_stats(connector)}
    writer.flush(final, requests=connector.http.stats.requests, final_status="succeeded")
    _finish_source(ctx, source_id, "ok", None, synced=True)
    return summary


def _stored_checkpoint(ctx: Context, source_id: int) -> dict[str, Any] | None:
    with ctx.session() as session:
        return session.get(models.Source, source_id).checkpoint  # type: ignore[union-attr]


def _fail(ctx: Context, writer: _Writer, source_id: int, message: str, *, failing: bool = False) -> SyncSummary:
    # What was read before the error is kept, but the checkpoint stays at the last mark.
    writer.summary.status = "failed"
    writer.summary.error = message
    writer.flush(None, final_status="failed", error=message)
    _finish_source(ctx, source_id, "failing" if failing else "error", message, synced=False)
    return writer.summary


def _http_stats(connector: Connector) -> dict[str, Any]:
    st = connector.http.stats
    return {"requests": st.requests, "retries": st.retries, "throttled": st.throttled,
            "waited_s": round(st.waited_s, 3), "by_status": {str(k): v for k, v in st.by_status.items()}}


def ingest_records(ctx: Context, source_name: str, records: Iterable[Any], *, trigger: str = "import",
                   progress: Progress | None = None, batch_size: int = BATCH_SIZE) -> SyncSummary:
    """Write pushed records (import, webhook events, targeted fetches) as one recorded run."""
    source_id, team_id, run_id, summary = _start_run(ctx, source_name, trigger)
    writer = _Writer(ctx, source_id, team_id, run_id, summary, batch_size, progress)
    try:
        for record in records:
            writer.add(record)
    except Exception as exc:
        log.exception("ingest into %s stopped", source_name)
        return _fail(ctx, writer, source_id, f"{type(exc).__name__}: {exc}")
    summary.status = "succeeded"
    writer.flush(None, final_status="succeeded")
    _finish_source(ctx, source_id, "ok", None, synced=True)
    return summary


def run_fetch(ctx: Context, source_name: str, external_ids: list[str]) -> SyncSummary:
    """Re-read only the given items (a webhook said they changed)."""
    connector = ctx.connector(source_name)
    return ingest_records(ctx, source_name, connector.fetch(external_ids), trigger="webhook")


def sync_runs(ctx: Context, source_name: str, limit: int = 20) -> list[models.SyncRun]:
    with ctx.session() as session:
        source = ctx.source_row(session, source_name)
        return list(session.scalars(
            select(models.SyncRun).where(models.SyncRun.source_id == source.id)
            .order_by(models.SyncRun.id.desc()).limit(limit)
        ))
