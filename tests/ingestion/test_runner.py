"""The runner writes each batch with its checkpoint in one transaction and resumes after a crash.

The connector here is a plain in-memory one, to test the runner alone; vendor connectors are
tested against their sandbox servers in tests/connectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import pytest
from pydantic import BaseModel
from sqlalchemy import func, select

from connectors.base import (
    AuthError,
    Checkpoint,
    CheckpointMark,
    Connector,
    Document,
    Failure,
    SyncGenerator,
    Tombstone,
)
from connectors.http import HttpBudget
from db import models
from ingestion.corpus.runner import ingest_records, run_sync
from tacit.config import SourceConfig
from tacit.context import Context


class Crash(Exception):
    pass


class PageCheckpoint(Checkpoint):
    version: int = 1
    page: int = 0


class PagedConnector(Connector):
    """Yields `pages` pages of 10 documents, marking a checkpoint after each page."""

    kind: ClassVar[str] = "paged"
    Checkpoint: ClassVar[type[BaseModel]] = PageCheckpoint

    def __init__(self, pages: int = 5, crash_after_page: int | None = None, auth_fails: bool = False,
                 deleted: Sequence[str] = ()) -> None:
        super().__init__(SourceConfig(name="assistant", kind="webhook", team="platform"), HttpBudget("t"))
        self.pages, self.crash_after_page, self.auth_fails, self.deleted = pages, crash_after_page, auth_fails, deleted
        self.pages_read: list[int] = []

    def check(self) -> None:
        if self.auth_fails:
            raise AuthError("token refused (needs read content capability)")

    def sync(self, checkpoint: PageCheckpoint | None) -> SyncGenerator:  # type: ignore[override]
        start = checkpoint.page if checkpoint else 0
        for page in range(start, self.pages):
            self.pages_read.append(page)
            for i in range(10):
                n = page * 10 + i
                if n == 13:
                    yield Failure(external_id="d13", message="unexpected block payload")
                    continue
                yield Document(external_id=f"d{n}", title=f"Doc {n}", text=f"text {n}")
            if self.crash_after_page == page:
                raise Crash("killed")
            yield CheckpointMark(checkpoint=PageCheckpoint(page=page + 1))
        for ext in self.deleted:
            yield Tombstone(external_id=ext)
        return PageCheckpoint(page=self.pages)


def _doc_ids(ctx: Context) -> list[str]:
    with ctx.session() as session:
        return sorted(session.scalars(select(models.Document.external_id).where(models.Document.deleted_at.is_(None))))


def test_full_sync_records_counts_failures_and_checkpoint(ctx: Context) -> None:
    summary = run_sync(ctx, "assistant", connector=PagedConnector(pages=3), batch_size=7)
    assert summary.status == "succeeded"
    assert (summary.documents_written, summary.failures) == (29, 1)
    with ctx.session() as session:
        src = ctx.source_row(session, "assistant")
        assert src.checkpoint == {"version": 1, "page": 3} and src.status == "ok"
        failure = session.scalar(select(models.ItemFailure))
        assert failure.external_id == "d13" and "unexpected" in failure.message
        run = session.scalar(select(models.SyncRun))
        assert (run.status, run.documents_written, run.failures) == ("succeeded", 29, 1)


def test_crash_then_resume_has_no_gap_and_no_duplicate(ctx: Context) -> None:
    first = PagedConnector(pages=5, crash_after_page=2)
    summary = run_sync(ctx, "assistant", connector=first, batch_size=4)
    assert summary.status == "failed" and "Crash" in (summary.error or "")
    with ctx.session() as session:
        assert ctx.source_row(session, "assistant").checkpoint == {"version": 1, "page": 2}
    second = PagedConnector(pages=5)
    summary = run_sync(ctx, "assistant", connector=second, batch_size=4)
    assert summary.status == "succeeded"
    assert second.pages_read == [2, 3, 4]  # resumed from the committed checkpoint
    assert _doc_ids(ctx) == sorted(f"d{n}" for n in range(50) if n != 13)
    with ctx.session() as session:
        assert session.scalar(select(func.count()).select_from(models.Document)) == 49
        assert set(session.scalars(select(models.Document.version))) == {1}  # the replayed page wrote nothing new


def test_killed_run_is_marked_interrupted_on_next_start(ctx: Context) -> None:
    with ctx.session() as session:
        src = ctx.source_row(session, "assistant")
        session.add(models.SyncRun(source_id=src.id, status="running"))
    run_sync(ctx, "assistant", connector=PagedConnector(pages=1))
    with ctx.session() as session:
        statuses = list(session.scalars(select(models.SyncRun.status).order_by(models.SyncRun.id)))
    assert statuses == ["interrupted", "succeeded"]


def test_auth_error_marks_source_failing_without_records(ctx: Context) -> None:
    summary = run_sync(ctx, "assistant", connector=PagedConnector(auth_fails=True))
    assert summary.status == "failed" and summary.error.startswith("AuthError")
    with ctx.session() as session:
        src = ctx.source_row(session, "assistant")
        assert src.status == "failing" and "capability" in src.last_error
    assert _doc_ids(ctx) == []


def test_full_ignores_checkpoint_and_tombstones_apply(ctx: Context) -> None:
    run_sync(ctx, "assistant", connector=PagedConnector(pages=2))
    summary = run_sync(ctx, "assistant", full=True, connector=PagedConnector(pages=2, deleted=["d0", "d1"]))
    assert summary.documents_written == 0 and summary.documents_unchanged == 19 and summary.tombstones == 2
    assert "d0" not in _doc_ids(ctx) and "d2" in _doc_ids(ctx)


@pytest.mark.parametrize("batch", [1, 1000])
def test_ingest_records_is_idempotent(ctx: Context, batch: int) -> None:
    records = [Document(external_id=f"x{i}", text="t") for i in range(5)]
    first = ingest_records(ctx, "assistant", records, batch_size=batch)
    again = ingest_records(ctx, "assistant", records, batch_size=batch)
    assert (first.documents_written, again.documents_written, again.documents_unchanged) == (5, 0, 5)


def test_within_a_batch_the_later_of_record_and_tombstone_wins(ctx: Context) -> None:
    records = [
        Document(external_id="a", text="v1"), Tombstone(external_id="a"),  # deleted: gone
        Tombstone(external_id="b"), Document(external_id="b", text="back"),  # re-created: live
    ]
    ingest_records(ctx, "assistant", records)
    assert _doc_ids(ctx) == ["b"]


def test_too_long_or_nul_ids_are_refused_per_record() -> None:
    from connectors.webhook.records import records_from_payload

    items = [{"type": "document", "external_id": "é" * 600}, {"type": "document", "external_id": "a\x00b"},
             {"type": "document", "external_id": "ok"}]
    parsed = list(records_from_payload(items))
    assert [type(p).__name__ for p in parsed] == ["Failure", "Failure", "Document"]
    assert "1024 bytes" in parsed[0].message
