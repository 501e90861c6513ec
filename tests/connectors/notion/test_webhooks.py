"""Notion webhooks end to end: the sandbox subscribes, signs and delivers over real HTTP to the
router served by uvicorn; events are stored, then processed by targeted fetches (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from connectors.notion.webhooks import plan, router
from connectors.sandbox.company import person
from connectors.sandbox.notion import NotionSandbox
from db import models
from ingestion.api.views import source_detail
from ingestion.corpus.runner import run_sync
from tacit.context import Context
from tests.connectors.harness_notion import NotionHarness

TEAMS = '[[teams]]\nname = "platform"\nbase_model = "tiny-random"\n\n'


@pytest.fixture
def wctx(make_ctx: Callable[..., Context], db_url: str, sandbox: NotionSandbox) -> Context:
    block = NotionHarness(sandbox).source_block("eng", "platform").replace('comments = "blocks"', 'comments = "pages"')
    return make_ctx(db_url, TEAMS + block)


@pytest.fixture
def receiver(wctx: Context, webhook_receiver: Callable[..., Any]) -> Any:
    """The Notion webhook routes on loopback for `wctx`; `url` is the `eng` source's route."""
    r = webhook_receiver(router, "/webhooks/notion/eng")
    r.attach(wctx)
    return r


def live_interactions(ctx: Context, page: str) -> dict[str, models.Interaction]:
    with ctx.session() as session:
        rows = list(session.scalars(select(models.Interaction).where(
            models.Interaction.document_external_id == page, models.Interaction.deleted_at.is_(None))))
        for row in rows:
            session.expunge(row)
        return {r.external_id: r for r in rows}


def test_handshake_then_signed_events_trigger_targeted_fetches(wctx: Context, sandbox: NotionSandbox,
                                                                receiver: Any, stored_row: Callable[..., Any]) -> None:
    assert run_sync(wctx, "eng").status == "succeeded"

    # 1. Verification handshake: stored encrypted, shown by `tacit sources show`.
    token = sandbox.subscribe(receiver.url)
    assert sandbox.deliveries[-1][1] == 200
    with wctx.session() as session:
        state = wctx.source_row(session, "eng").state
    assert state["verification_token"].startswith("fernet:") and token not in json.dumps(state)
    detail = source_detail(wctx, "eng")
    assert detail["webhook"] == {"verification_token": token, "pending_verification_token": None}
    assert detail["state"]["verification_token"] == "********"

    # 2. A content edit: one signed event, stored once, processed by re-reading only that page.
    page = sandbox.page_id("platform/Deploy policy")
    sandbox.edit_page(page, "Hotfixes may ship during the freeze with a director's approval.")
    event, status = sandbox.deliveries[-1]
    assert status == 200 and len(receiver.queued) == 1
    sandbox.reset_counts()
    [result] = receiver.process()
    assert result["status"] == "processed" and result["documents_written"] == 1
    assert sandbox.count("/v1/search") == 0 and sandbox.count("/v1/data_sources") == 0
    row = stored_row(wctx, models.Document, page)
    assert row.version == 2 and row.text.endswith("Hotfixes may ship during the freeze with a director's approval.")
    # Notion retries a delivery: the same event id is stored once.
    assert sandbox.deliver(event) == 200 and receiver.queued == []

    # 3. A new discussion, then a reply-free deletion of it.
    asker = person("platform", 1)
    discussion = sandbox.add_comment(page, "Does the freeze apply to docs-only changes?", author=asker.id)
    [result] = receiver.process()
    assert result["interactions_written"] == 1
    thread = live_interactions(wctx, page)[discussion]
    assert thread.kind == "comment" and thread.messages[0]["author"] == asker.name
    assert thread.messages[0]["text"] == "Does the freeze apply to docs-only changes?"
    comment = next(c.id for c in sandbox.workspace.comments if c.discussion_id == discussion)
    sandbox.delete_comment(comment)
    [result] = receiver.process()
    assert result["tombstones"] == 1 and discussion not in live_interactions(wctx, page)

    # 4. A comment on a block (the source reads page-level discussions only): just that block's.
    heading = next(c.parent["block_id"] for c in sandbox.workspace.comments
                   if c.parent["type"] == "block_id" and sandbox.workspace.block_page(c.parent["block_id"]) == page)
    reply_to = next(c.discussion_id for c in sandbox.workspace.comments if c.parent.get("block_id") == heading)
    sandbox.add_comment(heading, "Still true after the reorg.", author=asker.id, discussion_id=reply_to, on_block=True)
    [result] = receiver.process()
    block_thread = live_interactions(wctx, page)[reply_to]
    assert block_thread.meta == {"discussion_id": reply_to, "on": "block", "block_id": heading}
    assert [m["text"] for m in block_thread.messages][-1] == "Still true after the reorg."

    # 5. The page goes to the trash: a tombstone for it and its discussions.
    sandbox.delete_page(page)
    [result] = receiver.process()
    assert result["status"] == "processed"
    assert stored_row(wctx, models.Document, page).deleted_at is not None
    assert live_interactions(wctx, page) == {}
    sandbox.restore_page(page)
    [result] = receiver.process()
    # Back with its page-level discussion, the question about Skylark (its block discussion returns
    # with the next event on it).
    assert stored_row(wctx, models.Document, page).deleted_at is None and len(live_interactions(wctx, page)) == 1


