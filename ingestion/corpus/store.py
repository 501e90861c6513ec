"""Bulk upserts into the corpus: ON CONFLICT on SQLite and PostgreSQL alike.

Keyed by (source, external_id). A row whose content hash has not changed (and that is not
tombstoned) is not written at all, so replaying a batch is harmless and cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from connectors.base import Document, Interaction, clean_strings
from db.base import utcnow
from db.models import Document as DocumentRow
from db.models import Interaction as InteractionRow

BATCH = 400


@dataclass
class UpsertResult:
    written: int = 0
    unchanged: int = 0
    written_ids: list[int] | None = None

    def __iadd__(self, other: UpsertResult) -> UpsertResult:
        self.written += other.written
        self.unchanged += other.unchanged
        self.written_ids = (self.written_ids or []) + (other.written_ids or [])
        return self


def storable(record: Any) -> Any:
    """The record with NUL characters and lone surrogates taken out of every string (a title, an
    author, a URL, a metadata value): PostgreSQL text and JSON cannot hold a NUL and no driver
    encodes a lone surrogate, so one such string would fail the whole batch written with it.
    Returns the record itself when nothing needed cleaning."""
    return clean_strings(record)


def _insert(session: Session, table: Any) -> Any:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"no upsert for dialect {dialect}")


def _upsert(session: Session, model: Any, rows: list[dict[str, Any]]) -> UpsertResult:
    result = UpsertResult(written_ids=[])
    # The last occurrence of an external id in a batch wins (one statement cannot touch a row twice).
    unique = list({r["external_id"]: r for r in rows}.values())
    result.unchanged += len(rows) - len(unique)
    table = model.__table__
    for start in range(0, len(unique), BATCH):
        batch = unique[start : start + BATCH]
        stmt = _insert(session, table).values(batch)
        excluded = stmt.excluded
        changed = or_(table.c.content_hash != excluded.content_hash, table.c.deleted_at.is_not(None))
        updates = {c: excluded[c] for c in batch[0] if c not in ("source_id", "external_id", "ingested_at")}
        updates["version"] = table.c.version + 1
        updates["deleted_at"] = None
        updates["processed_hash"] = table.c.processed_hash
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c.source_id, table.c.external_id], set_=updates, where=changed
        ).returning(table.c.id)
        ids = [row[0] for row in session.execute(stmt)]
        result.written += len(ids)
        result.unchanged += len(batch) - len(ids)
        result.written_ids.extend(ids)
    return result


def _row(source_id: int, team_id: int, record: Document | Interaction, now: Any,
         fields: dict[str, Any]) -> dict[str, Any]:
    """A corpus row: the record's own `fields` and what documents and interactions both carry."""
    return {"source_id": source_id, "team_id": team_id, "external_id": record.external_id, **fields,
            "acl": list(record.acl), "metadata": record.metadata, "content_hash": record.content_hash(),
            "ingested_at": now, "updated_at": now}


def upsert_documents(session: Session, source_id: int, team_id: int, docs: Sequence[Document]) -> UpsertResult:
    now = utcnow()
    rows = [
        _row(source_id, team_id, d, now, {
            "title": d.title,
            "text": d.text,
            "url": d.url,
            "authors": list(d.authors),
            "source_created_at": d.created_at,
            "source_updated_at": d.updated_at,
            "parent_external_id": d.parent_external_id,
        })
        for d in docs
    ]
    return _upsert(session, DocumentRow, rows) if rows else UpsertResult()


def upsert_interactions(
    session: Session, source_id: int, team_id: int, items: Sequence[Interaction]
) -> UpsertResult:
    now = utcnow()
    rows = [
        _row(source_id, team_id, i, now, {
            "kind": i.kind,
            "document_external_id": i.document_external_id,
            "messages": [m.model_dump(mode="json") for m in i.messages],
            "rating": i.rating,
            "correction": i.correction,
        })
        for i in items
    ]
    return _upsert(session, InteractionRow, rows) if rows else UpsertResult()


def tombstone(session: Session, source_id: int, external_ids: Sequence[str]) -> int:
    """Mark documents and interactions gone at the source; returns how many rows changed."""
    if not external_ids:
        return 0
    now = utcnow()
    count = 0
    ids = list(dict.fromkeys(external_ids))
    for model in (DocumentRow, InteractionRow):
        for start in range(0, len(ids), BATCH):
            part = ids[start : start + BATCH]
            res = session.execute(
                update(model)
                .where(and_(model.source_id == source_id, model.external_id.in_(part), model.deleted_at.is_(None)))
                .values(deleted_at=now, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            count += res.rowcount or 0
    return count


def live_external_ids(session: Session, source_id: int) -> set[str]:
    """External ids of the source's live documents (for a listing pass that finds deletions)."""
    rows = session.execute(
        select(DocumentRow.external_id).where(DocumentRow.source_id == source_id, DocumentRow.deleted_at.is_(None))
    )
    return {r[0] for r in rows}
