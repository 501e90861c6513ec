"""The webhook service (`tacit serve`): signed, durable, idempotent push ingestion, health, metrics, admin.

`POST /webhooks/{source}` takes deliveries for sources of kind `webhook` (each installed connector
adds its own routes, e.g. `/webhooks/notion/{source}`, through its contributions). A delivery is checked in this order, and every
refusal is a 4xx that says why; bad input never yields a 500:

| answer | when |
|---|---|
| 404 | no enabled `webhook` source of that name |
| 415 | the content type is not JSON (`application/json` or `application/*+json`, UTF-8) |
| 413 | the body is over `max_body_bytes` (the source's, else `[api] max_body_bytes`, 5 MB) |
| 401 | the source has a secret and the signature is missing, wrong or outside the tolerance |
| 409 | the delivery id was refused earlier (a fixed body needs a new id) |
| 400 | malformed JSON, an invalid record or a failed mapping; the event is kept as `rejected` |
| 429 | more than `[api] max_backlog` events are pending (with `Retry-After`) |
| 200 | the delivery id is already stored: a duplicate, nothing new is created |
| 202 | committed to `webhook_events`, processing queued; the body has `event_id` |

A source with no `secret` and no `github_secret` accepts unsigned posts (the embedded default
listens on 127.0.0.1 only); once any secret is set, a valid signature is required.

Processing is asynchronous: on a Redis broker, the Celery task `tacit.process_event`; in the
embedded `memory://` mode, the app's own background worker (`ingestion.worker.event_worker`), never
inside the request. Pending events are replayed when the app (or a Celery worker) starts.

`/healthz` and `/readyz` are open, as are the webhook routes (they are signed) and the
OpenAPI documents (`/docs`, `/openapi.json`: schemas, no data). Everything else — the admin
read API under `/api` and `/metrics` — needs `Authorization: Bearer <[api] admin_token>`;
with no token configured those answer 403.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from kombu import Connection
from sqlalchemy import func, select, text

from connectors.registry import contributions, kinds, used_classes
from connectors.webhook.connector import WebhookSettings
from connectors.webhook.payload import PayloadError, headers_snapshot, parse_json, records_from_body
from connectors.webhook.signatures import SignatureError, verify_github, verify_standard
from db import models
from ingestion.api.admin import router as admin_router
from ingestion.api.metrics import Metrics
from ingestion.api.openai import mount as mount_openai
from ingestion.api.web import BodyTooLarge, accept_event, read_body, require_admin, source_of_kind
from ingestion.corpus.events import store_event
from ingestion.worker.event_worker import EventWorker, process_team_after_events
from ingestion.worker.tasks import process_event, replay_pending_events, set_context
from tacit.context import Context
from tacit.logs import configure_logging_from_env

log = logging.getLogger(__name__)

KEPT_HEADERS = ("content-type", "user-agent", "webhook-id", "webhook-timestamp", "x-github-event",
                "x-github-delivery", "idempotency-key")
_JSON_TYPE = re.compile(r"^application/(?:json|[a-z0-9.+-]+\+json)$")
_DELIVERY_ID = re.compile(r"^[\x21-\x7e]{1,256}$")
RETRY_AFTER_S = 5


class Refused(Exception):
    """A delivery answered with a 4xx; `reason` labels the metric, `event_id` the kept event."""

    def __init__(self, status: int, detail: str, reason: str, *, headers: dict[str, str] | None = None,
                 event_id: int | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.reason, self.headers, self.event_id = status, detail, reason, headers, event_id


@dataclass
class Accepted:
    event_id: int
    delivery_id: str
    created: bool
    records: int


class ApiState:
    """What the routes share: the context, metrics, settings per source, the backlog estimate."""

    def __init__(self, ctx: Context, worker: EventWorker | None) -> None:
        self.ctx = ctx
        self.metrics = Metrics(ctx)
        self.worker = worker
        self._settings: dict[str, WebhookSettings] = {}
        self._backlog = (0, 0.0)  # (pending events, when counted)
        self._backlog_lock = threading.Lock()

    def webhook_source(self, name: str) -> WebhookSettings:
        if name not in self._settings:
            source = source_of_kind(self.ctx, name, ("webhook",))
            self._settings[name] = WebhookSettings.model_validate(source.settings)
        return self._settings[name]

    def over_backlog(self) -> bool:
        """Whether pending events reached `[api] max_backlog`.

        Counting on every request would cost a query per delivery; a count well under the bound
        is reused for up to a second, raised by this process's own acceptances in between.
        """
        bound = self.ctx.config.api.max_backlog
        with self._backlog_lock:
            count, at = self._backlog
            fresh = count < bound // 2 and time.monotonic() - at < 1.0
        if not fresh:
            with self.ctx.session() as session:
                count = session.scalar(select(func.count()).select_from(models.WebhookEvent)
                                       .where(models.WebhookEvent.status == "pending")) or 0
            with self._backlog_lock:
                self._backlog = (count, time.monotonic())
        return count >= bound

    def counted(self) -> None:
        with self._backlog_lock:
            count, at = self._backlog
            self._backlog = (count + 1, at)


def create_app(ctx: Context | None = None, *, process_teams: bool = True) -> FastAPI:
    """The FastAPI app; with no context, the configuration comes from `TACIT_CONFIG` or ./tacit.toml."""

    configure_logging_from_env()
    if ctx is None:
        ctx = Context.load()
    set_context(ctx)
    eager = ctx.config.queue.eager
    worker: EventWorker | None = None
    if eager:
        worker = EventWorker(ctx, follow_up=process_team_after_events if process_teams else None)
    state = ApiState(ctx, worker)
    if worker is not None:
        worker.on_result = lambda r: _count_processed(state, r)
        ctx.dispatch_event = worker.submit  # type: ignore[attr-defined]
    else:
        ctx.dispatch_event = _send_to_workers  # type: ignore[attr-defined]
    for source in ctx.config.sources:
        if source.kind == "webhook" and source.enabled and not WebhookSettings.model_validate(source.settings).signed:
            log.warning("webhook source %s has no secret: it accepts unsigned posts", source.name)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if worker is not None:
            worker.start()
            await run_in_threadpool(worker.replay_pending)
        else:
            await run_in_threadpool(_replay_on_workers)
        yield
        if worker is not None:
            await run_in_threadpool(worker.stop)

    app = FastAPI(title="Tacit", version="0.1.0", lifespan=lifespan,
                  description=(__doc__ or "").split("\n\n", 1)[-1])
    app.state.ctx = ctx
    app.state.api = state
    app.state.worker = worker

    @app.exception_handler(Exception)
    async def server_fault(request: Request, exc: Exception) -> JSONResponse:
        # Only true server faults get here (a database that is down, a bug): every kind of bad
        # input is refused earlier with a 4xx. Logged with its traceback, counted in /metrics.
        state.metrics.internal_errors.inc()
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal server error"}, status_code=500)

    _include_vendor_routers(app)
    _add_webhook_route(app, state)
    _add_health_routes(app, state)

    app.include_router(admin_router)
    mount_openai(app)
    return app


def _include_vendor_routers(app: FastAPI) -> None:
    """The routes every installed connector contributes (Notion, Graph, …); included first, so their paths win."""
    for cls in used_classes(kinds()):
        for router in contributions(cls).routers:
            app.include_router(router)


def _send_to_workers(event_id: int) -> None:
    """Queue `tacit.process_event` on the broker. No result is kept: the event row is the result,
    and waiting on an unreachable result store would hold the request for many seconds."""

    process_event.apply_async((event_id,), ignore_result=True)


def _replay_on_workers() -> None:
    try:

        replay_pending_events.apply_async(ignore_result=True)
    except Exception as exc:  # broker down: workers replay pending events when they start
        log.warning("could not queue pending events: %s", exc)


def _count_processed(state: ApiState, result: dict[str, Any]) -> None:
    if result.get("skipped"):
        return
    state.metrics.processed.labels(result.get("source") or "", result.get("status") or "").inc()
    if result.get("lag_s") is not None:
        state.metrics.lag.observe(result["lag_s"])


# ---------------------------------------------------------------------------- webhooks
WEBHOOK_DESCRIPTION = """\
Push records to a source of kind `webhook`. The body is JSON: one record or a list of records
of the record format, or any JSON when the source has a `mapping` (JMESPath, see
`connectors/webhook/README.md`).

