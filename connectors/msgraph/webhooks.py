"""Microsoft Graph change notifications: the receiving routes, their processing, and subscriptions.

Routes (mounted by `ingestion.api.app`):

* `POST /webhooks/msgraph/{source}` — change notifications;
* `POST /webhooks/msgraph/{source}/lifecycle` — lifecycle notifications.

Protocol (https://learn.microsoft.com/graph/change-notifications-delivery-webhooks):

1. Creating or renewing a subscription makes Graph POST `?validationToken=…`; the token is
   echoed back at once as `text/plain` with 200 (Graph waits 10 seconds at most). Nothing
   else happens on that request: no database access.
2. A notification batch (`{"value": [...]}`) is kept only for the items whose `clientState`
   equals the source's secret (compared in constant time; the secret is stored encrypted in
   `Source.state`). None matching → 403. The kept items are committed to `webhook_events`
   and answered 202; processing happens on a worker.
3. Processing never trusts the payload: a notification only says *where* to look. Channel
   message notifications of configured teams re-read their threads (`fetch`); anything else
   runs an incremental delta sync. Lifecycle: `reauthorizationRequired` → renew,
   `subscriptionRemoved` → create it again, then a delta sync, `missed` → a delta sync.

Graph notifications carry no delivery id, and identical bodies describe distinct changes (every
change to a drive root reads the same), so each delivery is stored as its own event; a repeated
delivery costs one cheap incremental delta, never a wrong record.

Subscriptions are created and renewed by `ensure_subscriptions` (Celery task
`tacit.renew_graph_subscriptions`, hourly on beat), which keeps their ids and expiry in
`Source.state["msgraph"]`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import shared_task
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from connectors.base import BeatEntry, ConnectorError, Contributions, SourceConfig
from connectors.msgraph import ids
from connectors.msgraph import subscriptions as subs
from connectors.msgraph.client import NotFound
from db import models
from ingestion.api.web import accept_event, get_context, read_capped_body, source_of_kind
from ingestion.corpus.events import EventRejected, decode_body
from ingestion.corpus.runner import SyncSummary, run_fetch, run_sync
from ingestion.worker.tasks import get_context as task_context
from tacit.config import ConfigError
from tacit.context import Context

log = logging.getLogger(__name__)
router = APIRouter()

CHANNEL = "msgraph"
LIFECYCLE = "msgraph-lifecycle"
STATE = "msgraph"
MAX_VALIDATION_TOKEN = 2048
#: Renew once less than this share of a subscription's maximum lifetime is left.
RENEW_BELOW = 0.5
_THREAD = re.compile(r"^teams/([^/]+)/channels/([^/]+)/messages/([^/]+)(?:/replies/[^/]+)?$", re.I)


# --------------------------------------------------------------------------- routes
@router.post("/webhooks/msgraph/{source}", tags=["webhooks"])
async def graph_notifications(source: str, request: Request, validation_token: str | None = Query(
        None, alias="validationToken"), ctx: Context = Depends(get_context)) -> Response:
    """Change notifications for a `msgraph` source (and the validation handshake)."""
    return await _receive(ctx, source, request, validation_token, CHANNEL)


@router.post("/webhooks/msgraph/{source}/lifecycle", tags=["webhooks"])
async def graph_lifecycle(source: str, request: Request, validation_token: str | None = Query(
        None, alias="validationToken"), ctx: Context = Depends(get_context)) -> Response:
    """Lifecycle notifications (reauthorizationRequired, subscriptionRemoved, missed)."""
    return await _receive(ctx, source, request, validation_token, LIFECYCLE)


async def _receive(ctx: Context, source: str, request: Request, validation_token: str | None,
                   channel: str) -> Response:
    source_of_kind(ctx, source, ("msgraph",))
    if validation_token is not None:
        if len(validation_token) > MAX_VALIDATION_TOKEN:
            raise HTTPException(status_code=400, detail="validationToken is too long")
        return PlainTextResponse(validation_token, status_code=200)
    body = await read_capped_body(request, ctx)
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise HTTPException(status_code=400, detail="the body is not valid JSON") from None
    items = payload.get("value") if isinstance(payload, dict) else None
    if not isinstance(items, list) or not items:
        raise HTTPException(status_code=400, detail='a notification batch is {"value": [...]}')
    expected = await run_in_threadpool(client_state, ctx, source)
    kept = [n for n in items if isinstance(n, dict) and _state_matches(n.get("clientState"), expected)]
    if not kept:
        raise HTTPException(status_code=403, detail="clientState does not match this source's subscriptions")
    if len(kept) < len(items):
        log.warning("msgraph source %s: dropped %d notifications with a wrong clientState", source,
                    len(items) - len(kept))
    # The clientState is a secret: checked here, never stored with the event.
    stored = json.dumps({"value": [{k: v for k, v in n.items() if k != "clientState"} for n in kept]},
                        separators=(",", ":"))
    delivery = f"{channel}:{hashlib.sha256(stored.encode()).hexdigest()[:16]}:{uuid.uuid4().hex}"
    event_id, _ = await run_in_threadpool(lambda: accept_event(ctx, source, delivery, stored, channel=channel))
    return JSONResponse({"event_id": event_id, "accepted": len(kept)}, status_code=202)


def _state_matches(sent: Any, expected: str | None) -> bool:
    return isinstance(sent, str) and expected is not None and hmac.compare_digest(sent.encode(), expected.encode())


# --------------------------------------------------------------------------- state
def _load(ctx: Context, source: str) -> dict[str, Any]:
    with ctx.session() as session:
        return json.loads(json.dumps((ctx.source_row(session, source).state or {}).get(STATE) or {}))


def _save(ctx: Context, source: str, graph_state: dict[str, Any]) -> None:
    with ctx.session() as session:
        row = ctx.source_row(session, source)
        state = dict(row.state or {})
        state[STATE] = graph_state
        row.state = state


def client_state(ctx: Context, source: str) -> str | None:
    """The secret every notification of this source must carry, in clear text (None before any subscription)."""
    sealed = _load(ctx, source).get("client_state")
    return ctx.secrets.decrypt(sealed) if sealed else None


def subscriptions(ctx: Context, source: str) -> dict[str, dict[str, Any]]:
    """resource → {"id", "expires", "change_type"} of the source's live subscriptions."""
    return dict(_load(ctx, source).get("subscriptions") or {})


