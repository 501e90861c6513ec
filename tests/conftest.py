"""Shared fixtures: every database test runs on SQLite and on the throwaway PostgreSQL.

`make test` starts PostgreSQL and Redis (scripts/test-services.sh) and sets
TACIT_TEST_POSTGRES_URL / TACIT_TEST_REDIS_URL and TACIT_REQUIRE_SERVICES=1, so a missing
server is a failure there, not a silent skip.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tacit.config import load_config
from tacit.context import Context

# Converted base models are shared by the whole test session (converting SmolLM2 takes ~20 s).
os.environ.setdefault("TACIT_MODELS_DIR", str(Path(__file__).resolve().parents[1] / ".tacit" / "models"))

POSTGRES_URL = os.environ.get("TACIT_TEST_POSTGRES_URL")
PG_ADMIN_URL = os.environ.get("TACIT_TEST_PG_ADMIN_URL")
REDIS_URL = os.environ.get("TACIT_TEST_REDIS_URL")
REQUIRE = os.environ.get("TACIT_REQUIRE_SERVICES") == "1"


def need(url: str | None, what: str) -> str:
    if url:
        return url
    if REQUIRE:
        pytest.fail(f"{what} is required (TACIT_REQUIRE_SERVICES=1) but not configured")
    pytest.skip(f"{what} not available (run `make test`, which starts it)")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TACIT_CONFIG", raising=False)
    monkeypatch.setenv("TACIT_SECRET_KEY", "ZmRlYWRiZWVmZGVhZGJlZWZkZWFkYmVlZmRlYWRiZWU=")
    monkeypatch.chdir(tmp_path)


def _fresh_postgres_db() -> Iterator[str]:
    from sqlalchemy import create_engine, text

    base = need(POSTGRES_URL, "PostgreSQL")
    admin = create_engine(PG_ADMIN_URL or base, isolation_level="AUTOCOMMIT")
    name = f"t_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.rsplit("/", 1)[0] + "/" + name
    try:
        yield url
    finally:
        from db.session import get_engine

        get_engine(url).dispose()
        get_engine.cache_clear()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of each dialect."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'tacit.db'}"
    else:
        yield from _fresh_postgres_db()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tacit.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from _fresh_postgres_db()


@pytest.fixture
def second_postgres_url() -> Iterator[str]:
    """Another fresh PostgreSQL database beside `postgres_url` (for a reference run, say)."""
    yield from _fresh_postgres_db()


@pytest.fixture
def redis_url() -> str:
    return need(REDIS_URL, "Redis")


_TEAMS = """
[[teams]]
name = "platform"
base_model = "tiny-random"

[[teams]]
name = "support"
base_model = "tiny-random"
"""

_SOURCES = """
[[sources]]
name = "assistant"
kind = "webhook"
team = "platform"

