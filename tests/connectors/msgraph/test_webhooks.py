"""Graph change notifications end to end: subscriptions validated by the fake Graph against a real
receiver (uvicorn on loopback), notifications triggering delta syncs and fetches, lifecycle events."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from connectors.msgraph import ids
from connectors.msgraph import webhooks as hooks
from connectors.sandbox.graph import GraphSandbox, files
from connectors.sandbox.graph.workspace import Workspace
from db import models
from ingestion.corpus.runner import run_sync
from tacit.config import ConfigError
from tacit.context import Context
from tests.connectors.harness_msgraph import source_toml

GRAPH_PAGE_SIZE = 20
TEAMS = '[[teams]]\nname = "platform"\nbase_model = "tiny-random"\n\n'


@dataclass
class Setup:
    sb: GraphSandbox
    ws: Workspace
    ctx: Context
    receiver: Any  # the `webhook_receiver` fixture's WebhookReceiver, serving the Graph webhook routes

    def process_queued(self) -> list[dict[str, Any]]:
        return self.receiver.process()

    def post(self, path: str, body: Any, **params: str) -> httpx.Response:
        return httpx.post(f"{self.receiver.url}{path}", params=params, content=json.dumps(body),
                          headers={"Content-Type": "application/json"}, timeout=30)


@pytest.fixture
def setup_factory(make_ctx: Callable[..., Context], sandbox: tuple[GraphSandbox, Workspace],
                  webhook_receiver: Callable[..., Any]) -> Callable[..., Setup]:
    """The Graph sandbox's company, a receiver serving the Graph webhook routes, and a context
    whose `m365` source reads the platform team's space with a static token."""

    def make(db_url: str, *, public_path: str = "") -> Setup:
        sb, ws = sandbox
        receiver = webhook_receiver(hooks.router)
        body = (f'[api]\npublic_url = "{receiver.url}{public_path}"\n\n' + TEAMS
                + source_toml(sb, ws, "m365", "platform", static_token=True).replace(
                    f'users = ["{ws.onedrive_user}"]', "users = []"))
        return Setup(sb, ws, receiver.attach(make_ctx(db_url, body)), receiver)

    return make


