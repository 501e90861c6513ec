from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, utcnow


class Document(Base):
    """The live version of a document at its source, keyed by (source, external_id).

    A changed `content_hash` bumps `version`; a tombstone sets `deleted_at` (rows are never
    deleted, so lineage can still say what an adapter learned from). `processed_hash` is the
    hash the processing stage last chunked, so unchanged content costs no work.
    """

    __tablename__ = "documents"
    __table_args__ = (
        UniqueConstraint("source_id", "external_id"),
        Index("ix_documents_team_deleted", "team_id", "deleted_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"))
    external_id: Mapped[str] = mapped_column(String(1024))
    title: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text, default="")
    url: Mapped[str | None] = mapped_column(Text, default=None)
    authors: Mapped[list[Any]] = mapped_column(default=list)
    source_created_at: Mapped[datetime | None] = mapped_column(default=None)
    source_updated_at: Mapped[datetime | None] = mapped_column(default=None)
    parent_external_id: Mapped[str | None] = mapped_column(String(1024), default=None)
    acl: Mapped[list[Any]] = mapped_column(default=list)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    content_hash: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer, default=1)
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)
    processed_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    ingested_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Interaction(Base):
    """A comment, thread, chat or feedback, keyed by (source, external_id)."""

    __tablename__ = "interactions"
    __table_args__ = (
        UniqueConstraint("source_id", "external_id"),
        Index("ix_interactions_team_deleted", "team_id", "deleted_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"))
    external_id: Mapped[str] = mapped_column(String(1024))
    kind: Mapped[str] = mapped_column(String(16))
    document_external_id: Mapped[str | None] = mapped_column(String(1024), default=None)
    messages: Mapped[list[Any]] = mapped_column(default=list)
    rating: Mapped[float | None] = mapped_column(Float, default=None)
    correction: Mapped[str | None] = mapped_column(Text, default=None)
    acl: Mapped[list[Any]] = mapped_column(default=list)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    content_hash: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer, default=1)
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)
    processed_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    ingested_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
