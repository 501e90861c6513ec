"""Serving: per-team API keys and the completions the `/v1` endpoint answered."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, utcnow


class ApiKey(Base):
    """A key for a team's model. Only the SHA-256 of the key is kept (keys are 256 random bits,
    so a fast hash is enough); `prefix` is its first characters, to tell keys apart in lists."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class Completion(Base):
    """One answer of the `/v1/chat/completions` endpoint: which team and adapter version gave it,
    and the `chat` interaction that records the conversation (none when recording is off).
    Feedback posted for its id becomes a `feedback` interaction pointing back here."""

    __tablename__ = "completions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # chatcmpl-…
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    adapter_version: Mapped[int | None] = mapped_column(Integer, default=None)  # None: the base model
    interaction_id: Mapped[int | None] = mapped_column(
        ForeignKey("interactions.id", ondelete="SET NULL"), default=None, index=True)
    feedback_interaction_id: Mapped[int | None] = mapped_column(
        ForeignKey("interactions.id", ondelete="SET NULL"), default=None)
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"), default=None)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