- document upsert: `{"type": "document", "external_id": "…", "title": "…", "text": "Markdown"}`;
  posting the same external id again replaces it (a new version when the content changed).
- tombstone: `{"type": "tombstone", "external_id": "…"}` marks the document or interaction gone.
- interaction: `{"type": "interaction", "external_id": "…", "kind": "feedback", "messages":
  [{"role": "user", "text": "…"}, {"role": "assistant", "text": "…"}], "rating": -1,
  "correction": "the right answer"}` (kinds: comment, thread, chat, feedback).

A delivery is all or nothing; within one delivery the last record for an external id wins.
Signed with Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`) or
GitHub's `X-Hub-Signature-256` when the source has a secret.
"""


def _add_webhook_route(app: FastAPI, state: ApiState) -> None:
    responses: dict[int | str, dict[str, Any]] = {
        200: {"description": "Duplicate delivery id: nothing new created"},
        400: {"description": "Malformed JSON, invalid record or failed mapping (kept as rejected)"},
        401: {"description": "Missing, wrong or expired signature"},
        404: {"description": "Unknown source"}, 409: {"description": "Delivery id refused earlier"},
        413: {"description": "Body too large"}, 415: {"description": "Not JSON"},
        429: {"description": "Backlog over its bound"},
    }

    @app.post("/webhooks/{source}", status_code=202, responses=responses, tags=["webhooks"],
              summary="Push records to a webhook source", description=WEBHOOK_DESCRIPTION)
    async def receive_webhook(source: str, request: Request) -> JSONResponse:
        try:
            accepted = await _receive(state, source, request)
        except Refused as exc:
            label = source if exc.reason != "unknown_source" else "unknown"
            state.metrics.rejected.labels(label, exc.reason).inc()
            content: dict[str, Any] = {"detail": exc.detail, "reason": exc.reason}
            if exc.event_id is not None:
                content["event_id"] = exc.event_id
            return JSONResponse(content, status_code=exc.status, headers=exc.headers)
        body = {"event_id": accepted.event_id, "delivery_id": accepted.delivery_id}
        if not accepted.created:
            state.metrics.duplicates.labels(source).inc()
            return JSONResponse({"status": "duplicate", **body}, status_code=200)
        state.metrics.accepted.labels(source, "webhook").inc()
        return JSONResponse({"status": "accepted", **body, "records": accepted.records}, status_code=202)


async def _receive(state: ApiState, source: str, request: Request) -> Accepted:
    try:
        settings = state.webhook_source(source)
    except HTTPException as exc:
        raise Refused(404, str(exc.detail), "unknown_source") from None
    _check_content_type(request.headers.get("content-type"))
    limit = settings.max_body_bytes or state.ctx.config.api.max_body_bytes
    try:
        body = await read_body(request, limit)
    except BodyTooLarge as exc:
        raise Refused(413, str(exc), "too_large") from None
    delivery_id = _authenticate(settings, request.headers, body)
    return await run_in_threadpool(_validate_and_store, state, source, settings, delivery_id, body,
                                   headers_snapshot(request.headers, KEPT_HEADERS))


def _check_content_type(value: str | None) -> None:
    if not value:
        raise Refused(415, "Content-Type is missing; send application/json", "content_type")
    media, *params = [p.strip() for p in value.split(";")]
    if not _JSON_TYPE.match(media.lower()):
        raise Refused(415, f"Content-Type {media[:80]!r} is not JSON; send application/json", "content_type")
    for param in params:
        name, _, val = param.partition("=")
        if name.strip().lower() == "charset" and val.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise Refused(415, "JSON must be UTF-8 (charset=utf-8)", "content_type")


def _authenticate(settings: WebhookSettings, headers: Any, body: bytes) -> str:
    """Check the signature the source requires; returns the delivery id to deduplicate by."""
    try:
        if settings.signing_keys and (headers.get("webhook-signature") or not settings.github_secret):
            return verify_standard(settings.signing_keys, headers, body, tolerance_s=settings.tolerance_s)
        if settings.github_secret is not None:
            verify_github(settings.github_secret.get_secret_value().encode(),
                          headers.get("x-hub-signature-256"), body)
            delivery = headers.get("x-github-delivery")
            if delivery and len(delivery) <= 240 and _DELIVERY_ID.match(delivery):
                return f"github:{delivery}"

            return "sha256:" + hashlib.sha256(body).hexdigest()  # no delivery id: identical bodies are replays
    except SignatureError as exc:
        raise Refused(401, str(exc), "signature") from None
    # An unsigned source: the sender's id if it gives one, so its retries are recognised.
    for name in ("webhook-id", "idempotency-key"):
        given = headers.get(name)
        if given:
            if not _DELIVERY_ID.match(given):
                raise Refused(400, f"{name} must be 1 to 256 printable ASCII characters", "invalid")
            return given
    return f"auto:{uuid.uuid4()}"


def _validate_and_store(state: ApiState, source: str, settings: WebhookSettings, delivery_id: str,
                        body: bytes, headers: dict[str, str]) -> Accepted:

    ctx = state.ctx
    try:
        payload = parse_json(body)
        records = records_from_body(payload, settings.compiled_mapping)
    except PayloadError as exc:
        kept = body.decode("utf-8", "replace").replace("\x00", "\ufffd")
        event_id, created = store_event(ctx, source, delivery_id, kept, headers=headers, status="rejected",
                                        error=str(exc))
        raise Refused(400, str(exc), exc.reason, event_id=event_id) from None
    if state.over_backlog():
        existing = _existing(ctx, source, delivery_id)  # a duplicate is still answered as one
        if existing is None:
            raise Refused(429, f"more than {ctx.config.api.max_backlog} events are waiting to be processed; "
                          "retry later", "backlog", headers={"Retry-After": str(RETRY_AFTER_S)})
    event_id, created = accept_event(ctx, source, delivery_id, body.decode("utf-8"), channel="webhook",
                                     headers=headers)
    if created:
        state.counted()
        return Accepted(event_id, delivery_id, True, len(records))
    existing = _existing(ctx, source, delivery_id)
    if existing is not None and existing.status == "rejected":
        raise Refused(409, f"delivery {delivery_id} was refused earlier ({existing.error}); "
                      "send the corrected body with a new webhook-id", "rejected_before", event_id=existing.id)
    return Accepted(event_id, delivery_id, False, len(records))


def _existing(ctx: Context, source: str, delivery_id: str) -> Any:
    """The stored event with this delivery id (id, status, error), or None."""
    with ctx.session() as session:
        row = ctx.source_row(session, source)
        return session.execute(select(models.WebhookEvent.id, models.WebhookEvent.status, models.WebhookEvent.error)
                               .where(models.WebhookEvent.source_id == row.id,
                                      models.WebhookEvent.delivery_id == delivery_id)).first()


# ---------------------------------------------------------------------------- health, metrics
def _add_health_routes(app: FastAPI, state: ApiState) -> None:
    @app.get("/healthz", tags=["health"], summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="The database and the broker answer",
             responses={503: {"description": "The database or the broker does not answer"}})
    async def readyz() -> JSONResponse:
        checks = await run_in_threadpool(_readiness, state.ctx)
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ok" if ok else "unavailable", **checks}, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics (admin token)",
             response_class=Response, dependencies=[Depends(require_admin)])
    async def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        data = await run_in_threadpool(state.metrics.render)
        return Response(data, media_type=CONTENT_TYPE_LATEST)


def broker_status(url: str, timeout: float = 2.0) -> str:
    """"ok" when the broker at `url` accepts a connection, else "unavailable: <error type>"."""
    try:
        with Connection(url, connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
        return "ok"
    except Exception as exc:
        return f"unavailable: {type(exc).__name__}"


def _readiness(ctx: Context) -> dict[str, str]:
    checks: dict[str, str] = {}
    try:
        with ctx.session() as session:
            session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unavailable: {type(exc).__name__}"
    checks["broker"] = "ok" if ctx.config.queue.eager else broker_status(ctx.config.queue.broker_url)
    return checks
