"""Notion webhooks: `POST /webhooks/notion/{source}` and the processing of its events.

Protocol (https://developers.notion.com/reference/webhooks):

1. When a subscription is created, Notion POSTs `{"verification_token": "secret_…"}` with no
   signature. The token is stored, encrypted, in the source's state (`tacit sources show`
   prints it, to paste into Notion's "Verify subscription" dialog). The first token wins; a
   later, different one is kept as *pending* and answered 409, so an unsigned request cannot
   replace the key that signs events — set `verification_token` in `tacit.toml` to adopt it.
2. Every event carries `X-Notion-Signature: sha256=<hex HMAC-SHA256 of the raw body, keyed by
   the token>`, compared in constant time; a missing or wrong signature is a 401.
3. An event is committed to `webhook_events` (delivery id = the event's `id`, so Notion's
   retries are stored once) and answered 200; processing happens later, on a worker.

Events are signals (entity id and type, aggregated, possibly out of order): processing
re-reads only what they name through the connector's `fetch` — the page for `page.*`, the
page's discussions for `comment.*`, every row of a data source whose schema changed — and runs
an incremental sync (whose listing pass is cheap) for other `data_source.*`/`database.*` events.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import select

from connectors.base import Contributions, Interaction, Tombstone
from db import models
from ingestion.api.web import accept_event, get_context, read_capped_body, source_of_kind
from ingestion.corpus.events import EventRejected, decode_body
from ingestion.corpus.runner import SyncSummary, ingest_records, run_sync
from tacit.context import Context

log = logging.getLogger(__name__)
router = APIRouter()
CHANNEL = "notion"
STATE_KEY = "verification_token"
PENDING_KEY = "pending_verification_token"


# --------------------------------------------------------------------------- tokens
def _configured_token(ctx: Context, source: str) -> str | None:
    value = ctx.source_config(source).settings.get("verification_token")
    return str(value) if value else None


def stored_tokens(ctx: Context, source: str) -> dict[str, str | None]:
    """The verification token in use (configured, else stored) and a pending one, in clear text."""
    with ctx.session() as session:
        state = dict(ctx.source_row(session, source).state or {})
    stored = ctx.secrets.decrypt(state[STATE_KEY]) if state.get(STATE_KEY) else None
    pending = ctx.secrets.decrypt(state[PENDING_KEY]) if state.get(PENDING_KEY) else None
    return {"verification_token": _configured_token(ctx, source) or stored, "pending_verification_token": pending}


def status_fields(ctx: Context, source: str) -> dict[str, Any]:
    """`webhook` for `tacit sources show`: shown in clear, the admin pastes it into Notion's "Verify subscription" dialog."""
    return {"webhook": stored_tokens(ctx, source)}


def _handshake(ctx: Context, source: str, token: str) -> tuple[int, dict[str, Any]]:
    current = _configured_token(ctx, source)
    with ctx.session() as session:
        row = ctx.source_row(session, source)
        state = dict(row.state or {})
        stored = ctx.secrets.decrypt(state[STATE_KEY]) if state.get(STATE_KEY) else None
        current = current or stored
        if current is None:
            state[STATE_KEY] = ctx.secrets.encrypt(token)
            state.pop(PENDING_KEY, None)
            row.state = state
            log.info("notion source %s: verification token stored (see `tacit sources show %s`)", source, source)
            return 200, {"verified": "stored"}
        if hmac.compare_digest(current, token):
            return 200, {"verified": "already stored"}
        state[PENDING_KEY] = ctx.secrets.encrypt(token)
        row.state = state
    log.warning("notion source %s: a different verification token arrived; kept as pending", source)
    return 409, {"detail": "a verification token is already in use for this source; the new one is kept as "
                           f"pending (see `tacit sources show {source}`): set verification_token in tacit.toml "
                           "to use it"}


