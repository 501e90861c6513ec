"""The admin read API under `/api`: teams, sources, sync runs, adapters, events (bearer token).

Read-only views built on `ingestion.api.views` (the same data as `tacit status`, `tacit sources show`
and `tacit events list`); secrets in source settings are shown as `********`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select

from db import models
from ingestion.api import views
from ingestion.api.web import require_admin
from tacit.config import _NAME, ConfigError
from tacit.context import Context
from tacit.errors import NotFound

router = APIRouter(prefix="/api", tags=["admin"], dependencies=[Depends(require_admin)])
EventStatus = Literal["pending", "processed", "rejected", "failed"]
MAX_BODY_SHOWN = 64 * 1024
SOURCE_NAME = re.compile(_NAME)


def _ctx(request: Request) -> Context:
    return request.app.state.ctx


@router.get("/status", summary="Everything `tacit status` shows")
async def status(request: Request) -> dict[str, Any]:
    return await run_in_threadpool(views.collect_status, _ctx(request))


@router.get("/teams", summary="Teams with their corpus counts and active adapter version")
async def teams(request: Request) -> list[dict[str, Any]]:
    return (await run_in_threadpool(views.collect_status, _ctx(request)))["teams"]


@router.get("/sources", summary="Sources with their status and document counts")
async def sources(request: Request) -> list[dict[str, Any]]:
    return (await run_in_threadpool(views.collect_status, _ctx(request)))["sources"]


@router.get("/sources/{name}", summary="One source: settings (secrets hidden), checkpoint, recent runs")
async def source(name: str, request: Request) -> dict[str, Any]:
    return await run_in_threadpool(_source_detail, _ctx(request), name)


@router.get("/sources/{name}/runs", summary="A source's recent sync runs, newest first")
async def source_runs(name: str, request: Request) -> list[dict[str, Any]]:
    return (await run_in_threadpool(_source_detail, _ctx(request), name))["runs"]


def _source_detail(ctx: Context, name: str) -> dict[str, Any]:
    if not SOURCE_NAME.match(name):  # not a name a source can have (and nothing to send the database)
        raise HTTPException(404, f"no source named {name!r}")
    try:
        return views.source_detail(ctx, name)
    except (NotFound, ConfigError):
        raise HTTPException(404, f"no source named {name!r}") from None


@router.get("/adapters", summary="Adapter versions, newest first (optionally of one team)")
async def adapters(request: Request, team: str | None = None) -> list[dict[str, Any]]:
    return await run_in_threadpool(_adapters, _ctx(request), team)


def _adapters(ctx: Context, team: str | None) -> list[dict[str, Any]]:
    with ctx.session() as session:
        names = dict(session.execute(select(models.Team.id, models.Team.name)).all())
        stmt = select(models.Adapter).order_by(models.Adapter.team_id, models.Adapter.version.desc())
        if team is not None:
            ids = [i for i, n in names.items() if n == team]
            if not ids:
                raise HTTPException(404, f"no team named {team!r}")
            stmt = stmt.where(models.Adapter.team_id == ids[0])
        return [{
            "team": names.get(a.team_id), "version": a.version, "status": a.status, "base_model": a.base_model,
            "parent_id": a.parent_id, "clean_retrain": a.clean_retrain, "needs_clean_retrain": a.needs_clean_retrain,
            "flag_reason": a.flag_reason, "metrics": a.metrics, "reason": a.reason,
            "trained_tokens": a.trained_tokens, "created_at": a.created_at, "finished_at": a.finished_at,
            "promoted_at": a.promoted_at,
        } for a in session.scalars(stmt)]


@router.get("/events", summary="Recent pushed events, newest first")
async def events(request: Request, status: EventStatus | None = None,
                 limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[dict[str, Any]]:
    return await run_in_threadpool(lambda: views.list_events(_ctx(request), status=status, limit=limit))


@router.get("/events/{event_id}", summary="One event with its headers, body and result")
async def event(event_id: Annotated[int, Path(ge=1, le=2**31 - 1)], request: Request) -> dict[str, Any]:
    return await run_in_threadpool(_event, _ctx(request), event_id)


def _event(ctx: Context, event_id: int) -> dict[str, Any]:
    with ctx.session() as session:
        e = session.get(models.WebhookEvent, event_id)
        if e is None:
            raise HTTPException(404, f"no event {event_id}")
        source = session.get(models.Source, e.source_id)
        return {
            "id": e.id, "source": source.name if source else None, "channel": e.channel,
            "delivery_id": e.delivery_id, "status": e.status, "attempts": e.attempts,
            "received_at": e.received_at, "processed_at": e.processed_at, "error": e.error,
            "headers": e.headers, "result": e.result, "body": e.body[:MAX_BODY_SHOWN],
            "body_truncated": len(e.body) > MAX_BODY_SHOWN,
        }
