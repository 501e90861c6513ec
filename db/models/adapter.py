from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, utcnow


class Adapter(Base):
    """One version of a team's LoRA adapter.

    status: training | candidate | active | rejected | retired | failed.
    `needs_clean_retrain` is set when an example in its lineage was retired (a document
    deleted at the source): the next version is trained from scratch without it.
    """

    __tablename__ = "adapters"
    __table_args__ = (UniqueConstraint("team_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"))
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="training")
    base_model: Mapped[str] = mapped_column(String(512))
    base_model_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("adapters.id"), default=None)
    path: Mapped[str | None] = mapped_column(Text, default=None)
    clean_retrain: Mapped[bool] = mapped_column(Boolean, default=False)
    needs_clean_retrain: Mapped[bool] = mapped_column(Boolean, default=False)
    flag_reason: Mapped[str | None] = mapped_column(Text, default=None)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    train_config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    trained_tokens: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    promoted_at: Mapped[datetime | None] = mapped_column(default=None)


class AdapterLineage(Base):
    """Which examples trained which adapter version (replayed ones included)."""

    __tablename__ = "adapter_lineage"

    adapter_id: Mapped[int] = mapped_column(ForeignKey("adapters.id", ondelete="CASCADE"), primary_key=True)
    example_id: Mapped[int] = mapped_column(ForeignKey("examples.id", ondelete="CASCADE"), primary_key=True, index=True)
    replay: Mapped[bool] = mapped_column(Boolean, default=False)
