"""The broker (Redis, append-only) restarted while tasks are queued and one is being processed.

Webhook deliveries are accepted through the API (committed to PostgreSQL, then queued on a
private Redis), a real `tacit worker` works through them, and Redis is killed and started again
in the middle. Queued tasks survive in Redis' append-only file, the worker reconnects, and
whatever is delivered twice is harmless: at the end every event is processed exactly once (one
succeeded run each), the corpus holds exactly the pushed documents with their content hashes,
each written once, and processing has caught up with all of them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from db import models
from tacit.config import load_config
from tacit.context import Context
from tests.reliability.servers import PrivateRedis

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

EVENTS = 8
DOCS = 150


@pytest.fixture
def broker() -> Iterator[PrivateRedis]:
    server = PrivateRedis().start()
    yield server
    server.close()


def record(event: int, doc: int) -> dict[str, str]:
    return {"type": "document", "external_id": f"e{event}-d{doc}", "title": f"Event {event} note {doc}",
            "text": f"# Note {event}.{doc}\n\nThe replica in region {doc % 7} fails over to zone {event}. "
                    f"Owner of shard {event * DOCS + doc} is team {doc % 5}."}


def state(ctx: Context) -> dict[str, int]:
    with ctx.session() as s:
        events = dict(s.execute(select(models.WebhookEvent.status, func.count())
                                .group_by(models.WebhookEvent.status)).all())
        docs = s.scalar(select(func.count()).select_from(models.Document)) or 0
        done = s.scalar(select(func.count()).select_from(models.Document)
                        .where(models.Document.processed_hash == models.Document.content_hash)) or 0
    return {"docs": docs, "processed_docs": done, **events}


def test_redis_restarted_mid_work_redelivers_and_nothing_is_done_twice(
        default_sources: str, default_teams: str, write_config: Callable[..., Path],
        tacit_worker: Callable[..., subprocess.Popen[bytes]], push_events: Callable[..., None],
        pushed_once: Callable[..., Any], tmp_path: Path,
        postgres_url: str, broker: PrivateRedis) -> None:
    config = write_config(tmp_path, postgres_url, default_teams + default_sources, broker_url=broker.url)
    ctx = Context(load_config(config))
    deliveries = [[record(e, d) for d in range(DOCS)] for e in range(EVENTS)]
    push_events(ctx, deliveries)
    assert state(ctx) == {"docs": 0, "processed_docs": 0, "pending": EVENTS}

    log = tmp_path / "worker.log"
    worker = tacit_worker(config, log, queues="sync,process")
    try:
        deadline = time.monotonic() + 120
        while state(ctx).get("processed", 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        before = state(ctx)
        assert 0 < before.get("processed", 0) < EVENTS, before  # some done, others queued
        broker.restart()  # SIGKILL, then start again on the same append-only file
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            now = state(ctx)
            if now.get("processed") == EVENTS and now["processed_docs"] == EVENTS * DOCS:
                break
            assert worker.poll() is None, log.read_text(errors="replace")[-3000:]
            time.sleep(0.5)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
    output = log.read_text(errors="replace")
    assert state(ctx) == {"docs": EVENTS * DOCS, "processed_docs": EVENTS * DOCS, "processed": EVENTS}, output[-3000:]
    runs = pushed_once(ctx, deliveries)
    with ctx.session() as s:
        chunk_docs = s.scalar(select(func.count(func.distinct(models.Chunk.document_id)))) or 0
        chunk_rows = s.execute(select(models.Chunk.document_id, models.Chunk.document_version, models.Chunk.ordinal)
                               ).all()
    assert sorted(r.status for r in runs) == ["succeeded"] * EVENTS  # one run per event, none twice
    assert chunk_docs == EVENTS * DOCS and len(set(chunk_rows)) == len(chunk_rows)
    assert "Connection to broker lost" in output or "Cannot connect to redis" in output  # the restart was felt
