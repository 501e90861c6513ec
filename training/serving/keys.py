"""Per-team API keys for the `/v1` endpoint: made once and shown once, stored as SHA-256 only."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from sqlalchemy import select

from db import models
from db.base import utcnow
from tacit.errors import NotFound, UsageError

KEY_PREFIX = "tk-"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def _as_dict(row: models.ApiKey, team: str) -> dict[str, Any]:
    return {"id": row.id, "team": team, "name": row.name, "prefix": row.prefix, "created_at": row.created_at,
            "last_used_at": row.last_used_at, "revoked_at": row.revoked_at}


def create_key(ctx: Any, team: str, name: str = "") -> tuple[dict[str, Any], str]:
    """A new key of `team`: (its row, the key itself — which is not stored and cannot be shown again)."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with ctx.session() as session:
        team_row = ctx.team_row(session, team)
        row = models.ApiKey(team_id=team_row.id, name=name, prefix=key[:10], key_hash=hash_key(key))
        session.add(row)
        session.flush()
        return _as_dict(row, team), key


def list_keys(ctx: Any, team: str) -> list[dict[str, Any]]:
    with ctx.session() as session:
        team_row = ctx.team_row(session, team)
        rows = session.scalars(select(models.ApiKey).where(models.ApiKey.team_id == team_row.id)
                               .order_by(models.ApiKey.id))
        return [_as_dict(r, team) for r in rows]


def revoke_key(ctx: Any, team: str, key: str) -> int:
    """Revoke the team's keys matching `key`: an id, a prefix (as `list` shows it) or the key."""
    with ctx.session() as session:
        team_row = ctx.team_row(session, team)
        rows = list(session.scalars(select(models.ApiKey).where(models.ApiKey.team_id == team_row.id,
                                                                models.ApiKey.revoked_at.is_(None))))
        hit = [r for r in rows if key in (str(r.id), r.prefix, r.name) or r.key_hash == hash_key(key)]
        if not hit:
            raise NotFound(f"team {team} has no live key {key!r} (see `tacit keys list {team}`)")
        if len(hit) > 1:
            raise UsageError(f"{key!r} matches {len(hit)} keys of team {team}; give the id")
        hit[0].revoked_at = utcnow()
        return hit[0].id


def team_of_key(ctx: Any, key: str) -> tuple[str, int] | None:
    """(team, key id) of a live key, noting its use; None for an unknown or revoked key."""
    with ctx.session() as session:
        row = session.scalar(select(models.ApiKey).where(models.ApiKey.key_hash == hash_key(key),
                                                         models.ApiKey.revoked_at.is_(None)))
        if row is None:
            return None
        team = session.get(models.Team, row.team_id)
        row.last_used_at = utcnow()
        return (team.name if team else "", row.id)