def webhook_urls(ctx: Context, source: str) -> tuple[str, str]:
    base = ctx.config.api.public_url
    if not base:
        raise ConfigError("[api] public_url is needed for Microsoft Graph change notifications (the https URL "
                          "at which Graph reaches `tacit serve`)")
    url = f"{base.rstrip('/')}/webhooks/msgraph/{source}"
    return url, f"{url}/lifecycle"


# --------------------------------------------------------------------------- subscriptions
def ensure_subscriptions(ctx: Context, source: str, *, now: datetime | None = None) -> dict[str, Any]:
    """Create missing subscriptions, renew those past half their lifetime, delete unwanted ones."""
    now = now or datetime.now(UTC)
    url, lifecycle_url = webhook_urls(ctx, source)
    state = _load(ctx, source)
    if not state.get("client_state"):
        state["client_state"] = ctx.secrets.encrypt(secrets.token_urlsafe(48))  # 64 characters (≤ 128)
        _save(ctx, source, state)
    secret = ctx.secrets.decrypt(state["client_state"])
    current: dict[str, dict[str, Any]] = dict(state.get("subscriptions") or {})
    report: dict[str, Any] = {"created": 0, "renewed": 0, "kept": 0, "deleted": 0, "errors": {}}
    connector = ctx.connector(source)
    with connector.graph() as w:
        wanted = dict(w.session.run(subs.resources(w)))
        for resource, change_type in wanted.items():
            known = current.get(resource)
            try:
                if known and _remaining(known, now) > RENEW_BELOW * timedelta(minutes=subs.lifetime_minutes(resource)):
                    report["kept"] += 1
                    continue
                if known:
                    try:
                        expires = w.session.run(subs.renew(w, known["id"], resource, subs.expiry(resource, now)))
                        known["expires"] = expires.isoformat()
                        report["renewed"] += 1
                        continue
                    except NotFound:
                        current.pop(resource)
                sid, expires = w.session.run(subs.create(w, resource, change_type, url, lifecycle_url, secret,
                                                         subs.expiry(resource, now)))
                current[resource] = {"id": sid, "expires": expires.isoformat(), "change_type": change_type}
                report["created"] += 1
            except ConnectorError as exc:
                report["errors"][resource] = f"{type(exc).__name__}: {exc}"
        for resource in [r for r in current if r not in wanted]:
            try:
                w.session.run(subs.delete(w, current[resource]["id"], resource))
            except NotFound:
                pass
            except ConnectorError as exc:
                report["errors"][resource] = f"{type(exc).__name__}: {exc}"
                continue
            current.pop(resource)
            report["deleted"] += 1
    state = _load(ctx, source)
    state["subscriptions"] = current
    state["checked_at"] = now.isoformat()
    _save(ctx, source, state)
    return report


