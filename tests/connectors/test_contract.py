"""The contract every pull connector passes, run against its sandbox server over real HTTP.

Each connector kind provides `tests/connectors/harness_<kind>.py` with `harness(sandbox)`, which
wraps the `<kind>_sandbox` fixture's sandbox (tests/conftest.py) in an object with: `kind`, `source_block(name, team) -> str` (a TOML
[[sources]] block pointing at the running sandbox), `inject(status, count=1, retry_after=None)`,
`expected_ids() -> set[str]` and `requests_served() -> int`.
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from connectors.registry import connector_class, kinds
from db import models
from ingestion.corpus.runner import run_sync
from tacit.context import Context
from tests.connectors import harness_msgraph

HERE = Path(__file__).parent
HARNESSES = sorted(p.stem.removeprefix("harness_") for p in HERE.glob("harness_*.py"))
TEAMS = '[[teams]]\nname = "platform"\nbase_model = "tiny-random"\n\n'
GRAPH_PAGE_SIZE, GRAPH_LATENCY = harness_msgraph.PAGE_SIZE, harness_msgraph.LATENCY


def test_every_pull_connector_has_a_harness() -> None:
    pull = {k for k in kinds() if not connector_class(k).push_only}
    assert pull <= set(HARNESSES), f"connectors without a contract harness: {pull - set(HARNESSES)}"


@pytest.fixture(params=HARNESSES)
def harness(request: pytest.FixtureRequest) -> Any:
    module = importlib.import_module(f"tests.connectors.harness_{request.param}")
    return module.harness(request.getfixturevalue(f"{request.param}_sandbox"))


@pytest.fixture
def sandbox_ctx(harness: Any, make_ctx: Any, sqlite_url: str) -> Context:
    return make_ctx(sqlite_url, TEAMS + harness.source_block("src", "platform"))


def _stored(ctx: Context) -> tuple[set[str], int, set[int]]:
    with ctx.session() as session:
        ids = set(session.scalars(select(models.Document.external_id).where(models.Document.deleted_at.is_(None))))
        ids |= set(session.scalars(select(models.Interaction.external_id).where(models.Interaction.deleted_at.is_(None))))
        rows = (session.scalar(select(func.count()).select_from(models.Document))
                + session.scalar(select(func.count()).select_from(models.Interaction)))
        versions = set(session.scalars(select(models.Document.version))) | set(
            session.scalars(select(models.Interaction.version)))
        return ids, rows, versions


def test_full_sync_brings_everything_and_a_second_sync_writes_nothing(harness: Any, sandbox_ctx: Context) -> None:
    summary = run_sync(sandbox_ctx, "src")
    assert summary.status == "succeeded", summary.error
    assert summary.failures == 0 or harness.kind == "msgraph"  # Graph's sandbox holds one corrupt file on purpose
    ids, rows, _ = _stored(sandbox_ctx)
    assert ids == harness.expected_ids()
    assert rows == len(ids)
    again = run_sync(sandbox_ctx, "src")
    assert again.status == "succeeded"
    assert (again.documents_written, again.interactions_written, again.tombstones) == (0, 0, 0)


def test_429_then_success(harness: Any, sandbox_ctx: Context) -> None:
    harness.inject(429, count=3, retry_after=1)
    summary = run_sync(sandbox_ctx, "src")
    assert summary.status == "succeeded", summary.error
    assert summary.stats["throttled"] >= 3
    assert _stored(sandbox_ctx)[0] == harness.expected_ids()


def test_5xx_then_success(harness: Any, sandbox_ctx: Context) -> None:
    harness.inject(503, count=2, retry_after=0)
    harness.inject(500, count=1)
    summary = run_sync(sandbox_ctx, "src")
    assert summary.status == "succeeded", summary.error
    assert summary.stats["retries"] >= 3
    assert _stored(sandbox_ctx)[0] == harness.expected_ids()


def test_401_is_an_auth_error_and_marks_the_source_failing(harness: Any, sandbox_ctx: Context) -> None:
    harness.inject(401, count=1000)
    summary = run_sync(sandbox_ctx, "src")
    assert summary.status == "failed"
    assert summary.error and summary.error.startswith("AuthError")
    with sandbox_ctx.session() as session:
        assert sandbox_ctx.source_row(session, "src").status == "failing"
    assert _stored(sandbox_ctx)[0] == set()


class _Crash(Exception):
    pass


def test_crash_mid_sync_then_resume_no_gap_no_duplicate(harness: Any, sandbox_ctx: Context) -> None:
    connector = sandbox_ctx.connector("src")
    original = connector.sync
    total = len(harness.expected_ids())

    def crashing(checkpoint: Any):  # type: ignore[no-untyped-def]
        gen = original(checkpoint)
        for n, item in enumerate(gen):
            if n >= total // 2:
                gen.close()
                raise _Crash("process died")
            yield item

    connector.sync = crashing  # type: ignore[method-assign]
    summary = run_sync(sandbox_ctx, "src", connector=connector, batch_size=5)
    assert summary.status == "failed"
    resumed = run_sync(sandbox_ctx, "src")
    assert resumed.status == "succeeded", resumed.error
    ids, rows, versions = _stored(sandbox_ctx)
    assert ids == harness.expected_ids()
    assert rows == len(ids) and versions == {1}


@pytest.mark.slow
def test_sigkill_mid_sync_then_resume(write_config: Callable[..., Path], harness: Any, tmp_path: Path, postgres_url: str) -> None:
    config = write_config(tmp_path, postgres_url, TEAMS + harness.source_block("src", "platform"))
    env = {**os.environ, "TACIT_CONFIG": str(config)}
    ctx = Context.load(config)
    # Make the first sync slow enough to be killed in the middle.
    harness.inject(503, count=0)
    start = harness.requests_served()
    full = subprocess.run([sys.executable, "-m", "tacit.cli", "sync", "src"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert full.returncode == 0, full.stderr
    needed = harness.requests_served() - start
    with ctx.session() as session:
        session.execute(models.Document.__table__.delete())
        session.execute(models.Interaction.__table__.delete())
        src = ctx.source_row(session, "src")
        src.checkpoint = None

    start = harness.requests_served()
    proc = subprocess.Popen([sys.executable, "-m", "tacit.cli", "sync", "src"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while harness.requests_served() - start < needed // 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = _stored(ctx)[0]
    assert partial != harness.expected_ids(), "the sync finished before it could be killed"

    resumed = subprocess.run([sys.executable, "-m", "tacit.cli", "sync", "src"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    ids, rows, versions = _stored(ctx)
    assert ids == harness.expected_ids()
    assert rows == len(ids) and versions == {1}
    with ctx.session() as session:
        statuses = list(session.scalars(select(models.SyncRun.status).order_by(models.SyncRun.id)))
    assert statuses[-2:] == ["interrupted", "succeeded"]
