"""A real `celery worker` process on the throwaway Redis, with the corpus on PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


def _wait_for(predicate, timeout: float = 90.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_import_goes_through_a_real_worker(default_sources: str, default_teams: str, write_config: Callable[..., Path], tmp_path: Path, postgres_url: str, redis_url: str) -> None:
    # A private Redis database number keeps this test's queue apart from anything else.
    broker = redis_url.rsplit("/", 1)[0] + "/7"
    import redis

    redis.Redis.from_url(broker).flushdb()
    config = write_config(tmp_path, postgres_url, default_teams + default_sources, broker_url=broker)
    records = [{"type": "document", "external_id": f"doc-{i}", "title": f"Doc {i}", "text": f"# Doc {i}\n\nbody {i}"}
               for i in range(1200)]  # three import batches
    (tmp_path / "records.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    env = {**os.environ, "TACIT_CONFIG": str(config)}

    # Queue first, with no worker running: the events are stored durably and wait in Redis.
    proc = subprocess.run([sys.executable, "-m", "tacit.cli", "import", "records.jsonl", "--source", "assistant"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "queued 3 import batches" in proc.stdout

    engine = create_engine(postgres_url)

    def query(sql: str):  # type: ignore[no-untyped-def]
        with engine.connect() as conn:
            return conn.execute(text(sql)).all()

    def count() -> int:
        return query("select count(*) from documents")[0][0]

    assert count() == 0

    worker = subprocess.Popen([sys.executable, "-m", "tacit.cli", "worker", "--queues", "sync,process"],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(lambda: count() == 1200, what="the worker to store 1200 documents")
        _wait_for(lambda: query("select status, count(*) from webhook_events group by status") == [("processed", 3)],
                  what="every event processed")
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            output, _ = worker.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            output, _ = worker.communicate()
        engine.dispose()
    assert "celery@" in output and "ready" in output