def _remaining(known: dict[str, Any], now: datetime) -> timedelta:
    try:
        expires = datetime.fromisoformat(known["expires"])
    except (KeyError, TypeError, ValueError):
        return timedelta(0)
    return (expires if expires.tzinfo else expires.replace(tzinfo=UTC)) - now


def _by_id(current: dict[str, dict[str, Any]], subscription_id: str) -> str | None:
    return next((r for r, s in current.items() if s.get("id") == subscription_id), None)


def renew_subscription(ctx: Context, source: str, subscription_id: str, *, now: datetime | None = None) -> str:
    """Renew (and so reauthorize) one subscription; one Graph no longer knows is created again."""
    now = now or datetime.now(UTC)
    current = subscriptions(ctx, source)
    resource = _by_id(current, subscription_id)
    if resource is None:
        log.warning("msgraph source %s: lifecycle event for unknown subscription %s", source, subscription_id)
        return "unknown"
    connector = ctx.connector(source)
    with connector.graph() as w:
        try:
            expires = w.session.run(subs.renew(w, subscription_id, resource, subs.expiry(resource, now)))
        except NotFound:
            return recreate_subscription(ctx, source, subscription_id, now=now)
    _update(ctx, source, resource, {**current[resource], "expires": expires.isoformat()})
    return "renewed"


def recreate_subscription(ctx: Context, source: str, subscription_id: str, *, now: datetime | None = None) -> str:
    """Create again a subscription Graph removed (same resource, a new id)."""
    now = now or datetime.now(UTC)
    current = subscriptions(ctx, source)
    resource = _by_id(current, subscription_id)
    if resource is None:
        return "unknown"
    url, lifecycle_url = webhook_urls(ctx, source)
    secret = client_state(ctx, source)
    assert secret is not None
    connector = ctx.connector(source)
    with connector.graph() as w:
        sid, expires = w.session.run(subs.create(w, resource, current[resource].get("change_type", "updated"), url,
                                                 lifecycle_url, secret, subs.expiry(resource, now)))
    _update(ctx, source, resource, {**current[resource], "id": sid, "expires": expires.isoformat()})
    return "recreated"


def _update(ctx: Context, source: str, resource: str, entry: dict[str, Any]) -> None:
    state = _load(ctx, source)
    current = dict(state.get("subscriptions") or {})
    current[resource] = entry
    state["subscriptions"] = current
    _save(ctx, source, state)


