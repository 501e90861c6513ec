"""Pieces shared by every webhook router (generic, Notion, Microsoft Graph) of `ingestion.api.app`.

A router gets the running `Context` with `Depends(get_context)`; `accept_event` commits the raw
delivery first and only then queues its processing, so an accepted event is never lost.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ingestion.corpus.events import store_event
from ingestion.worker.tasks import process_event
from tacit.context import Context

log = logging.getLogger(__name__)


class BodyTooLarge(ValueError):
    """A request body over its size cap; answered 413 without the rest of it being read."""


async def read_body(request: Request, limit: int) -> bytes:
    """The body, read in chunks and refused as soon as it passes `limit` bytes (never buffered past it).

    A declared `Content-Length` over the cap is refused before any byte is read.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"body of {int(declared)} bytes is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_capped_body(request: Request, ctx: Context) -> bytes:
    """`read_body` under `[api] max_body_bytes` for the vendor routes: over the cap is an HTTP 413."""
    try:
        return await read_body(request, ctx.config.api.max_body_bytes)
    except BodyTooLarge as exc:
        raise HTTPException(status_code=413, detail=str(exc)) from None


def get_context(request: Request) -> Context:
    return request.app.state.ctx


def source_of_kind(ctx: Context, name: str, kinds: tuple[str, ...]) -> Any:
    """The configured source `name`, which must be of one of `kinds`; 404 otherwise."""
    for source in ctx.config.sources:
        if source.name == name and source.kind in kinds and source.enabled:
            return source
    raise HTTPException(status_code=404, detail=f"no {'/'.join(kinds)} source named {name!r}")


def accept_event(ctx: Context, source: str, delivery_id: str, body: str, *, channel: str,
                 headers: dict[str, Any] | None = None) -> tuple[int, bool]:
    """Commit the delivery, then queue it. Returns (event id, created); a repeat creates nothing."""
    event_id, created = store_event(ctx, source, delivery_id, body, channel=channel, headers=headers)
    if created:
        # The app sets `ctx.dispatch_event` (a Celery send on Redis; its own background worker in
        # the embedded memory:// mode, where a Celery send would process inside the request).
        dispatch = getattr(ctx, "dispatch_event", None) or process_event.delay
        try:
            dispatch(event_id)
        except Exception:  # broker down: the event is stored; workers replay pending events on start
            log.warning("event %s stored but not queued (broker unavailable)", event_id)
    return event_id, created


_bearer = HTTPBearer(auto_error=False, description="[api] admin_token from tacit.toml")


def require_admin(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
    """`Authorization: Bearer <[api] admin_token>`, compared in constant time; 403 when none is set."""
    token = request.app.state.ctx.config.api.admin_token
    if token is None or not token.get_secret_value():
        raise HTTPException(403, "the admin API is disabled: set [api] admin_token in tacit.toml")
    given = credentials.credentials if credentials else ""
    if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token.get_secret_value().encode()):
        raise HTTPException(401, "a valid admin bearer token is required", headers={"WWW-Authenticate": "Bearer"})
