"""Near-duplicate documents caught across processing runs, not only within one.

`hygiene.DuplicateIndex` holds the band keys of the documents one run has seen; a run that
restarts after a kill, or the next incremental run, would start empty and keep a near copy of a
page an earlier run processed. `PersistentDuplicateIndex` keeps every key it adds in an
append-only file per team (16 bytes a key: the key and the document id), loads it when a run
starts, and checks a hit against the corpus before trusting it: a document deleted since, or the
document itself processed again after an edit, is no reason to drop anything.

The file lives under `<data_dir>/dedup/<database>/team-<id>/`, one per LSH setting (another
threshold means other band keys), and is shared by every worker that mounts the data folder.
Appends are made under an exclusive `flock`; a record cut short by a crash is ignored on load.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from db import models
from ingestion.processing.hygiene import DuplicateIndex

RECORD = np.dtype([("key", "<u8"), ("id", "<i8")])


def team_dir(ctx: Any, team_id: int) -> Path:
    database = hashlib.sha256(ctx.database_url.encode()).hexdigest()[:16]
    return ctx.data_dir / "dedup" / database / f"team-{team_id}"


def index_path(ctx: Any, team_id: int, bands: int, rows: int) -> Path:
    return team_dir(ctx, team_id) / f"documents-b{bands}r{rows}.keys"


def drops_path(ctx: Any, team_id: int) -> Path:
    """Documents dropped as near duplicates: (dropped id, kept id) records, for the metrics."""
    return team_dir(ctx, team_id) / "dropped.records"


def _append(path: Path, records: np.ndarray) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, records.tobytes())
    finally:
        os.close(fd)


def _read(path: Path) -> np.ndarray:
    if not path.exists():
        return np.empty(0, dtype=RECORD)
    raw = path.read_bytes()
    usable = len(raw) - len(raw) % RECORD.itemsize  # a torn last record is dropped
    return np.frombuffer(raw[:usable], dtype=RECORD)


def dropped_documents(ctx: Any, team_id: int) -> set[int]:
    """Ids of the documents this team's processing dropped as near duplicates (ever)."""
    return {int(i) for i in _read(drops_path(ctx, team_id))["key"]}


class PersistentDuplicateIndex(DuplicateIndex):
    """A `DuplicateIndex` whose keys outlive the run (see the module docstring)."""

    def __init__(self, ctx: Any, team_id: int, threshold: float) -> None:
        super().__init__(threshold)
        self.ctx = ctx
        self.path = index_path(ctx, team_id, self.bands, self.rows)
        self.drops = drops_path(ctx, team_id)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        saved = _read(self.path)
        if len(saved):
            order = np.argsort(saved["key"], kind="stable")  # equal keys: the earliest id first
            self._runs.append((saved["key"][order].copy(), saved["id"][order].copy()))

    def add(self, keys: list[int], ident: int) -> None:
        super().add(keys, ident)
        _append(self.path, np.array([(k, ident) for k in keys], dtype=RECORD))

    def check_and_add(self, text: str, ident: int) -> int | None:
        """The id of a live earlier near duplicate of `text` (not `ident` itself), or None."""
        keys = self.keys(text)
        hits = {h for h in (self.find([k]) for k in keys) if h is not None and h != ident}
        live = self._live(hits) if hits else set()
        hit = min(live) if live else None
        if hit is None:
            self.add(keys, ident)
        else:
            _append(self.drops, np.array([(ident, hit)], dtype=RECORD))
        return hit

    def _live(self, ids: set[int]) -> set[int]:
        with self.ctx.session() as session:
            return set(session.scalars(select(models.Document.id).where(models.Document.id.in_(ids),
                                                                        models.Document.deleted_at.is_(None))))