def delete_subscriptions(ctx: Context, source: str) -> int:
    """Delete every subscription of the source (e.g. before removing it); returns how many went."""
    current = subscriptions(ctx, source)
    deleted = 0
    connector = ctx.connector(source)
    with connector.graph() as w:
        for resource, entry in current.items():
            try:
                w.session.run(subs.delete(w, entry["id"], resource))
            except NotFound:
                pass
            deleted += 1
    state = _load(ctx, source)
    state["subscriptions"] = {}
    _save(ctx, source, state)
    return deleted


# --------------------------------------------------------------------------- processing
def _notifications(event: models.WebhookEvent) -> list[dict[str, Any]]:
    payload = decode_body(event)
    items = payload.get("value") if isinstance(payload, dict) else None
    if not isinstance(items, list):
        raise EventRejected('a Graph notification batch is {"value": [...]}')
    return [n for n in items if isinstance(n, dict)]


def plan(ctx: Context, source: str, notifications: list[dict[str, Any]]) -> tuple[str, list[str]]:
    """("fetch", thread ids) when every notification names a channel thread of a configured team,
    else ("sync", []). The payload only says where to look; what is written is read from Graph."""
    teams = set(ctx.source_config(source).settings.get("teams") or [])
    threads: list[str] = []
    for note in notifications:
        resource = re.sub(r"\('([^']*)'\)", r"/\1", str(note.get("resource") or "").strip("/"))
        match = _THREAD.match(resource)
        if not match or match.group(1) not in teams:
            return "sync", []
        threads.append(ids.channel_thread(match.group(1), match.group(2), match.group(3)))
    return ("fetch", sorted(set(threads))) if threads else ("sync", [])


def process_notifications(ctx: Context, event: models.WebhookEvent, source: str) -> SyncSummary | None:
    action, thread_ids = plan(ctx, source, _notifications(event))
    if action == "fetch":
        return run_fetch(ctx, source, thread_ids)
    return run_sync(ctx, source)


def process_lifecycle(ctx: Context, event: models.WebhookEvent, source: str) -> SyncSummary | None:
    sync = False
    for note in _notifications(event):
        kind, sid = note.get("lifecycleEvent"), str(note.get("subscriptionId") or "")
        if kind == "reauthorizationRequired":
            renew_subscription(ctx, source, sid)
        elif kind == "subscriptionRemoved":
            recreate_subscription(ctx, source, sid)
            sync = True  # changes made while no subscription existed reach us through delta
        elif kind == "missed":
            sync = True
        else:
            log.warning("msgraph source %s: unknown lifecycle event %r", source, kind)
    return run_sync(ctx, source) if sync else None


# --------------------------------------------------------------------------- Celery
@shared_task(name="tacit.renew_graph_subscriptions", acks_late=True)
def renew_graph_subscriptions(source: str | None = None) -> dict[str, Any]:
    """Create and renew the change-notification subscriptions of every Graph source (beat: hourly)."""
    ctx = task_context()
    if not ctx.config.api.public_url:
        return {"skipped": "no [api] public_url: Graph cannot reach the webhook routes"}
    names = [source] if source else [s.name for s in ctx.config.sources if s.kind == "msgraph" and s.enabled]
    out: dict[str, Any] = {}
    for name in names:
        try:
            out[name] = ensure_subscriptions(ctx, name)
        except (ConnectorError, ConfigError) as exc:
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


def beat_entries(sources: Sequence[SourceConfig], public_url: str | None) -> list[BeatEntry]:
    """Graph subscriptions live three days at most for mail and Teams: renew them hourly when due."""
    if not public_url or not any(s.enabled for s in sources):
        return []
    return [BeatEntry("renew-graph-subscriptions", "tacit.renew_graph_subscriptions", "17 * * * *")]


#: What the Graph connector adds to the platform (`GraphConnector.contributes`).
CONTRIBUTIONS = Contributions(
    routers=(router,),
    event_handlers={CHANNEL: process_notifications, LIFECYCLE: process_lifecycle},
    beat=beat_entries,
)
