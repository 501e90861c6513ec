"""The webhook service on SQLite and PostgreSQL: every answer, durability, idempotency, mapping."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from connectors.webhook.signatures import github_signature, sign_headers
from db import models
from ingestion.api.app import create_app
from ingestion.corpus.events import store_event
from tacit.context import Context

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
NEW_SECRET = "whsec_YW5vdGhlci1zZWNyZXQtb2YtMzItYnl0ZXMtbG9uZyE="
TOKEN = "admin-token-for-tests"

BODY = """
[api]
admin_token = "%(token)s"
max_backlog = %(backlog)d

[[teams]]
name = "platform"
base_model = "tiny-random"

[[sources]]
name = "assistant"
kind = "webhook"
team = "platform"

[[sources]]
name = "signed"
kind = "webhook"
team = "platform"
secret = ["%(new)s", "%(old)s"]
max_body_bytes = 2048

[[sources]]
name = "github"
kind = "webhook"
team = "platform"
github_secret = "gh-secret"

[[sources]]
name = "tickets"
kind = "webhook"
team = "platform"
[sources.mapping]
items = "ratings"
type = "'interaction'"
external_id = "ticket"
kind = "'feedback'"
messages = "[{role: 'user', text: question}, {role: 'assistant', text: answer}]"
rating = "stars"
correction = "fix"

