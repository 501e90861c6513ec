"""Fuzzing the webhook route: hostile bodies and headers never yield a 500 nor store what they should not.

The test client re-raises any exception that reaches the app's catch-all (a 500), so one
server fault fails the test. Every accepted event must then process without failing on
both databases: what the route accepts is storable.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, timedelta, timezone
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from connectors.webhook.signatures import sign_headers
from db import models
from ingestion.api.app import create_app
from tacit.context import Context

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ALLOWED = {200, 202, 400, 401, 404, 409, 413, 415}
BODY = """
[api]
max_body_bytes = 65536
admin_token = "fuzz-token"

[[teams]]
name = "platform"
base_model = "tiny-random"

[[sources]]
name = "open"
kind = "webhook"
team = "platform"

[[sources]]
name = "signed"
kind = "webhook"
team = "platform"
secret = "{secret}"

[[sources]]
name = "mapped"
kind = "webhook"
team = "platform"
[sources.mapping]
items = "data"
type = "kind"
external_id = "id"
title = "name"
kind = "sub"
messages = "msgs"
rating = "score"
""".replace("{secret}", SECRET)

FUZZ = settings(max_examples=200, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# ---------------------------------------------------------------------------- strategies
repeated = st.builds(lambda c, n: c * n, st.sampled_from(["x", "\U0001f600", "é"]), st.integers(250, 1100))
nasty_text = st.one_of(st.text(max_size=30), repeated,
                       st.sampled_from(["", "a\x00b", "\ud800", "\udfff\ud800", "\u202e", " "]))
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=10**20, max_value=10**40),
                    st.floats(allow_nan=False, allow_infinity=False), nasty_text)
json_values = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(nasty_text, c, max_size=4),
                           max_leaves=16)
offsets = st.builds(lambda m: timezone(timedelta(minutes=m)), st.integers(min_value=-1439, max_value=1439))
times = st.one_of(st.datetimes(timezones=st.just(UTC) | offsets).map(lambda d: d.isoformat()),
                  st.sampled_from(["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2024-02-30",
                                   "yesterday", "2024-01-01"]), json_values)
message = st.fixed_dictionaries({"text": nasty_text | json_values}, optional={
    "role": st.sampled_from(["user", "assistant", "other", "bot"]), "author": nasty_text, "at": times})
record = st.fixed_dictionaries(
    {"type": st.sampled_from(["document", "interaction", "tombstone", "other"]) | json_values},
    optional={
        "external_id": nasty_text | json_values, "title": nasty_text | json_values, "text": nasty_text,
        "url": nasty_text, "authors": st.lists(nasty_text, max_size=3) | json_values,
        "created_at": times, "updated_at": times, "parent_external_id": nasty_text | json_values,
        "acl": st.lists(nasty_text, max_size=3), "metadata": st.dictionaries(nasty_text, json_values, max_size=3),
        "kind": st.sampled_from(["comment", "thread", "chat", "feedback"]) | json_values,
        "messages": st.lists(message, max_size=3) | json_values, "rating": scalars,
        "correction": nasty_text | json_values, "document_external_id": nasty_text, "reason": nasty_text,
        "extra": json_values,
    })
dumped = st.tuples(st.one_of(record, st.lists(record, max_size=4), json_values), st.booleans()).map(
    lambda t: json.dumps(t[0], ensure_ascii=t[1]).encode("utf-8", "surrogatepass"))
valid = st.one_of(
    st.builds(lambda i, t: {"type": "document", "external_id": i, "title": t}, nasty_text.filter(bool), nasty_text),
    st.builds(lambda i, r, m: {"type": "interaction", "external_id": i, "kind": "feedback", "rating": r,
                               "messages": [{"role": "user", "text": m}]},
              nasty_text.filter(bool), st.floats(-1e300, 1e300), nasty_text),
).map(lambda r: json.dumps(r).encode())
bodies = st.one_of(dumped, dumped, valid, st.binary(max_size=300),
                   dumped.map(lambda b: b[: max(0, len(b) - 3)]),  # truncated JSON
                   st.sampled_from([b"NaN", b"[1e999]", b"\xef\xbb\xbf{}", b"\x00"]),
                   st.builds(lambda c, n: c * n, st.sampled_from([b"{", b"[", b"9"]), st.integers(1000, 6000)))
header_bytes = st.binary(max_size=80).map(lambda b: bytes(c for c in b if c >= 0x20 or c == 0x09))
content_types = st.one_of(st.sampled_from(["application/json", "application/json; charset=utf-8",
                                           "application/vnd.x+json", "APPLICATION/JSON", "text/plain", "",
                                           "application/json; charset=latin-1", "application/json;;;"]),
                          header_bytes.map(lambda b: b.decode("latin-1")))
webhook_headers = st.dictionaries(
    st.sampled_from(["webhook-id", "webhook-timestamp", "webhook-signature", "x-hub-signature-256",
                     "idempotency-key", "content-length", "x-github-delivery"]),
    header_bytes, max_size=5)


@pytest.fixture
def fuzz_ctx(make_ctx: Callable[..., Context], db_url: str) -> Context:
    return make_ctx(db_url, body=BODY)


def stored(ctx: Context) -> dict[int, str]:
    with ctx.session() as session:
        return dict(session.execute(select(models.WebhookEvent.id, models.WebhookEvent.status)).all())


def finish(client: TestClient, ctx: Context, kept: set[int]) -> dict[int, str]:
    assert client.app.state.worker.wait_idle(120)  # type: ignore[attr-defined]
    events = stored(ctx)
    assert set(events) == kept  # exactly the events the answers named, nothing else
    assert "failed" not in events.values() and "pending" not in events.values()
    metrics = client.app.state.api.metrics  # type: ignore[attr-defined]
    assert metrics.internal_errors._value.get() == 0
    return events


def check(response: Any, kept: set[int]) -> None:
    assert response.status_code in ALLOWED, (response.status_code, response.text)
    data = response.json()
    if response.status_code in (200, 202, 400, 409) and "event_id" in data:
        kept.add(data["event_id"])


def test_fuzzed_bodies_never_500_and_only_answered_events_are_stored(fuzz_ctx: Context) -> None:
    kept: set[int] = set()
    with TestClient(create_app(fuzz_ctx, process_teams=False)) as client:

        @FUZZ
        @given(body=bodies, source=st.sampled_from(["open", "mapped"]), ctype=content_types)
        def run(body: bytes, source: str, ctype: str) -> None:
            r = client.post(f"/webhooks/{source}", content=body, headers={"content-type": ctype.encode("latin-1")})
            check(r, kept)
            if r.status_code == 202:
                assert r.json()["records"] >= 0

        run()
        outcome = finish(client, fuzz_ctx, kept)
    # The fuzzing reached both the storing and the refusing paths.
    assert "processed" in outcome.values() and "rejected" in outcome.values()


def test_fuzzed_signed_bodies_and_headers(fuzz_ctx: Context) -> None:
    kept: set[int] = set()
    with TestClient(create_app(fuzz_ctx, process_teams=False)) as client:

        @FUZZ
        @given(body=bodies, headers=webhook_headers, sign=st.booleans(),
               msg_id=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40))
        def run(body: bytes, headers: dict[str, bytes], sign: bool, msg_id: str) -> None:
            sent: dict[str, Any] = {"content-type": b"application/json", **headers}
            if sign:
                sent.pop("content-length", None)
                sent.update({k: v.encode() for k, v in sign_headers(SECRET, msg_id, body).items()})
            before = stored(fuzz_ctx)
            r = client.post("/webhooks/signed", content=body, headers=sent)
            check(r, kept)
            if r.status_code in (401, 413, 415):
                assert set(stored(fuzz_ctx)) == set(before)  # refused before anything was stored
            if not sign:
                assert r.status_code in (400, 401, 413, 415)  # random headers never pass the signature

        run()
        outcome = finish(client, fuzz_ctx, kept)
    assert "processed" in outcome.values() and "rejected" in outcome.values()


def test_fuzzed_paths_and_admin_queries(fuzz_ctx: Context) -> None:
    with TestClient(create_app(fuzz_ctx, process_teams=False)) as client:

        @FUZZ
        @given(raw_segment=st.text(max_size=40), raw_query=st.text(max_size=40))
        def run(raw_segment: str, raw_query: str) -> None:
            segment = quote(raw_segment.encode("utf-8", "surrogatepass"), safe="")
            query = quote(raw_query.encode("utf-8", "surrogatepass"), safe="")
            for method, path in (("POST", f"/webhooks/{segment}"), ("GET", f"/api/events/{segment}"),
                                 ("GET", f"/api/events?limit={query}&status={segment}"),
                                 ("GET", f"/api/sources/{segment}")):
                r = client.request(method, path, content=b"{}", headers={"content-type": "application/json",
                                                                         "authorization": "Bearer fuzz-token"})
                assert r.status_code < 500, (path, r.status_code)

        run()
