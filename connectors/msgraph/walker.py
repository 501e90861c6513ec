"""State shared by the resource walkers of one sync (or fetch): session, settings, counters."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from connectors.base import CheckpointMark
from connectors.msgraph.client import GraphSession
from connectors.msgraph.settings import GraphCheckpoint, GraphSettings


@dataclass
class Walker:
    session: GraphSession
    settings: GraphSettings
    stats: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> files skipped
    seen_conversations: set[str] = field(default_factory=set)  # mail conversations already written this run

    @property
    def client(self) -> Any:
        return self.session.client

    def skip(self, reason: str) -> None:
        self.skipped[reason] += 1

    @staticmethod
    def mark(checkpoint: GraphCheckpoint) -> CheckpointMark:
        return CheckpointMark(checkpoint=checkpoint.model_copy(deep=True))

    def summary(self) -> dict[str, Any]:
        """Counters for the sync run's stats: skipped files by reason, batches, delta restarts."""
        out: dict[str, Any] = dict(self.stats)
        out["skipped"] = dict(self.skipped)
        out["skipped_total"] = sum(self.skipped.values())
        out["batches"] = self.session.batches
        out["batched_requests"] = self.session.batched_requests
        return out


def email_of(identity: Any) -> str | None:
    """The address of a Graph `identity` (kept in `additional_data` by the SDK model)."""
    if identity is None:
        return None
    extra = getattr(identity, "additional_data", None) or {}
    return extra.get("email") or extra.get("userPrincipalName") or extra.get("loginName")


def who(identity_set: Any) -> str | None:
    """A person's address, or their name, from an identity set (createdBy, from, ...)."""
    if identity_set is None:
        return None
    user = getattr(identity_set, "user", None)
    if user is not None:
        return email_of(user) or user.display_name or user.id
    return None
