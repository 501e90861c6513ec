"""Production path: the API queues on Redis, a real Celery worker is SIGKILLed mid-processing and restarted.

Nothing is lost and nothing is written twice: every event ends processed, the corpus holds
exactly the pushed documents with their content hashes, each document was written once over
all runs (the killed one included), and each event finished exactly one run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from db import models
from tacit.config import load_config
from tacit.context import Context

EVENTS = 10
DOCS = 1000


@pytest.fixture
def redis_db(redis_url: str) -> Iterator[str]:
    """A Redis database of the shared server claimed for this test (its queues are purged, not others')."""
    import redis

    base = redis_url.rsplit("/", 1)[0]
    token = uuid.uuid4().hex
    for db in range(8, 16):
        client = redis.Redis.from_url(f"{base}/{db}")
        if client.set("tacit-test-claim", token, nx=True, ex=900):
            client.flushdb()
            client.set("tacit-test-claim", token, ex=900)
            try:
                yield f"{base}/{db}"
            finally:
                client.flushdb()
                client.close()
            return
        client.close()
    pytest.fail("no free Redis database to claim (8-15)")


def record(event: int, doc: int) -> dict[str, str]:
    return {"type": "document", "external_id": f"e{event}-d{doc}", "title": f"Event {event} doc {doc}",
            "text": f"# Note {doc}\n\n" + f"Paragraph {event}.{doc} about deploys. " * 8}


def kill(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)  # the main process and its pool children, at once
    proc.wait()


def progress(ctx: Context) -> tuple[int, int, int]:
    """(documents stored, events processed, events pending)."""
    with ctx.session() as session:
        docs = session.scalar(select(func.count()).select_from(models.Document)) or 0
        by_status = dict(session.execute(select(models.WebhookEvent.status, func.count())
                                         .group_by(models.WebhookEvent.status)).all())
    return docs, by_status.get("processed", 0), by_status.get("pending", 0)


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.postgres
def test_worker_killed_mid_processing_loses_nothing(default_sources: str, default_teams: str, write_config: Callable[..., Path],
                                                    tacit_worker: Callable[..., subprocess.Popen[bytes]],
                                                    push_events: Callable[..., None], pushed_once: Callable[..., Any],
                                                    tmp_path: Path,
                                                    postgres_url: str, redis_db: str) -> None:
    path = write_config(tmp_path, postgres_url, default_teams + default_sources, broker_url=redis_db)
    ctx = Context(load_config(path))
    # Accept every event through the API: committed, then queued on Redis for the workers.
    deliveries = [[record(e, d) for d in range(DOCS)] for e in range(EVENTS)]
    push_events(ctx, deliveries)
    assert progress(ctx) == (0, 0, EVENTS)

    log = tmp_path / "worker.log"
    worker = tacit_worker(path, log)
    killed_mid_processing = 0
    deadline = time.monotonic() + 180
    while killed_mid_processing < 2 and time.monotonic() < deadline:
        docs, processed, pending = progress(ctx)
        if docs > processed * DOCS and pending:  # an event is half-way written
            kill(worker)
            docs, processed, pending = progress(ctx)
            if docs > processed * DOCS and pending:  # still half-way once the worker is dead
                killed_mid_processing += 1
            worker = tacit_worker(path, log)  # restart: pending events are replayed on start
        time.sleep(0.01)
    assert killed_mid_processing == 2, "the worker was never caught in the middle of an event"

    while progress(ctx)[1] < EVENTS and time.monotonic() < deadline:
        time.sleep(0.2)
    kill(worker)

    docs, processed, pending = progress(ctx)
    assert (docs, processed, pending) == (EVENTS * DOCS, EVENTS, 0)
    runs = pushed_once(ctx, deliveries)
    with ctx.session() as session:
        attempts = list(session.scalars(select(models.WebhookEvent.attempts)))
    assert sum(1 for r in runs if r.status == "succeeded") == EVENTS  # each event finished exactly once
    assert sum(attempts) >= EVENTS + 2  # the killed attempts are counted
    assert "Traceback" not in log.read_text(errors="replace")
