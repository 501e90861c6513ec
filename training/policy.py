"""When a team's adapter is refreshed, and the per-team lock that keeps it to one run at a time.

A refresh is due when
* the active version must be replaced by a clean retrain: it is flagged (`needs_clean_retrain`),
  a document it learned from was deleted at the source, the team's base model (or its weights)
  changed, or the LoRA shape (rank, alpha) in the configuration changed; or
* enough new tokens arrived: examples not yet in the active version's weights and not already
  tried by a version rejected since, at least `TrainingConfig.min_new_tokens` (any, while the
  team has no active version yet); or
* it is forced (`tacit train --force`), and there is something new to train on.

The lock is a Redis lock when the queue is Redis (workers on several machines), else an
exclusive `flock` on a file under the data directory; a second request while one is held is
answered "already training" instead of running twice.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db import models
from tacit.config import TeamConfig
from tacit.context import Context
from training.registry import active_version, versions
from training.selection import Selection, knowledge_ids, select_examples

LOCK_TTL_S = 900  # a Redis lock outlives a dead worker by at most this long; runs extend it


@dataclass
class Decision:
    due: bool
    reason: str
    clean: bool = False
    parent: models.Adapter | None = None
    selection: Selection = field(default_factory=Selection)
    untried_tokens: int = 0


def example_tokens(example: models.Example) -> int:
    """The example's token count as recorded, else an estimate (4 characters a token)."""
    if example.token_count:
        return example.token_count
    return max(1, len(str(example.payload)) // 4)


def clean_retrain_reason(session: Session, team: TeamConfig, active: models.Adapter | None,
                         base_hash: str, lora_shape: tuple[int, int]) -> str | None:
    """Why the active version cannot be continued, or None when it can."""
    if active is None:
        return None
    if active.needs_clean_retrain:
        return f"version {active.version} is flagged: {active.flag_reason or 'clean retrain requested'}"
    if active.base_model != team.base_model:
        return f"the base model changed from {active.base_model} to {team.base_model}"
    if active.base_model_hash and active.base_model_hash != base_hash:
        return f"the weights of base model {team.base_model} changed"
    shape = (active.train_config or {}).get("lora")
    if shape and (shape.get("rank"), shape.get("alpha")) != lora_shape:
        return f"the LoRA shape changed from r={shape.get('rank')}, alpha={shape.get('alpha')} to r={lora_shape[0]}, alpha={lora_shape[1]}"
    known = knowledge_ids(session, active)
    if known:
        deleted = session.scalar(
            select(models.Document.title)
            .join(models.Example, models.Example.document_id == models.Document.id)
            .where(models.Example.id.in_(known), models.Document.deleted_at.is_not(None)).limit(1))
        if deleted is not None:
            return f"a document it learned from was deleted at the source ({deleted or 'untitled'})"
    return None


def tried_since(session: Session, team_id: int, active: models.Adapter | None) -> set[int]:
    """Examples already tried by versions that were rejected (or failed) after the active one."""
    after = active.version if active else 0
    ids = [v.id for v in versions(session, team_id) if v.version > after and v.status in ("rejected", "failed")]
    if not ids:
        return set()
    return set(session.scalars(select(models.AdapterLineage.example_id)
                               .where(models.AdapterLineage.adapter_id.in_(ids),
                                      models.AdapterLineage.replay.is_(False))))


def decide(session: Session, team: TeamConfig, team_id: int, *, base_hash: str, has_eval_set: bool,
           force: bool = False) -> Decision:
    cfg = team.training
    active = active_version(session, team_id)
    shape = (cfg.rank, cfg.alpha or 2 * cfg.rank)
    clean_reason = clean_retrain_reason(session, team, active, base_hash, shape)
    clean = clean_reason is not None
    selection = select_examples(session, team_id, active, replay_ratio=cfg.replay_ratio, seed=cfg.seed,
                                has_eval_set=has_eval_set, clean=clean)
    tried = set() if clean else tried_since(session, team_id, active)
    untried = sum(example_tokens(e) for e in selection.new if e.id not in tried)
    decision = Decision(False, "", clean, active, selection, untried)
    since = f"since version {active.version}" if active else "yet"
    if not selection.new:
        decision.reason = (f"nothing to train on: no live examples{'' if clean else ' ' + since}"
                           + (f" (a clean retrain is needed: {clean_reason})" if clean else ""))
        return decision
    if clean:
        decision.due, decision.reason = True, f"clean retrain: {clean_reason}"
    elif force:
        decision.due, decision.reason = True, f"forced ({untried} new tokens {since})"
    elif untried == 0:
        decision.reason = f"nothing new {since}: the new examples were already tried by a rejected version"
    elif active is None:
        decision.due, decision.reason = True, f"first version: {untried} new tokens"
    elif untried < cfg.min_new_tokens:
        decision.reason = f"not due: {untried} new tokens {since}, fewer than min_new_tokens={cfg.min_new_tokens}"
    else:
        decision.due, decision.reason = True, f"{untried} new tokens {since}"
    return decision


# ---------------------------------------------------------------------------- the per-team lock
class TeamLock:
    """Non-blocking, per team: `acquire()` is False when another run holds it."""

    def __init__(self, team: str, *, redis_url: str | None, lock_dir: Path) -> None:
        self.team = team
        self.redis_url = redis_url
        self.lock_dir = lock_dir
        self._fd: int | None = None
        self._redis_lock: Any = None
        self._extended = 0.0

    def acquire(self) -> bool:
        if self.redis_url:
            import redis

            client = redis.Redis.from_url(self.redis_url)
            self._redis_lock = client.lock(f"tacit:train:{self.team}", timeout=LOCK_TTL_S, blocking=False)
            acquired = bool(self._redis_lock.acquire(blocking=False))
            if not acquired:
                self._redis_lock = None
            self._extended = time.monotonic()
            return acquired
        import fcntl

        self.lock_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_dir / f"train-{self.team}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def keepalive(self) -> None:
        """Extend a Redis lock during a long run (at most once a minute)."""
        if self._redis_lock is not None and time.monotonic() - self._extended > 60:
            self._redis_lock.extend(LOCK_TTL_S, replace_ttl=True)
            self._extended = time.monotonic()

    def release(self) -> None:
        if self._redis_lock is not None:
            try:
                self._redis_lock.release()
            except Exception:  # expired meanwhile: nothing left to release
                pass
            self._redis_lock = None
        if self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def team_lock(ctx: Context, team: str) -> TeamLock:
    return TeamLock(team, redis_url=ctx.redis_url, lock_dir=ctx.data_dir / "locks")
