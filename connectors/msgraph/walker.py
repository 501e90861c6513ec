"""State shared by the resource walkers of one sync (or fetch): session, settings, counters."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
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

    def cursor(self, cp: GraphCheckpoint, key: str) -> str | None:
        """Where a scope resumes: its pending nextLink, else its deltaLink; None (start over) when
        the link points elsewhere than the configured `base_url` (the source moved to another cloud
        or server: a link there would fail, and would get no token)."""
        url = cp.pending.get(key) or cp.delta.get(key)
        if url and not url.startswith(self.settings.api_url + "/"):
            cp.pending.pop(key, None)
            cp.delta.pop(key, None)
            self.stats["foreign_cursors_dropped"] += 1
            return None
        return url

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


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 time from Graph JSON (`2025-03-03T09:14:00Z`, up to 7 fractional digits)."""
    if not isinstance(value, str) or not value:
        return None
    text = value.replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[:min(digits, 6)]}{rest[digits:]}"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None
