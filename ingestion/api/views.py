"""Read-only views of the platform for `tacit status`, `tacit sources`, `tacit events` and the admin API."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from connectors.registry import connector_class, contributions
from db import models
from tacit.context import Context
from tacit.secrets import is_sealed


def _counts(session: Any, model: Any, column: Any, *where: Any) -> dict[int, int]:
    stmt = select(column, func.count()).group_by(column)
    for clause in where:
        stmt = stmt.where(clause)
    return dict(session.execute(stmt).all())


def collect_status(ctx: Context) -> dict[str, Any]:
    with ctx.session() as session:
        teams = list(session.scalars(select(models.Team).order_by(models.Team.name)))
        docs = _counts(session, models.Document, models.Document.team_id, models.Document.deleted_at.is_(None))
        inter = _counts(session, models.Interaction, models.Interaction.team_id, models.Interaction.deleted_at.is_(None))
        chunks = _counts(session, models.Chunk, models.Chunk.team_id, models.Chunk.retired_at.is_(None))
        examples = _counts(session, models.Example, models.Example.team_id, models.Example.retired_at.is_(None))
        active = dict(session.execute(select(models.Adapter.team_id, models.Adapter.version)
                                      .where(models.Adapter.status == "active")).all())
        docs_by_source = _counts(session, models.Document, models.Document.source_id,
                                 models.Document.deleted_at.is_(None))
        configured = {s.name: s for s in ctx.config.sources}
        team_names = {t.id: t.name for t in teams}
        sources = []
        for row in session.scalars(select(models.Source).order_by(models.Source.name)):
            cfg = configured.get(row.name)
            sources.append({
                "name": row.name, "kind": row.kind, "team": team_names.get(row.team_id),
                "status": row.status, "configured": cfg is not None,
                "schedule": cfg.schedule if cfg else None,
                "last_synced_at": row.last_synced_at, "last_error": row.last_error,
                "documents": docs_by_source.get(row.id, 0),
            })
        events = dict(session.execute(select(models.WebhookEvent.status, func.count())
                                      .group_by(models.WebhookEvent.status)).all())
        return {
            "database": _safe_url(ctx.database_url),
            "broker": _safe_url(ctx.config.queue.broker_url),
            "teams": [{
                "name": t.name, "base_model": t.base_model, "documents": docs.get(t.id, 0),
                "interactions": inter.get(t.id, 0), "chunks": chunks.get(t.id, 0),
                "examples": examples.get(t.id, 0), "active_adapter": active.get(t.id),
            } for t in teams],
            "sources": sources,
            "events": events,
        }


def _safe_url(url: str) -> str:
    """A URL without its password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1] if "@" in url else url


def redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    if is_sealed(value):
        return "********"
    return value


def source_detail(ctx: Context, name: str) -> dict[str, Any]:
    with ctx.session() as session:
        row = ctx.source_row(session, name)
        runs = session.scalars(select(models.SyncRun).where(models.SyncRun.source_id == row.id)
                               .order_by(models.SyncRun.id.desc()).limit(10))
        team = session.get(models.Team, row.team_id)
        detail = {
            "name": row.name, "kind": row.kind, "team": team.name if team else None, "status": row.status,
            "last_error": row.last_error, "last_synced_at": row.last_synced_at,
            "settings": redact(row.config), "checkpoint": row.checkpoint, "state": redact(row.state),
            "runs": [{
                "id": r.id, "trigger": r.trigger, "status": r.status, "started_at": r.started_at,
                "finished_at": r.finished_at, "documents_written": r.documents_written,
                "documents_unchanged": r.documents_unchanged, "interactions_written": r.interactions_written,
                "tombstones": r.tombstones, "failures": r.failures, "requests": r.requests, "error": r.error,
            } for r in runs],
        }
    status = contributions(connector_class(detail["kind"])).status
    if status is not None:
        detail.update(status(ctx, name))
    return detail


def list_events(ctx: Context, *, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    with ctx.session() as session:
        names = dict(session.execute(select(models.Source.id, models.Source.name)).all())
        stmt = select(models.WebhookEvent).order_by(models.WebhookEvent.id.desc()).limit(limit)
        if status:
            stmt = stmt.where(models.WebhookEvent.status == status)
        return [{
            "id": e.id, "source": names.get(e.source_id), "channel": e.channel, "delivery_id": e.delivery_id,
            "status": e.status, "attempts": e.attempts, "received_at": e.received_at,
            "processed_at": e.processed_at, "error": e.error,
        } for e in session.scalars(stmt)]