[[sources]]
name = "helpdesk"
kind = "webhook"
team = "support"
"""


def _write_config(directory: Path, database_url: str, body: str = _TEAMS + _SOURCES,
                  broker_url: str = "memory://") -> Path:
    path = directory / "tacit.toml"
    path.write_text(
        f'[storage]\ndatabase_url = "{database_url}"\ndata_dir = ".tacit"\n\n'
        f'[queue]\nbroker_url = "{broker_url}"\n\n{body}',
        encoding="utf-8",
    )
    return path


@pytest.fixture
def default_teams() -> str:
    """The `[[teams]]` of the default test config: platform and support, both on tiny-random."""
    return _TEAMS


@pytest.fixture
def default_sources() -> str:
    """The `[[sources]]` of the default test config: webhook sources assistant (platform) and helpdesk (support)."""
    return _SOURCES


@pytest.fixture
def write_config() -> Callable[..., Path]:
    """Write a tacit.toml: write_config(directory, database_url, body=teams + sources, broker_url="memory://")."""
    return _write_config


@pytest.fixture(scope="session")
def tok() -> Any:
    """The tiny-random base model's tokenizer (SmolLM2's, with its chat template)."""
    from training.base_models import TINY, load_tokenizer

    return load_tokenizer(TINY)


@pytest.fixture
def make_ctx(tmp_path: Path) -> Callable[..., Context]:
    """Build a Context from a tacit.toml body: make_ctx(db_url, body=..., broker_url=...)."""

    def make(database_url: str, body: str = _TEAMS + _SOURCES, broker_url: str = "memory://") -> Context:
        path = _write_config(tmp_path, database_url, body, broker_url)
        ctx = Context(load_config(path))
        from ingestion.worker.tasks import set_context

        set_context(ctx)
        return ctx

    return make


@pytest.fixture
def ctx(make_ctx: Callable[..., Context], db_url: str) -> Context:
    """A migrated context with two teams (platform, support) and two webhook sources, on each dialect."""
    return make_ctx(db_url)


@pytest.fixture
def tacit() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the command line as a user does: `tacit(*args, cwd=…, config=…, check=False, env={…})`.

    `python -m tacit.cli` in a fresh process, in `cwd`, with `env` added to this environment. With
    `config`, that file is named by `TACIT_CONFIG` and `cwd` defaults to its folder.
    """

    def run(*args: str, cwd: Path | None = None, config: Path | None = None, check: bool = False,
            env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        extra = {**({"TACIT_CONFIG": str(config)} if config is not None else {}), **(env or {})}
        workdir = cwd if cwd is not None else config.parent if config is not None else None
        if workdir is None:
            raise TypeError("tacit() needs cwd= or config=")
        proc = subprocess.run([sys.executable, "-m", "tacit.cli", *args], cwd=workdir, capture_output=True,
                              text=True, env={**os.environ, **extra}, timeout=timeout)
        if check:
            assert proc.returncode == 0, proc.stderr
        return proc

    return run


@pytest.fixture
def tacit_serve(tmp_path: Path) -> Iterator[Callable[[Path, int], subprocess.Popen[bytes]]]:
    """Start `tacit --config CONFIG serve` as a process, as a user does: tacit_serve(config, port)
    returns once /healthz answers on `port` (the config's `[api] port`). Its output goes to
    tmp_path/serve-<n>.log; every process still running is killed at the end of the test."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(config: Path, port: int) -> subprocess.Popen[bytes]:
        from connectors.sandbox.server import wait_healthy

        log_path = tmp_path / f"serve-{len(procs)}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "tacit.cli", "--config", str(config), "serve"],
                                    stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
        procs.append(proc)
        try:
            wait_healthy(proc, port, log_path)
        except RuntimeError as exc:
            raise AssertionError(f"tacit serve did not come up: {exc}") from None
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture
def tacit_worker() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start `tacit --config CONFIG worker` as a process, in its own process group (a test can
    kill it with its pool at once): tacit_worker(config, log, queues="sync") returns once the log
    says the worker is ready. Every worker still running is killed at the end of the test."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(config: Path, log: Path, queues: str = "sync") -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "tacit.cli", "--config", str(config), "worker",
                                     "--queues", queues, "--concurrency", "2"],
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                    env={**os.environ})
        procs.append(proc)
        deadline = time.monotonic() + 90
        while "ready." not in log.read_text(errors="replace"):
            assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "the worker did not start"
            time.sleep(0.2)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def push_events() -> Callable[[Context, list[list[dict[str, Any]]]], None]:
    """push_events(ctx, deliveries): each list of records POSTed through the API as one delivery
    (`webhook-id: event-<n>`) to the `assistant` webhook source; every one must be accepted (202)."""

    def push(ctx: Context, deliveries: list[list[dict[str, Any]]]) -> None:
        from fastapi.testclient import TestClient

        from ingestion.api.app import create_app

        with TestClient(create_app(ctx)) as client:
            for n, records in enumerate(deliveries):
                r = client.post("/webhooks/assistant", json=records, headers={"webhook-id": f"event-{n}"})
                assert r.status_code == 202, r.text

    return push


@pytest.fixture
def pushed_once() -> Callable[[Context, list[list[dict[str, Any]]]], list[Any]]:
    """pushed_once(ctx, deliveries) checks that the corpus holds exactly the documents of
    `deliveries` (as given to `push_events`) with their content hashes, each written once over all
    sync runs (killed ones included); it returns those runs."""

    def check(ctx: Context, deliveries: list[list[dict[str, Any]]]) -> list[Any]:
        from sqlalchemy import select

        from connectors.base import Document
        from db import models

        expected = {d["external_id"]: Document.model_validate(d).content_hash() for ds in deliveries for d in ds}
        with ctx.session() as session:
            stored = dict(session.execute(select(models.Document.external_id, models.Document.content_hash)).all())
            versions = set(session.scalars(select(models.Document.version)))
            runs = list(session.scalars(select(models.SyncRun)))
        assert stored == expected and versions == {1}
        assert sum(r.documents_written for r in runs) == len(expected)  # each document written once
        return runs

    return check


class StreamedPost:
    """What `post_in_chunks` saw: the answer's status (None when no answer was started), its raw
    and JSON body, and how many chunks were read."""

    def __init__(self, status: int | None, raw: bytes, chunks_read: int) -> None:
        self.status, self.raw, self.chunks_read = status, raw, chunks_read

    @property
    def body(self) -> Any:
        return json.loads(self.raw) if self.raw else None


@pytest.fixture
def post_in_chunks() -> Callable[..., StreamedPost]:
    """POST a body to an ASGI app chunk by chunk through a raw ASGI `receive` that counts the chunks
    the app asked for, so a test can prove a route refused a body without reading all of it. Once
    the body is read, the client is gone: `receive` answers `http.disconnect`."""

    def post(app: Any, path: str, chunks: list[bytes], headers: dict[str, str] | None = None) -> StreamedPost:
        read = 0
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            nonlocal read
            if read < len(chunks):
                read += 1
                return {"type": "http.request", "body": chunks[read - 1], "more_body": read < len(chunks)}
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
                 "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
                 "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
        asyncio.run(app(scope, receive, send))
        status = next((m["status"] for m in sent if m["type"] == "http.response.start"), None)
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return StreamedPost(status, body, read)

    return post


@pytest.fixture
def notion_sandbox() -> Iterator[Any]:
    """A fresh Notion sandbox (the local server that serves Notion's API) for one test."""
    from connectors.sandbox.notion import NotionSandbox

    with NotionSandbox() as sb:
        yield sb


@pytest.fixture
def msgraph_sandbox(request: pytest.FixtureRequest) -> Iterator[tuple[Any, Any]]:
    """A fresh Graph sandbox with the sample company built in it, for one test: (sandbox, workspace).

    Its page size is the test module's `GRAPH_PAGE_SIZE` (6 by default; small pages make every
    listing span several pages, so paging and delta links are exercised) and its per-request
    latency the module's `GRAPH_LATENCY` (none by default).
    """
    from connectors.sandbox.graph import GraphSandbox
    from connectors.sandbox.graph.workspace import build_company

    with GraphSandbox(page_size=getattr(request.module, "GRAPH_PAGE_SIZE", 6),
                      latency=getattr(request.module, "GRAPH_LATENCY", 0.0)) as sb:
        yield sb, build_company(sb)