def test_forged_or_unsigned_events_are_refused(wctx: Context, sandbox: NotionSandbox, receiver: Any) -> None:
    event = sandbox.event("page.content_updated", sandbox.page_id("platform/On-call"))
    body = json.dumps(event).encode()
    # Before the handshake there is no key to check a signature with.
    answer = httpx.post(receiver.url, content=body, headers={"X-Notion-Signature": sandbox.sign(body, "x")})
    assert answer.status_code == 401
    token = sandbox.subscribe(receiver.url)
    for headers in ({}, {"X-Notion-Signature": sandbox.sign(body, "not-the-token")},
                    {"X-Notion-Signature": "sha256=" + "0" * 64}):
        assert httpx.post(receiver.url, content=body, headers=headers).status_code == 401
    tampered = body.replace(b"page.content_updated", b"page.deleted")
    assert httpx.post(receiver.url, content=tampered,
                      headers={"X-Notion-Signature": sandbox.sign(body, token)}).status_code == 401
    assert httpx.post(receiver.url, content=b"{not json", headers={"X-Notion-Signature": "x"}).status_code == 400
    assert httpx.post(receiver.url.replace("/eng", "/nope"), content=body).status_code == 404
    signed_junk = json.dumps({"id": "e1"}).encode()
    assert httpx.post(receiver.url, content=signed_junk,
                      headers={"X-Notion-Signature": sandbox.sign(signed_junk)}).status_code == 400
    with wctx.session() as session:
        assert session.scalar(select(models.WebhookEvent.id)) is None
    assert receiver.queued == []


def test_a_second_handshake_cannot_replace_the_signing_key(wctx: Context, sandbox: NotionSandbox,
                                                           receiver: Any) -> None:
    first = sandbox.subscribe(receiver.url)
    assert httpx.post(receiver.url, json={"verification_token": first}).status_code == 200
    answer = httpx.post(receiver.url, json={"verification_token": "secret_attacker"})
    assert answer.status_code == 409 and "pending" in answer.json()["detail"]
    assert source_detail(wctx, "eng")["webhook"] == {"verification_token": first,
                                                     "pending_verification_token": "secret_attacker"}
    # Events are still checked against the first token.
    sandbox.edit_page(sandbox.page_id("platform/On-call"), "Pager rotation moved to Tuesdays.")
    assert sandbox.deliveries[-1][1] == 200


def test_data_source_and_unknown_events(wctx: Context, sandbox: NotionSandbox, receiver: Any,
                                        stored_row: Callable[..., Any]) -> None:
    assert run_sync(wctx, "eng").status == "succeeded"
    sandbox.subscribe(receiver.url)
    ds = sandbox.page_id("research/experiments")
    row = sandbox.page_id("research/row/baseline-1729")
    sandbox.workspace.data_sources[ds].schema["Seed"]["name"] = "Random seed"
    sandbox.workspace.pages[row].properties["Random seed"] = sandbox.workspace.pages[row].properties.pop("Seed")
    sandbox.deliver(sandbox.event("data_source.schema_updated", ds, entity_type="data_source"))
    sandbox.deliver(sandbox.event("file_upload.completed", "f1", entity_type="file_upload"))
    first, second = receiver.process()
    assert first["status"] == "processed" and first["documents_written"] == 1
    assert "- **Random seed**: 1729" in stored_row(wctx, models.Document, row).text
    assert second["status"] == "processed" and second.get("documents_written") is None
    assert plan({"type": "data_source.content_updated", "entity": {"id": ds}}, "pages") == ("sync", [])
    assert plan({"type": "page.moved", "entity": {"id": row}}, "pages") == ("fetch_tree", [row])
    assert plan({"type": "page.undeleted", "entity": {"id": row}}, "pages") == ("fetch", [row])


def test_a_moved_page_event_refreshes_the_acl_below_it(wctx: Context, sandbox: NotionSandbox,
                                                       receiver: Any, stored_row: Callable[..., Any]) -> None:
    assert run_sync(wctx, "eng").status == "succeeded"
    sandbox.subscribe(receiver.url)
    page = sandbox.page_id("platform/Databases")
    below = [sandbox.page_id("platform/failover-drill"), sandbox.page_id("platform/drill-timeline")]
    sandbox.move_page(page, sandbox.page_id("support/root"))
    [result] = receiver.process()
    assert result["documents_written"] == 3
    for external_id in [page, *below]:
        assert stored_row(wctx, models.Document, external_id).acl == ["team:support"]
    assert all(t.acl == ["team:support"] for t in live_interactions(wctx, page).values())


def test_the_webhook_service_mounts_the_notion_route(wctx: Context) -> None:
    from fastapi.testclient import TestClient

    api = pytest.importorskip("ingestion.api.app")
    client = TestClient(api.create_app(wctx, process_teams=False))
    answer = client.post("/webhooks/notion/eng", json={"verification_token": "secret_from_notion"})
    assert answer.status_code == 200 and answer.json() == {"verified": "stored"}
    assert source_detail(wctx, "eng")["webhook"]["verification_token"] == "secret_from_notion"


def test_a_body_over_the_cap_is_refused_without_being_read_whole(wctx: Context, post_in_chunks: Callable[..., Any]) -> None:
    wctx.config.api.max_body_bytes = 4096
    app = FastAPI()
    app.state.ctx = wctx
    app.include_router(router)
    chunks = [b"x" * 1024] * 64  # 64 KiB, sent without a Content-Length
    r = post_in_chunks(app, "/webhooks/notion/eng", chunks, {"content-type": "application/json"})
    assert r.status == 413 and "4096" in r.body["detail"]
    assert r.chunks_read == 5  # refused at the first chunk past the cap, the rest never read
    declared = post_in_chunks(app, "/webhooks/notion/eng", chunks,
                              {"content-type": "application/json", "content-length": str(64 * 1024)})
    assert declared.status == 413 and declared.chunks_read == 0  # refused on the declared length alone
