"""The compose stack, brought up as local processes: each tacit service's command and environment
come from docker-compose.yml (container paths mapped into a temporary folder, PostgreSQL and Redis
from the test services). They all start at once on an empty database, so they migrate at once."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import create_engine, func, select, text

from connectors.sandbox.server import free_port
from db import models
from tests.ingestion.signed import SECRET, TOKEN, post_signed

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("api", "worker", "beat")


def _expand(value: str) -> str:
    """Compose's `${VAR:?message}` and `${VAR}` from this process's environment."""
    return re.sub(r"\$\{(\w+)(?::\?[^}]*)?\}", lambda m: os.environ[m.group(1)], value)


def _service(compose: dict, name: str, root: Path, port: int) -> tuple[list[str], dict[str, str]]:
    service = compose["services"][name]
    assert service.get("entrypoint", ["tacit"]) == ["tacit"], name

    def local(value: str) -> str:  # container paths → the temporary folder
        value = re.sub(r"^/(data|models|tmp)(/|$)", lambda m: f"{root}/{m.group(1)}{m.group(2)}", value)
        return value.replace("0.0.0.0", "127.0.0.1").replace("8400", str(port))

    env = {k: local(_expand(str(v))) for k, v in service["environment"].items()}
    env["TACIT_CONFIG"] = str(root / "tacit.toml")  # the mounted tacit.toml
    return [sys.executable, "-m", "tacit.cli", *(local(str(a)) for a in service["command"])], env


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[list[tuple[str, subprocess.Popen[bytes]]]]:
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    yield procs
    for _, proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for _, proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait(what: str, check, logs: dict[str, Path], procs) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 120
    while not check():
        for name, proc in procs:
            assert proc.poll() is None, f"{name} exited:\n{logs[name].read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"{what} did not happen:\n" + "\n".join(
            f"--- {n}\n{p.read_text()[-2000:]}" for n, p in logs.items())
        time.sleep(0.25)


def test_compose_services_start_together_as_processes(default_teams: str, write_config: Callable[..., Path], tmp_path: Path, postgres_url: str, redis_url: str,
                                                      processes) -> None:  # type: ignore[no-untyped-def]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    port = free_port()
    broker = redis_url.rsplit("/", 1)[0] + "/7"
    write_config(tmp_path, postgres_url, f'[api]\nadmin_token = "{TOKEN}"\n' + default_teams
                 + f'\n[[sources]]\nname = "assistant"\nkind = "webhook"\nteam = "platform"\nsecret = "{SECRET}"\n',
                 broker_url=broker)
    logs = {name: tmp_path / f"{name}.log" for name in SERVICES}
    commands = {name: _service(compose, name, tmp_path, port) for name in SERVICES}
    for name in SERVICES:  # all at once, on an empty database
        argv, env = commands[name]
        base = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        processes.append((name, subprocess.Popen(argv, env={**base, **env}, cwd=tmp_path, start_new_session=True,
                                                 stdout=open(logs[name], "wb"), stderr=subprocess.STDOUT)))

    def ready() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    _wait("api /readyz", ready, logs, processes)
    _wait("worker ready", lambda: "ready." in logs["worker"].read_text(), logs, processes)
    _wait("beat started", lambda: "beat: Starting" in logs["beat"].read_text(), logs, processes)
    schedule = Path(commands["beat"][0][commands["beat"][0].index("--schedule") + 1])
    assert schedule.parent == tmp_path / "data" / "beat"
    _wait("beat wrote its schedule", lambda: any(schedule.parent.iterdir()), logs, processes)

    engine = create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
            assert conn.execute(select(func.count()).select_from(models.Team.__table__)).scalar() == 2
            assert conn.execute(select(func.count()).select_from(models.Source.__table__)).scalar() == 1
    finally:
        engine.dispose()
    for text_ in logs.values():
        assert "Traceback" not in text_.read_text()

    # Two uvicorn workers: /metrics sums both processes' counters, whichever answers.
    assert commands["api"][1]["PROMETHEUS_MULTIPROC_DIR"].startswith(str(tmp_path))
    for i in range(6):
        assert post_signed(port, f"stack-{i}", {"type": "document", "external_id": f"d{i}"}).status_code == 202
    for _ in range(4):
        body = httpx.get(f"http://127.0.0.1:{port}/metrics", headers={"authorization": f"Bearer {TOKEN}"},
                         timeout=10).text
        total = sum(float(m.group(1)) for m in re.finditer(
            r'^tacit_webhook_events_accepted_total\{[^}]*source="assistant"[^}]*\} (\S+)$', body, re.M))
        assert total == 6