def test_notifications_end_to_end(setup_factory: Callable[..., Setup], db_url: str,
                                  stored_row: Callable[..., Any]) -> None:
    s = setup_factory(db_url)
    sb, ws, ctx = s.sb, s.ws, s.ctx
    space = ws.teams["platform"]
    # 1. subscriptions: Graph validates both URLs of each against the running receiver
    report = hooks.ensure_subscriptions(ctx, "m365")
    assert report == {"created": 3, "renewed": 0, "kept": 0, "deleted": 0, "errors": {}}
    assert len(sb.subscriptions.validations) == 6 and all(ok for _, ok in sb.subscriptions.validations)
    assert {sub.resource for sub in sb.subscriptions.items.values()} == {
        f"drives/{space.drive_id}/root", f"users/{space.mailbox}/messages",
        f"teams/{space.team_id}/channels/{space.channels['Help']}/messages"}
    with ctx.session() as session:
        state = ctx.source_row(session, "m365").state["msgraph"]
    assert state["client_state"].startswith("fernet:")  # encrypted at rest
    assert {v["id"] for v in state["subscriptions"].values()} == set(sb.subscriptions.items)
    secret = hooks.client_state(ctx, "m365")
    assert secret and secret not in json.dumps(state)
    assert all(sub.client_state == secret for sub in sb.subscriptions.items.values())
    assert run_sync(ctx, "m365").status == "succeeded"

    # 2. a file changes: the notification (no resource data) triggers a delta sync
    readme = space.items["README.md"]
    sb.state.edit_file(readme, files.md_bytes("Platform Engineering", [("About", ["Freeze moved to Friday."])]))
    assert sb.deliver_notifications() == [202]
    (result,) = s.process_queued()
    assert result["status"] == "processed" and result["documents_written"] == 1
    assert "Freeze moved to Friday." in stored_row(ctx, models.Document, ids.drive_item(space.drive_id, readme)).text
    with ctx.session() as session:
        (stored,) = session.scalars(select(models.WebhookEvent.body))
    assert json.loads(stored)["value"][0]["resource"] == f"drives/{space.drive_id}/root"
    assert secret not in stored  # the clientState is checked, never stored

    # 3. a Teams reply: the thread alone is fetched again
    root = next(m for m in sb.state.messages.values() if m.team_id == space.team_id and m.reply_to is None)
    sb.state.post_message(space.team_id, root.channel_id, "<p>Update: the freeze is on Friday now.</p>",
                          author=root.author, reply_to=root.id)
    before = sb.requests_served()
    assert sb.deliver_notifications() == [202]
    (result,) = s.process_queued()
    assert result["interactions_written"] == 1 and result["documents_written"] == 0
    thread = stored_row(ctx, models.Interaction, ids.channel_thread(space.team_id, root.channel_id, root.id))
    assert thread.messages[-1]["text"] == "Update: the freeze is on Friday now."
    assert sb.requests_served() - before == 3  # team, channels, the thread with its replies: no delta walk
    with ctx.session() as session:
        triggers = list(session.scalars(select(models.SyncRun.trigger).order_by(models.SyncRun.id)))
    assert triggers == ["sync", "sync", "webhook"]

    # 4. a forged notification (wrong clientState) is refused and stored nowhere
    forged = {"value": [{"subscriptionId": "x", "clientState": "guess", "changeType": "updated",
                         "resource": f"drives/{space.drive_id}/root"}]}
    assert s.post("/webhooks/msgraph/m365", forged).status_code == 403
    assert s.post("/webhooks/msgraph/nope", forged).status_code == 404
    assert s.post("/webhooks/msgraph/m365", {"value": []}).status_code == 400
    assert s.receiver.queued == []
    with ctx.session() as session:
        assert session.query(models.WebhookEvent).count() == 2

    # 5. validation echo: plain text, immediately
    echo = httpx.post(f"{s.receiver.url}/webhooks/msgraph/m365/lifecycle", params={"validationToken": "a b&c"})
    assert (echo.status_code, echo.text, echo.headers["content-type"]) == (200, "a b&c", "text/plain; charset=utf-8")

    # 6. lifecycle: reauthorizationRequired → renewed
    by_resource = {sub.resource: sub for sub in sb.subscriptions.items.values()}
    mail_sub = by_resource[f"users/{space.mailbox}/messages"]
    mail_sub.expires = sb.now() + timedelta(hours=1)
    assert sb.send_lifecycle(mail_sub.id, "reauthorizationRequired") == 202
    (result,) = s.process_queued()
    assert result["status"] == "processed"
    assert not mail_sub.needs_reauthorization and mail_sub.expires > sb.now() + timedelta(hours=60)

    # 7. subscriptionRemoved → created again (new id), then a delta sync
    drive_sub = by_resource[f"drives/{space.drive_id}/root"]
    assert sb.send_lifecycle(drive_sub.id, "subscriptionRemoved") == 202
    (result,) = s.process_queued()
    assert result["status"] == "processed" and result["run_id"]
    (again,) = sb.subscriptions.for_resource(f"drives/{space.drive_id}/root")
    assert again.id != drive_sub.id and hooks.subscriptions(ctx, "m365")[again.resource]["id"] == again.id

    # 8. missed → a delta sync picks up what the notification would have said
    sb.state.edit_file(readme, files.md_bytes("Platform Engineering", [("About", ["Missed, then found."])]))
    sb.subscriptions.items[again.id].pending.clear()  # the notification is lost
    assert sb.send_lifecycle(again.id, "missed") == 202
    (result,) = s.process_queued()
    assert result["documents_written"] == 1
    assert "Missed, then found." in stored_row(ctx, models.Document, ids.drive_item(space.drive_id, readme)).text


def test_renewal_before_the_maximum_lifetime(setup_factory: Callable[..., Setup], sqlite_url: str) -> None:
    s = setup_factory(sqlite_url)
    now = datetime.now(UTC)
    assert hooks.ensure_subscriptions(s.ctx, "m365", now=now)["created"] == 3
    first = {r: dict(v) for r, v in hooks.subscriptions(s.ctx, "m365").items()}
    # a day later nothing is due; two days later mail (4,230 min) and Teams (4,320 min) are past half
    # their lifetime and are renewed, the drive (42,300 min) is kept
    assert hooks.ensure_subscriptions(s.ctx, "m365", now=now + timedelta(days=1))["kept"] == 3
    s.sb.time_offset = timedelta(days=2)
    report = hooks.ensure_subscriptions(s.ctx, "m365", now=now + timedelta(days=2))
    assert (report["renewed"], report["kept"], report["created"], report["errors"]) == (2, 1, 0, {})
    after = hooks.subscriptions(s.ctx, "m365")
    for resource, entry in after.items():
        assert entry["id"] == first[resource]["id"]
        renewed = datetime.fromisoformat(entry["expires"]) > datetime.fromisoformat(first[resource]["expires"])
        assert renewed == (not resource.startswith("drives/"))
    # a subscription Graph forgot is created again on the next check
    lost = next(r for r in after if r.startswith("users/"))
    s.sb.subscriptions.items.pop(after[lost]["id"])
    s.sb.time_offset = timedelta(days=4)
    report = hooks.ensure_subscriptions(s.ctx, "m365", now=now + timedelta(days=4))
    assert report["created"] == 1 and hooks.subscriptions(s.ctx, "m365")[lost]["id"] != after[lost]["id"]