def signature(body: bytes, token: str) -> str:
    return "sha256=" + hmac.new(token.encode(), body, hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------- route
@router.post("/webhooks/notion/{source}", tags=["webhooks"])
async def notion_webhook(source: str, request: Request, ctx: Context = Depends(get_context)) -> JSONResponse:
    """Verification handshake, then signed events (stored, answered 200, processed on a worker)."""
    source_of_kind(ctx, source, ("notion",))
    body = await read_capped_body(request, ctx)
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise HTTPException(status_code=400, detail="the body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise HTTPException(status_code=400, detail="the body must be a JSON object")
    sent = request.headers.get("x-notion-signature")
    if sent is None and isinstance(payload.get("verification_token"), str) and len(payload) == 1:
        status, answer = await run_in_threadpool(_handshake, ctx, source, payload["verification_token"])
        return JSONResponse(answer, status_code=status)
    token = (await run_in_threadpool(stored_tokens, ctx, source))["verification_token"]
    if token is None:
        raise HTTPException(status_code=401, detail="no verification token yet: the subscription's handshake "
                                                    "has not reached this source")
    if not sent or not hmac.compare_digest(sent.encode(), signature(body, token).encode()):
        raise HTTPException(status_code=401, detail="missing or invalid X-Notion-Signature")
    event_id = payload.get("id")
    entity = payload.get("entity")
    if not isinstance(event_id, str) or not event_id or not isinstance(payload.get("type"), str) \
            or not isinstance(entity, dict) or not isinstance(entity.get("id"), str):
        raise HTTPException(status_code=400, detail="a Notion event needs `id`, `type` and `entity.id`")
    stored_id, created = await run_in_threadpool(
        lambda: accept_event(ctx, source, event_id, body.decode("utf-8"), channel=CHANNEL,
                             headers={"x-notion-signature": "sha256=…"}))
    return JSONResponse({"event_id": stored_id, "duplicate": not created}, status_code=200)


# --------------------------------------------------------------------------- processing
def plan(payload: dict[str, Any], comments_mode: str) -> tuple[str, list[str]]:
    """What an event asks for: ("fetch", ids), ("fetch_tree", [page]), ("sync", []) or ("ignore", [])."""
    kind = payload.get("type")
    entity = payload.get("entity")
    if not isinstance(kind, str) or not isinstance(entity, dict) or not isinstance(entity.get("id"), str):
        raise EventRejected("a Notion event needs `type` and `entity.id`")
    data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
    if kind == "page.moved":
        return "fetch_tree", [entity["id"]]  # below it, the ACL may have changed too
    if kind.startswith("page."):
        return "fetch", [entity["id"]]
    if kind.startswith("comment."):
        page_id = data.get("page_id")
        if not isinstance(page_id, str):
            raise EventRejected(f"{kind} without data.page_id")
        parent = data.get("parent") if isinstance(data.get("parent"), dict) else {}
        if parent.get("type") == "block" and isinstance(parent.get("id"), str) and comments_mode != "blocks":
            return "fetch", [f"discussions:{page_id}/{parent['id']}"]
        return "fetch", [page_id]
    if kind == "data_source.schema_updated":
        return "fetch", [f"data_source:{entity['id']}"]
    if kind.startswith(("data_source.", "database.")):
        return "sync", []
    return "ignore", []


def process_notion_event(ctx: Context, event: models.WebhookEvent, source_name: str) -> SyncSummary | None:
    payload = decode_body(event)
    if not isinstance(payload, dict):
        raise EventRejected("a Notion event must be a JSON object")
    mode = str(ctx.source_config(source_name).settings.get("comments", "pages"))
    action, ids = plan(payload, mode)
    if action == "ignore":
        log.info("notion event type %s needs nothing", payload.get("type"))
        return None
    if action == "sync":
        return run_sync(ctx, source_name)
    if action == "fetch_tree":
        ids = ids + _descendants(ctx, source_name, ids[0])
    return fetch_and_reconcile(ctx, source_name, ids)


def _descendants(ctx: Context, source_name: str, page_id: str) -> list[str]:
    """Stored pages below `page_id` (through `parent_external_id`), nearest first."""
    from connectors.notion.hierarchy import norm_id

    with ctx.session() as session:
        source = ctx.source_row(session, source_name)
        links = session.execute(select(models.Document.external_id, models.Document.parent_external_id).where(
            models.Document.source_id == source.id, models.Document.deleted_at.is_(None),
            models.Document.parent_external_id.is_not(None))).all()
    children: dict[str, list[str]] = {}
    for child, parent in links:
        children.setdefault(parent, []).append(child)
    out: list[str] = []
    queue, seen = [norm_id(page_id)], {norm_id(page_id)}
    while queue:
        for child in children.get(queue.pop(0), []):
            if child not in seen:
                seen.add(child)
                out.append(child)
                queue.append(child)
    return out


def fetch_and_reconcile(ctx: Context, source_name: str, ids: list[str]) -> SyncSummary:
    """`run_fetch`, plus: discussions the re-read no longer shows (resolved, deleted, or on a page
    that is gone) are tombstoned."""
    connector = ctx.connector(source_name)
    mode = str(connector.settings.comments)

    def records() -> Iterator[Any]:
        seen: set[str] = set()
        gone_pages: set[str] = set()
        for record in connector.fetch(ids):
            if isinstance(record, Interaction):
                seen.add(record.external_id)
            elif isinstance(record, Tombstone):
                gone_pages.add(record.external_id)
            yield record
        yield from _stale(ctx, source_name, ids, seen, gone_pages, mode)

    return ingest_records(ctx, source_name, records(), trigger="webhook")


def _stale(ctx: Context, source_name: str, ids: list[str], seen: set[str], gone: set[str],
           mode: str) -> Iterator[Tombstone]:
    from connectors.notion.hierarchy import norm_id

    pages: dict[str, str | None] = {}  # page id -> block id (None: the whole page was re-read)
    for raw in ids:
        if raw.startswith("discussions:"):
            page, _, block = raw.split(":", 1)[1].partition("/")
            pages.setdefault(norm_id(page), norm_id(block))
        elif not raw.startswith("data_source:"):
            pages[norm_id(raw)] = None
    if not pages:
        return
    with ctx.session() as session:
        source = ctx.source_row(session, source_name)
        rows = session.execute(select(models.Interaction.external_id, models.Interaction.document_external_id,
                                      models.Interaction.meta).where(
            models.Interaction.source_id == source.id, models.Interaction.deleted_at.is_(None),
            models.Interaction.document_external_id.in_(list(pages)))).all()
    for external_id, page, meta in rows:
        if external_id in seen:
            continue
        meta = meta or {}
        block = pages[page]
        if page in gone:
            yield Tombstone(external_id=external_id, reason="its page is gone")
        elif block is not None:
            if meta.get("block_id") == block:
                yield Tombstone(external_id=external_id, reason="discussion resolved or deleted")
        elif meta.get("on") == "page" or mode == "blocks":
            yield Tombstone(external_id=external_id, reason="discussion resolved or deleted")


#: What the Notion connector adds to the platform (`NotionConnector.contributes`).
CONTRIBUTIONS = Contributions(
    routers=(router,),
    event_handlers={CHANNEL: process_notion_event},
    status=status_fields,
)
