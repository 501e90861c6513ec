"""Upserts keyed by (source, external_id): unchanged content costs no write, changes bump the version."""

from __future__ import annotations

from sqlalchemy import func, select

from connectors.base import Document, Interaction, Message
from db import models
from ingestion.corpus import store
from tacit.context import Context


def _ids(ctx: Context) -> tuple[int, int]:
    with ctx.session() as session:
        src = ctx.source_row(session, "assistant")
        return src.id, src.team_id


def _doc(i: int, text: str = "body") -> Document:
    return Document(external_id=f"d{i}", title=f"Doc {i}", text=f"# Doc {i}\n\n{text}", acl=["team:platform"])


def test_insert_then_replay_writes_nothing(ctx: Context) -> None:
    source_id, team_id = _ids(ctx)
    docs = [_doc(i) for i in range(450)]  # more than one statement batch
    with ctx.session() as session:
        first = store.upsert_documents(session, source_id, team_id, docs)
    with ctx.session() as session:
        again = store.upsert_documents(session, source_id, team_id, docs)
        count = session.scalar(select(func.count()).select_from(models.Document))
        versions = set(session.scalars(select(models.Document.version)))
    assert (first.written, first.unchanged) == (450, 0)
    assert (again.written, again.unchanged) == (0, 450)
    assert count == 450 and versions == {1}


def test_changed_content_bumps_version_and_keeps_processed_hash(ctx: Context) -> None:
    source_id, team_id = _ids(ctx)
    with ctx.session() as session:
        store.upsert_documents(session, source_id, team_id, [_doc(1), _doc(2)])
        row = session.scalar(select(models.Document).where(models.Document.external_id == "d1"))
        row.processed_hash = row.content_hash
    with ctx.session() as session:
        res = store.upsert_documents(session, source_id, team_id, [_doc(1, "changed"), _doc(2)])
    with ctx.session() as session:
        d1 = session.scalar(select(models.Document).where(models.Document.external_id == "d1"))
        d2 = session.scalar(select(models.Document).where(models.Document.external_id == "d2"))
    assert (res.written, res.unchanged) == (1, 1)
    assert d1.version == 2 and "changed" in d1.text
    assert d1.processed_hash is not None and d1.processed_hash != d1.content_hash  # needs processing again
    assert d2.version == 1


def test_duplicates_in_one_batch_last_wins(ctx: Context) -> None:
    source_id, team_id = _ids(ctx)
    with ctx.session() as session:
        res = store.upsert_documents(session, source_id, team_id, [_doc(1, "old"), _doc(1, "new")])
    with ctx.session() as session:
        rows = list(session.scalars(select(models.Document)))
    assert res.written == 1 and len(rows) == 1 and rows[0].text.endswith("new")


def test_tombstone_then_reappear(ctx: Context) -> None:
    source_id, team_id = _ids(ctx)
    with ctx.session() as session:
        store.upsert_documents(session, source_id, team_id, [_doc(1), _doc(2)])
        store.upsert_interactions(session, source_id, team_id, [
            Interaction(external_id="t1", kind="thread", messages=[Message(text="q"), Message(text="a")])])
    with ctx.session() as session:
        gone = store.tombstone(session, source_id, ["d1", "t1", "missing"])
        again = store.tombstone(session, source_id, ["d1"])
    assert (gone, again) == (2, 0)
    with ctx.session() as session:
        assert store.live_external_ids(session, source_id) == {"d2"}
        res = store.upsert_documents(session, source_id, team_id, [_doc(1)])  # same content, back at the source
    with ctx.session() as session:
        d1 = session.scalar(select(models.Document).where(models.Document.external_id == "d1"))
    assert res.written == 1 and d1.deleted_at is None and d1.version == 2


def test_same_external_id_in_two_sources_are_two_rows(ctx: Context) -> None:
    with ctx.session() as session:
        a = ctx.source_row(session, "assistant")
        b = ctx.source_row(session, "helpdesk")
        store.upsert_documents(session, a.id, a.team_id, [_doc(1)])
        store.upsert_documents(session, b.id, b.team_id, [_doc(1)])
        assert session.scalar(select(func.count()).select_from(models.Document)) == 2
