"""Celery tasks: thin wrappers that receive ids and call plain, separately tested functions.

`acks_late` only where running a task twice is harmless (every task here is idempotent:
syncs resume from their checkpoint, events are processed once by delivery id, processing
skips unchanged content, a refresh holds a per-team lock).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from celery.signals import worker_process_init, worker_ready

from ingestion.corpus.events import pending_event_ids
from ingestion.corpus.events import process_event as process_stored_event
from ingestion.corpus.runner import run_sync
from ingestion.processing.pipeline import process_team as process_documents
from tacit.context import Context

log = logging.getLogger(__name__)
_context: Context | None = None


def set_context(ctx: Context | None) -> None:
    """Use this context (and its queue settings) for tasks sent or run by this process."""
    global _context
    _context = ctx
    if ctx is not None:
        from ingestion.worker.celery_app import app, configure

        configure(app, ctx.config)
        app.set_current()
        app.set_default()


def get_context() -> Context:
    global _context
    if _context is None:
        set_context(Context.load())
    assert _context is not None
    return _context


@shared_task(name="tacit.sync_source", acks_late=True)
def sync_source(source: str, full: bool = False) -> dict[str, Any]:

    ctx = get_context()
    summary = run_sync(ctx, source, full=full)
    if summary.changed:
        enqueue_processing(ctx, ctx.config.source(source).team)
    return summary.as_dict()


@shared_task(name="tacit.process_event", acks_late=True)
def process_event(event_id: int) -> dict[str, Any]:

    ctx = get_context()
    result = process_stored_event(ctx, event_id)
    team = result.get("team")
    if team and (result.get("documents_written") or result.get("interactions_written") or result.get("tombstones")):
        enqueue_processing(ctx, team)
    return result


@shared_task(name="tacit.replay_pending_events", acks_late=True)
def replay_pending_events() -> int:

    ids = pending_event_ids(get_context())
    for event_id in ids:
        process_event.delay(event_id)
    return len(ids)


@shared_task(name="tacit.process_team", acks_late=True)
def process_team(team: str) -> dict[str, Any]:
    return process_documents(get_context(), team)


@shared_task(name="tacit.refresh_adapter", acks_late=True)
def refresh_adapter(team: str, force: bool = False) -> dict[str, Any]:
    from training.service import refresh_adapter as refresh  # torch takes seconds to load: only where it runs

    return refresh(get_context(), team, force=force)


def enqueue_processing(ctx: Context, team: str) -> None:
    """Processing follows ingestion; in eager mode the CLI runs it explicitly instead."""
    if not ctx.config.queue.eager:
        process_team.delay(team)


@worker_process_init.connect
def _own_database_connections(**_: Any) -> None:
    # A pool process is forked from the worker's main process: the pooled database connections
    # it inherited belong to the parent and must not be used (or closed) here.
    if _context is not None:
        from db.session import get_engine

        get_engine(_context.database_url).dispose(close=False)


@worker_ready.connect
def _replay_on_start(sender: Any = None, **_: Any) -> None:
    # Events accepted but not processed before a crash are picked up again on start.
    try:
        replay_pending_events.delay()
    except Exception as exc:  # the broker may not be ready yet; `tacit events replay` remains
        log.warning("could not queue pending events: %s", exc)
