"""`tacit serve` as a real uvicorn process: signed posts over HTTP, a hard kill, a restart that loses nothing."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from connectors.sandbox.server import free_port
from db import models
from ingestion.corpus.events import store_event
from tacit.config import load_config
from tacit.context import Context
from tests.ingestion.signed import SECRET, TOKEN, post_signed


@pytest.fixture
def config(tmp_path: Path, write_config: Callable[..., Path], default_teams: str) -> Callable[[str, int], Path]:
    """A tacit.toml serving on `port`, with the admin token and a signed webhook source for platform."""

    def write(db_url: str, port: int) -> Path:
        body = (f'[api]\nport = {port}\nadmin_token = "{TOKEN}"\n' + default_teams
                + f'\n[[sources]]\nname = "assistant"\nkind = "webhook"\nteam = "platform"\nsecret = "{SECRET}"\n')
        return write_config(tmp_path, db_url, body)

    return write


def wait_processed(ctx: Context, expected: int, timeout: float = 60) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        with ctx.session() as session:
            rows = dict(session.execute(select(models.WebhookEvent.delivery_id, models.WebhookEvent.status)).all())
        if sum(1 for s in rows.values() if s == "processed") >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


@pytest.mark.slow
def test_real_server_signed_posts_kill_and_restart(tacit_serve, config, tmp_path: Path, db_url: str) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    path = config(db_url, port)
    ctx = Context(load_config(path))
    # Committed by an earlier run that died before processing it: picked up when the server starts.
    store_event(ctx, "assistant", "from-before", json.dumps({"type": "document", "external_id": "before"}))

    server = tacit_serve(path, port)
    answers = [post_signed(port, f"msg-{i}", {"type": "document", "external_id": f"doc-{i}", "title": f"Doc {i}",
                                              "text": f"Body {i}"}) for i in range(20)]
    assert [r.status_code for r in answers] == [202] * 20
    assert post_signed(port, "msg-3", {"type": "document", "external_id": "doc-3"}).status_code == 200
    bad = httpx.post(f"http://127.0.0.1:{port}/webhooks/assistant", content=b"{}",
                     headers={"content-type": "application/json", "webhook-id": "x", "webhook-timestamp": "1",
                              "webhook-signature": "v1,AAAA"})
    assert bad.status_code == 401
    statuses = wait_processed(ctx, 21)
    assert statuses == {"from-before": "processed", **{f"msg-{i}": "processed" for i in range(20)}}
    auth = {"authorization": f"Bearer {TOKEN}"}
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", headers=auth).text
    assert 'tacit_webhook_events_accepted_total{channel="webhook",source="assistant"} 20.0' in metrics
    assert 'tacit_webhook_events_rejected_total{reason="signature",source="assistant"} 1.0' in metrics
    assert len(httpx.get(f"http://127.0.0.1:{port}/api/events?limit=100", headers=auth).json()) == 21

    # A hard kill in the middle of a burst: every delivery answered 202 was committed first.
    accepted: list[str] = []
    for i in range(20, 60):
        if i == 40:
            server.send_signal(signal.SIGKILL)
            server.wait()
        try:
            r = post_signed(port, f"msg-{i}", {"type": "document", "external_id": f"doc-{i}"})
        except httpx.TransportError:
            continue
        if r.status_code == 202:
            accepted.append(f"msg-{i}")
    assert accepted == [f"msg-{i}" for i in range(20, 40)]

    server = tacit_serve(path, port)  # restart: pending events are replayed
    statuses = wait_processed(ctx, 41)
    assert all(statuses[m] == "processed" for m in accepted) and len(statuses) == 41
    with ctx.session() as session:
        docs = set(session.scalars(select(models.Document.external_id)))
    assert docs == {"before"} | {f"doc-{i}" for i in range(40)}
    server.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal so the exit status tells why it stopped.
    assert server.wait(timeout=30) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in (tmp_path / "serve-1.log").read_text()