[[sources]]
name = "off"
kind = "webhook"
team = "platform"
enabled = false
"""


def config_body(backlog: int = 1000, token: str = TOKEN) -> str:
    return BODY % {"token": token, "backlog": backlog, "new": NEW_SECRET, "old": SECRET}


@pytest.fixture
def api_ctx(make_ctx: Callable[..., Context], db_url: str) -> Context:
    return make_ctx(db_url, body=config_body())


@contextmanager
def running(ctx: Context) -> Iterator[TestClient]:
    app = create_app(ctx, process_teams=False)
    with TestClient(app) as client:
        yield client


def settle(client: TestClient) -> None:
    assert client.app.state.worker.wait_idle(60)  # type: ignore[attr-defined]


def post(client: TestClient, source: str, payload: Any, headers: dict[str, str] | None = None) -> Any:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return client.post(f"/webhooks/{source}", content=raw,
                       headers={"content-type": "application/json", **(headers or {})})


def signed(payload: Any, msg_id: str, secret: str = SECRET, timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(payload).encode()
    return raw, sign_headers(secret, msg_id, raw, timestamp=timestamp)


def count(ctx: Context, model: Any, *where: Any) -> int:
    with ctx.session() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def events(ctx: Context) -> list[models.WebhookEvent]:
    with ctx.session() as session:
        return list(session.scalars(select(models.WebhookEvent).order_by(models.WebhookEvent.id)))


def documents(ctx: Context) -> dict[str, models.Document]:
    with ctx.session() as session:
        return {d.external_id: d for d in session.scalars(select(models.Document))}


# ---------------------------------------------------------------------------- record format
def test_record_format_upsert_interaction_and_tombstone(api_ctx: Context) -> None:
    with running(api_ctx) as client:
        r = post(client, "assistant", {"type": "document", "external_id": "runbook", "title": "Deploys",
                                       "text": "# Deploys\nRun make deploy."})
        assert r.status_code == 202 and r.json()["status"] == "accepted" and r.json()["records"] == 1
        settle(client)
        r = post(client, "assistant", [
            {"type": "document", "external_id": "runbook", "title": "Deploys", "text": "# Deploys\nUse the pipeline."},
            {"type": "interaction", "external_id": "chat-1", "kind": "feedback", "rating": -1,
             "correction": "Use the release pipeline.", "document_external_id": "runbook",
             "messages": [{"role": "user", "text": "How do I deploy?"},
                          {"role": "assistant", "text": "Run make deploy."}]},
            {"type": "document", "external_id": "old", "title": "Old"},
        ])
        assert r.status_code == 202 and r.json()["records"] == 3
        settle(client)
        assert post(client, "assistant", {"type": "tombstone", "external_id": "old"}).status_code == 202
        settle(client)
    docs = documents(api_ctx)
    assert docs["runbook"].version == 2 and docs["runbook"].text == "# Deploys\nUse the pipeline."
    assert docs["old"].deleted_at is not None and docs["runbook"].deleted_at is None
    with api_ctx.session() as session:
        [chat] = session.scalars(select(models.Interaction)).all()
        assert (chat.kind, chat.rating, chat.correction) == ("feedback", -1.0, "Use the release pipeline.")
        assert [m["text"] for m in chat.messages] == ["How do I deploy?", "Run make deploy."]
    assert [e.status for e in events(api_ctx)] == ["processed"] * 3


def test_jmespath_mapping_end_to_end(api_ctx: Context) -> None:
    with running(api_ctx) as client:
        r = post(client, "tickets", {"ratings": [
            {"ticket": 41, "question": "VPN?", "answer": "Reboot.", "stars": 2, "fix": "Reinstall the profile."},
            {"ticket": 42, "question": "Printer?", "answer": "Floor 2.", "stars": 5},
        ]})
        assert r.status_code == 202 and r.json()["records"] == 2
        bad = post(client, "tickets", {"ratings": [{"ticket": 43, "question": "Q"}]})
        assert bad.status_code == 400 and "messages" in bad.json()["detail"]
        settle(client)
    with api_ctx.session() as session:
        rows = {i.external_id: i for i in session.scalars(select(models.Interaction))}
    assert set(rows) == {"41", "42"}
    assert (rows["41"].rating, rows["41"].correction) == (2.0, "Reinstall the profile.")
    assert rows["42"].correction is None and rows["42"].messages[1]["text"] == "Floor 2."
    assert [e.status for e in events(api_ctx)] == ["processed", "rejected"]


# ---------------------------------------------------------------------------- signatures
def test_signed_source_answers_and_rotation(api_ctx: Context) -> None:
    doc = {"type": "document", "external_id": "s1", "title": "Signed"}
    with running(api_ctx) as client:
        raw, h = signed(doc, "msg_old_key", SECRET)
        assert post(client, "signed", raw, h).status_code == 202  # signed by the old key
        raw, h = signed({**doc, "external_id": "s2"}, "msg_new_key", NEW_SECRET)
        assert post(client, "signed", raw, h).status_code == 202  # signed by the new key
        # Refused: missing headers, a wrong key, a changed body, an expired or future timestamp.
        wrong = "whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB"
        cases = [
            (raw, {}, "missing signature header"),
            (*signed(doc, "msg_x", wrong), "no webhook-signature matches"),
            (raw + b" ", h, "no webhook-signature matches"),
            (*signed(doc, "msg_y", SECRET, timestamp=int(time.time()) - 301), "s old"),
            # well past the 300 s tolerance: a loaded machine may take seconds to deliver it
            (*signed(doc, "msg_z", SECRET, timestamp=int(time.time()) + 400), "in the future"),
        ]
        for body, headers, message in cases:
            r = post(client, "signed", body, headers)
            assert r.status_code == 401, r.text
            assert message in r.json()["detail"] and r.json()["reason"] == "signature"
        settle(client)
    # Nothing of the refused deliveries was stored.
    assert [e.delivery_id for e in events(api_ctx)] == ["msg_old_key", "msg_new_key"]
    assert set(documents(api_ctx)) == {"s1", "s2"}


def test_github_signature_and_delivery_id(api_ctx: Context) -> None:
    raw = json.dumps({"type": "document", "external_id": "g1", "title": "From GitHub"}).encode()
    good = {"x-hub-signature-256": github_signature("gh-secret", raw), "x-github-delivery": "d-1"}
    with running(api_ctx) as client:
        assert post(client, "github", raw, good).status_code == 202
        assert post(client, "github", raw, good).json()["status"] == "duplicate"
        assert post(client, "github", raw, {"x-hub-signature-256": github_signature("nope", raw)}).status_code == 401
        assert post(client, "github", raw).status_code == 401
        # Without a delivery id, an identical signed body is a replay of the same delivery.
        only_sig = {"x-hub-signature-256": github_signature("gh-secret", raw)}
        first, again = post(client, "github", raw, only_sig), post(client, "github", raw, only_sig)
        assert first.status_code == 202 and again.status_code == 200
        settle(client)
    assert [e.delivery_id[:7] for e in events(api_ctx)] == ["github:", "sha256:"]


# ---------------------------------------------------------------------------- idempotency
def test_replayed_webhook_id_creates_nothing_new(api_ctx: Context) -> None:
    raw, h = signed({"type": "document", "external_id": "once", "title": "Once"}, "msg_replay")
    with running(api_ctx) as client:
        first = post(client, "signed", raw, h)
        settle(client)
        before = (count(api_ctx, models.WebhookEvent), count(api_ctx, models.Document),
                  count(api_ctx, models.SyncRun))
        for _ in range(3):
            again = post(client, "signed", raw, h)
            assert again.status_code == 200
            assert again.json() == {"status": "duplicate", "event_id": first.json()["event_id"],
                                    "delivery_id": "msg_replay"}
        settle(client)
        after = (count(api_ctx, models.WebhookEvent), count(api_ctx, models.Document),
                 count(api_ctx, models.SyncRun))
        metrics = client.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"}).text
    assert before == after == (1, 1, 1)
    assert 'tacit_webhook_events_duplicate_total{source="signed"} 3.0' in metrics
    # Unsigned sources deduplicate by webhook-id or Idempotency-Key when the sender gives one.
    with running(api_ctx) as client:
        for header in ("webhook-id", "idempotency-key"):
            codes = [post(client, "assistant", {"type": "tombstone", "external_id": "z"}, {header: f"k-{header}"})
                     .status_code for _ in range(2)]
            assert codes == [202, 200]


# ---------------------------------------------------------------------------- refusals
def test_bad_json_and_bad_records_are_400_and_kept_rejected(api_ctx: Context) -> None:
    with running(api_ctx) as client:
        r = post(client, "assistant", b'{"type": "document",', {"webhook-id": "bad-json"})
        assert r.status_code == 400 and r.json()["reason"] == "malformed"
        assert r.json()["detail"].startswith("malformed JSON")
        r = post(client, "assistant", [{"type": "document", "external_id": "fine"}, {"type": "document"}],
                 {"webhook-id": "bad-record"})
        assert r.status_code == 400 and r.json()["reason"] == "invalid"
        assert r.json()["detail"] == "item 1: external_id: Field required"
        # The same id again, now with a good body: refused, the sender must use a new id.
        r = post(client, "assistant", {"type": "document", "external_id": "fine"}, {"webhook-id": "bad-record"})
        assert r.status_code == 409 and "new webhook-id" in r.json()["detail"]
        settle(client)
    rows = events(api_ctx)
    assert [(e.delivery_id, e.status) for e in rows] == [("bad-json", "rejected"), ("bad-record", "rejected")]
    assert rows[0].body == '{"type": "document",' and rows[0].error.startswith("malformed JSON")
    assert count(api_ctx, models.Document) == 0  # all or nothing: "fine" was not written


def test_unknown_source_content_type_and_size(api_ctx: Context) -> None:
    doc = {"type": "document", "external_id": "a"}
    with running(api_ctx) as client:
        assert post(client, "nobody", doc).status_code == 404
        assert post(client, "off", doc).status_code == 404  # disabled
        assert client.post("/webhooks/assistant", content=b"{}").status_code == 415  # no content type
        for ctype in ("text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"):
            r = client.post("/webhooks/assistant", content=b"{}", headers={"content-type": ctype})
            assert r.status_code == 415, ctype
        ok = client.post("/webhooks/assistant", content=json.dumps(doc).encode(),
                         headers={"content-type": "application/cloudevents+json; charset=UTF-8"})
        assert ok.status_code == 202
        # Over the source's own limit (2048 bytes), declared or streamed without a length.
        big = json.dumps({**doc, "text": "x" * 3000}).encode()
        raw, h = signed({**doc, "text": "x" * 3000}, "msg_big")
        assert post(client, "signed", raw, h).status_code == 413

        def chunks() -> Iterator[bytes]:
            for i in range(0, len(big), 500):
                yield big[i:i + 500]

        r = client.post("/webhooks/signed", content=chunks(), headers={"content-type": "application/json", **h})
        assert r.status_code == 413 and r.json()["reason"] == "too_large"
        settle(client)
    assert count(api_ctx, models.WebhookEvent) == 1


def test_global_body_limit(make_ctx: Callable[..., Context], sqlite_url: str) -> None:
    ctx = make_ctx(sqlite_url, body=config_body().replace("max_backlog", "max_body_bytes = 4096\nmax_backlog"))
    with running(ctx) as client:
        doc = {"type": "document", "external_id": "a", "text": "y" * 3000}
        assert post(client, "assistant", doc).status_code == 202
        r = post(client, "assistant", {**doc, "text": "y" * 5000})
        assert r.status_code == 413 and "4096" in r.json()["detail"]


def test_backlog_bound_answers_429(make_ctx: Callable[..., Context], db_url: str) -> None:
    ctx = make_ctx(db_url, body=config_body(backlog=2))
    app = create_app(ctx, process_teams=False)
    client = TestClient(app)  # no lifespan: the background worker is not running, events stay pending
    codes = [post(client, "assistant", {"type": "tombstone", "external_id": f"t{i}"}).status_code for i in range(4)]
    assert codes == [202, 202, 429, 429]
    r = post(client, "assistant", {"type": "tombstone", "external_id": "t9"})
    assert r.headers["retry-after"] == "5" and "more than 2 events" in r.json()["detail"]
    assert count(ctx, models.WebhookEvent) == 2
    # Processing the backlog opens the gate again.
    with TestClient(app) as running_client:
        settle(running_client)
        assert post(running_client, "assistant", {"type": "tombstone", "external_id": "t5"}).status_code == 202


# ---------------------------------------------------------------------------- durability
def test_processing_is_not_inline_and_pending_events_replay_on_start(api_ctx: Context) -> None:
    # An event committed by an earlier process that died before processing it.
    event_id, created = store_event(api_ctx, "assistant", "crashed-before-processing",
                                    json.dumps({"type": "document", "external_id": "survivor"}))
    assert created
    app = create_app(api_ctx, process_teams=False)
    client = TestClient(app)  # lifespan not started: no worker
    r = post(client, "assistant", {"type": "document", "external_id": "fresh"})
    assert r.status_code == 202
    assert [e.status for e in events(api_ctx)] == ["pending", "pending"]  # answered before processing
    with TestClient(app) as started:  # start: replays every pending event
        settle(started)
    assert [e.status for e in events(api_ctx)] == ["processed", "processed"]
    assert set(documents(api_ctx)) == {"survivor", "fresh"}


def test_redis_mode_stores_even_when_the_broker_is_down(make_ctx: Callable[..., Context], db_url: str) -> None:
    ctx = make_ctx(db_url, body=config_body(), broker_url="redis://127.0.0.1:9/0")  # nothing listens there
    app = create_app(ctx)
    assert app.state.worker is None
    with TestClient(app) as client:
        r = post(client, "assistant", {"type": "document", "external_id": "kept"})
        assert r.status_code == 202
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["broker"].startswith("unavailable")
        assert ready.json()["database"] == "ok"
    assert [e.status for e in events(ctx)] == ["pending"]  # a worker replays it when it starts


def test_a_real_server_fault_is_a_logged_500(api_ctx: Context, caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(api_ctx, process_teams=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        with api_ctx.session() as session:
            session.execute(text("DROP TABLE webhook_events"))
        r = post(client, "assistant", {"type": "document", "external_id": "a"})
        assert r.status_code == 500 and r.json() == {"detail": "internal server error"}
        metrics = client.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"}).text
    assert "tacit_http_internal_errors_total 1.0" in metrics
    assert any("POST /webhooks/assistant failed" in rec.message for rec in caplog.records)


# ---------------------------------------------------------------------------- health, admin, metrics
def test_health_admin_api_and_metrics(api_ctx: Context) -> None:
    auth = {"authorization": f"Bearer {TOKEN}"}
    with running(api_ctx) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json() == {"status": "ok", "database": "ok", "broker": "ok"}
        assert client.get("/openapi.json").json()["paths"]["/webhooks/{source}"]["post"]["responses"]["413"]
        post(client, "assistant", {"type": "document", "external_id": "d1", "title": "One"})
        post(client, "assistant", b"nope")
        settle(client)
        for path in ("/api/teams", "/api/events", "/metrics"):
            assert client.get(path).status_code == 401
            assert client.get(path, headers={"authorization": "Bearer wrong"}).status_code == 401
        teams = client.get("/api/teams", headers=auth).json()
        assert [(t["name"], t["documents"]) for t in teams] == [("platform", 1)]
        sources = {s["name"]: s for s in client.get("/api/sources", headers=auth).json()}
        assert sources["assistant"]["documents"] == 1 and sources["assistant"]["kind"] == "webhook"
        detail = client.get("/api/sources/signed", headers=auth).json()
        assert detail["settings"]["secret"] == ["********", "********"]  # never in clear text
        assert client.get("/api/sources/nobody", headers=auth).status_code == 404
        runs = client.get("/api/sources/assistant/runs", headers=auth).json()
        assert [(r["trigger"], r["status"], r["documents_written"]) for r in runs] == [("webhook", "succeeded", 1)]
        evs = client.get("/api/events", headers=auth).json()
        assert [e["status"] for e in evs] == ["rejected", "processed"]
        assert [e["status"] for e in client.get("/api/events?status=rejected", headers=auth).json()] == ["rejected"]
        one = client.get(f"/api/events/{evs[0]['id']}", headers=auth).json()
        assert one["body"] == "nope" and one["headers"]["content-type"] == "application/json"
        assert client.get("/api/events/999999", headers=auth).status_code == 404
        assert client.get("/api/events/99999999999", headers=auth).status_code == 422
        assert client.get("/api/events?status=weird", headers=auth).status_code == 422
        assert client.get("/api/adapters", headers=auth).json() == []
        assert client.get("/api/adapters?team=nobody", headers=auth).status_code == 404
        metrics = client.get("/metrics", headers=auth).text
    assert 'tacit_webhook_events_accepted_total{channel="webhook",source="assistant"} 1.0' in metrics
    assert 'tacit_webhook_events_rejected_total{reason="malformed",source="assistant"} 1.0' in metrics
    assert 'tacit_webhook_events{status="processed"} 1.0' in metrics
    assert 'tacit_webhook_events{status="rejected"} 1.0' in metrics
    assert "tacit_webhook_event_processing_lag_seconds_count 1.0" in metrics
    assert "tacit_webhook_oldest_pending_age_seconds 0.0" in metrics


def test_admin_api_disabled_without_a_token(make_ctx: Callable[..., Context], sqlite_url: str) -> None:
    ctx = make_ctx(sqlite_url, body=config_body().replace(f'admin_token = "{TOKEN}"\n', ""))
    with running(ctx) as client:
        for path in ("/api/status", "/metrics"):
            r = client.get(path, headers={"authorization": "Bearer anything"})
            assert r.status_code == 403 and "admin_token" in r.json()["detail"]
        assert client.get("/healthz").status_code == 200
        assert post(client, "assistant", {"type": "tombstone", "external_id": "x"}).status_code == 202


def test_embedded_mode_processes_the_team_after_its_events(make_ctx: Callable[..., Context], sqlite_url: str) -> None:
    ctx = make_ctx(sqlite_url, body=config_body())
    app = create_app(ctx)  # with the follow-up: chunks and examples once the events are in
    with TestClient(app) as client:
        r = post(client, "assistant", [
            {"type": "document", "external_id": "guide", "title": "Deploy guide",
             "text": "# Deploy guide\n\nRun the release pipeline from the main branch. " * 5},
            {"type": "interaction", "external_id": "fb-1", "kind": "feedback", "rating": -1,
             "correction": "Use the release pipeline.",
             "messages": [{"role": "user", "text": "How do I deploy?"}, {"role": "assistant", "text": "make deploy"}]},
        ])
        assert r.status_code == 202
        settle(client)
        assert app.state.worker.errors == 0
    assert count(ctx, models.Chunk) >= 1
    with ctx.session() as session:
        examples = set(session.execute(select(models.Example.kind, models.Example.origin)).all())
    # The document became a chunk for continued pre-training and study restatements of its
    # sentences; the rated, corrected answer became a corrected chat example and a preference pair.
    assert examples == {("cpt", "chunk"), ("cpt", "study"), ("chat", "feedback"), ("preference", "feedback")}