def test_subscription_needs_a_public_url_and_a_working_receiver(setup_factory: Callable[..., Setup],
                                                                 sqlite_url: str) -> None:
    s = setup_factory(sqlite_url, public_path="/not-tacit")
    report = hooks.ensure_subscriptions(s.ctx, "m365")
    assert report["created"] == 0 and len(report["errors"]) == 3
    assert all("Subscription validation request failed" in e for e in report["errors"].values())
    assert s.sb.subscriptions.items == {} and hooks.subscriptions(s.ctx, "m365") == {}
    s.ctx.config.api.public_url = None
    with pytest.raises(ConfigError, match="public_url"):
        hooks.ensure_subscriptions(s.ctx, "m365")


def test_celery_task_and_beat_entry(setup_factory: Callable[..., Setup], sqlite_url: str) -> None:
    s = setup_factory(sqlite_url)
    from ingestion.worker.celery_app import beat_schedule

    assert beat_schedule(s.ctx.config)["renew-graph-subscriptions"]["task"] == "tacit.renew_graph_subscriptions"
    result = hooks.renew_graph_subscriptions.delay().get()
    assert result["m365"]["created"] == 3
    assert hooks.renew_graph_subscriptions.delay("m365").get()["m365"]["kept"] == 3


def test_plan_trusts_only_configured_teams(setup_factory: Callable[..., Setup], sqlite_url: str) -> None:
    s = setup_factory(sqlite_url)
    space = s.ws.teams["platform"]
    channel = space.channels["Help"]
    ours = {"resource": f"teams('{space.team_id}')/channels('{channel}')/messages('1')/replies('2')"}
    other = {"resource": f"teams('not-ours')/channels('{channel}')/messages('1')"}
    mail = {"resource": f"Users/{space.mailbox}/Messages/AAMk"}
    assert hooks.plan(s.ctx, "m365", [ours]) == ("fetch", [ids.channel_thread(space.team_id, channel, "1")])
    assert hooks.plan(s.ctx, "m365", [ours, other]) == ("sync", [])
    assert hooks.plan(s.ctx, "m365", [mail]) == ("sync", [])


def test_the_service_app_mounts_the_graph_routes(setup_factory: Callable[..., Setup], sqlite_url: str) -> None:
    from fastapi.testclient import TestClient

    from ingestion.api.app import create_app

    s = setup_factory(sqlite_url)
    with TestClient(create_app(s.ctx, process_teams=False)) as client:
        echo = client.post("/webhooks/msgraph/m365", params={"validationToken": "token-1"})
        assert (echo.status_code, echo.text) == (200, "token-1")
        assert echo.headers["content-type"].startswith("text/plain")
        assert client.post("/webhooks/msgraph/m365/lifecycle", params={"validationToken": "t"}).text == "t"
        refused = client.post("/webhooks/msgraph/m365", json={"value": [{"clientState": "nope"}]})
        assert refused.status_code == 403


def test_a_body_over_the_cap_is_refused_without_being_read_whole(setup_factory: Callable[..., Setup], sqlite_url: str,
                                                                 post_in_chunks: Callable[..., Any]) -> None:
    s = setup_factory(sqlite_url)
    s.ctx.config.api.max_body_bytes = 4096
    app = FastAPI()
    app.state.ctx = s.ctx
    app.include_router(hooks.router)
    chunks = [b"x" * 1024] * 64  # 64 KiB, sent without a Content-Length
    for path in ("/webhooks/msgraph/m365", "/webhooks/msgraph/m365/lifecycle"):
        r = post_in_chunks(app, path, chunks, {"content-type": "application/json"})
        assert r.status == 413 and "4096" in r.body["detail"], path
        assert r.chunks_read == 5  # refused at the first chunk past the cap, the rest never read
        declared = post_in_chunks(app, path, chunks,
                                  {"content-type": "application/json", "content-length": str(64 * 1024)})
        assert declared.status == 413 and declared.chunks_read == 0  # refused on the declared length alone
