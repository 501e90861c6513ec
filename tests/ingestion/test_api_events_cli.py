"""`tacit events list` and `tacit events replay` through the command line, on both databases."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select, update

from db import models
from ingestion.corpus.events import store_event
from tacit.context import Context


def cli(tacit: Callable[..., subprocess.CompletedProcess[str]], *args: str) -> tuple[int, str, str]:
    """The command line in a fresh process, in the test's folder, where `make_ctx` wrote tacit.toml."""
    proc = tacit(*args, cwd=Path.cwd())
    return proc.returncode, proc.stdout, proc.stderr


def statuses(ctx: Context) -> dict[str, str]:
    with ctx.session() as session:
        return dict(session.execute(select(models.WebhookEvent.delivery_id, models.WebhookEvent.status)).all())


def test_events_list_and_replay(ctx: Context, tacit: Callable[..., subprocess.CompletedProcess[str]],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # the table on a wide terminal, so no cell wraps
    doc = json.dumps({"type": "document", "external_id": "d1", "title": "One"})
    store_event(ctx, "assistant", "pending-1", doc)
    store_event(ctx, "helpdesk", "pending-2", json.dumps([{"type": "tombstone", "external_id": "gone"}]))
    failed_id, _ = store_event(ctx, "assistant", "failed-once", json.dumps({"type": "document", "external_id": "d2"}))
    with ctx.session() as session:  # as left by a processing attempt that hit a database error
        session.execute(update(models.WebhookEvent).where(models.WebhookEvent.id == failed_id)
                        .values(status="failed", error="OperationalError: server closed the connection"))
    store_event(ctx, "assistant", "bad", "{nope", status="rejected", error="malformed JSON")

    code, out, _ = cli(tacit, "events", "list", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [(r["delivery_id"], r["source"], r["status"]) for r in rows] == [
        ("bad", "assistant", "rejected"), ("failed-once", "assistant", "failed"),
        ("pending-2", "helpdesk", "pending"), ("pending-1", "assistant", "pending")]
    code, out, _ = cli(tacit, "events", "list", "--json", "--status", "pending", "--limit", "1")
    assert [r["delivery_id"] for r in json.loads(out)] == ["pending-2"]
    code, out, _ = cli(tacit, "events", "list")
    assert code == 0 and "failed-once" in out and "malformed JSON" in out

    code, out, _ = cli(tacit, "events", "replay", "--source", "helpdesk")
    assert (code, out.strip()) == (0, "replayed 1 events")
    assert statuses(ctx)["pending-2"] == "processed" and statuses(ctx)["pending-1"] == "pending"
    code, out, _ = cli(tacit, "events", "replay")
    assert (code, out.strip()) == (0, "replayed 2 events")  # the pending one and the failed one
    assert statuses(ctx) == {"pending-1": "processed", "pending-2": "processed", "failed-once": "processed",
                             "bad": "rejected"}
    with ctx.session() as session:
        assert set(session.scalars(select(models.Document.external_id))) == {"d1", "d2"}
        runs = session.scalar(select(models.WebhookEvent.attempts).where(models.WebhookEvent.id == failed_id))
    assert runs == 1
    # Replaying again is harmless: processed events are skipped, nothing is written twice.
    code, out, _ = cli(tacit, "events", "replay")
    assert (code, out.strip()) == (0, "replayed 0 events")
    code, out, _ = cli(tacit, "events", "replay", str(failed_id))
    assert code == 0
    with ctx.session() as session:
        assert session.scalar(select(models.SyncRun.id).order_by(models.SyncRun.id.desc())) == 3
    code, _, err = cli(tacit, "events", "replay", "99999")
    assert code == 2 and err.strip() == "tacit: no event 99999"


def test_replayed_webhook_event_with_a_mapping_rejects_a_body_that_no_longer_fits(
        make_ctx: Callable[..., Context], sqlite_url: str, tacit: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    body = """
[[teams]]
name = "platform"
base_model = "tiny-random"

[[sources]]
name = "tickets"
kind = "webhook"
team = "platform"
[sources.mapping]
type = "'document'"
external_id = "key"
title = "summary"
"""
    ctx = make_ctx(sqlite_url, body=body)
    store_event(ctx, "tickets", "t-1", json.dumps({"key": 7, "summary": "Printer on fire"}))
    store_event(ctx, "tickets", "t-2", json.dumps({"summary": "no key"}))  # stored before the mapping changed
    code, out, _ = cli(tacit, "events", "replay")
    assert code == 0
    assert statuses(ctx) == {"t-1": "processed", "t-2": "rejected"}
    with ctx.session() as session:
        assert [(d.external_id, d.title) for d in session.scalars(select(models.Document))] == [("7", "Printer on fire")]
        error = session.scalar(select(models.WebhookEvent.error).where(models.WebhookEvent.delivery_id == "t-2"))
    assert error == "mapping failed: item 0: mapping.external_id yields null"
