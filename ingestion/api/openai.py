"""The OpenAI-compatible endpoint of `tacit serve`: each team's model, for the team's tools.

- `GET /v1/models`: each team with an active adapter (id = the team name), then the base models.
- `POST /v1/chat/completions`: `model` is a team (its active version), `team@version`, or a base
  model; `stream: true` answers with server-sent `chat.completion.chunk` events ending in
  `data: [DONE]`. The answer's `model` says which version answered (`team@version`).
- `POST /v1/feedback`: a rating and/or correction for a completion id; the next processing of the
  team turns it into feedback (chat) and preference examples whose provenance is the completion.

Access: `Authorization: Bearer <key>` with a key of the model's team (`tacit keys create TEAM`)
or the admin token; no or an unknown key → 401, another team's key → 403. Errors have OpenAI's
shape `{"error": {"message", "type", "param", "code"}}`. When every generation slot and queue
place is taken the answer is 429 with `Retry-After`; an inference server that does not answer
gives 503. Each answered conversation is stored (unless the team's `record_conversations` is
false) as a `chat` interaction of the team, with the adapter version that answered.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select

from db import models
from db.base import utcnow
from tacit.context import Context
from training.serving.engine import EmbeddedEngine, Ticket, resolve_target, served_models
from training.serving.keys import team_of_key
from training.serving.protocol import (
    ChatRequest,
    FeedbackRequest,
    Generation,
    ServingError,
    Target,
    chunk_body,
    completion_body,
    completion_id,
    usage,
)
from training.serving.vllm import VllmBackend

SERVING_SOURCE_KIND = "serving"
_bearer = HTTPBearer(auto_error=False, description="A team's API key (`tacit keys create TEAM`) or the admin token")
router = APIRouter(prefix="/v1", tags=["openai"])


@dataclass(frozen=True, slots=True)
class Caller:
    team: str | None  # None: the admin token (every team)
    key_id: int | None = None

    def may_use(self, team: str | None) -> bool:
        return self.team is None or team is None or self.team == team


def _ctx(request: Request) -> Context:
    return request.app.state.ctx


def _engine(request: Request) -> Any:
    """The app's engine, made on first use (the embedded one loads models only when asked)."""
    state = request.app.state
    if getattr(state, "engine", None) is None:
        ctx = _ctx(request)
        state.engine = VllmBackend(ctx) if ctx.config.inference.backend == "vllm" else EmbeddedEngine(ctx)
    return state.engine


async def caller(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Caller:
    """Who is asking: a team's key, or the admin token."""
    given = credentials.credentials if credentials else ""
    if not given:
        raise ServingError(401, "No API key given: send Authorization: Bearer <key> (tacit keys create TEAM)",
                           type="authentication_error", code="missing_api_key")
    token = _ctx(request).config.api.admin_token
    if token is not None and token.get_secret_value() and hmac.compare_digest(
            given.encode("utf-8", "surrogateescape"), token.get_secret_value().encode()):
        return Caller(None)
    found = await run_in_threadpool(team_of_key, _ctx(request), given)
    if found is None:
        raise ServingError(401, "Incorrect or revoked API key", type="authentication_error", code="invalid_api_key")
    return Caller(*found)


# ---------------------------------------------------------------------------- routes
@router.get("/models", summary="Each team with an active adapter, and the base models")
async def list_models(request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    data = await run_in_threadpool(served_models, _ctx(request))
    return {"object": "list", "data": [m for m in data if who.may_use(m["owned_by"] if m["parent"] else None)]}


@router.post("/chat/completions", summary="A chat completion from a team's model (OpenAI shapes)",
             responses={401: {"description": "No or unknown key"}, 403: {"description": "Another team's key"},
                        404: {"description": "Unknown model"}, 429: {"description": "Queue full (Retry-After)"},
                        503: {"description": "Inference server unavailable"}})
async def chat_completions(body: ChatRequest, request: Request, who: Caller = Depends(caller)) -> Any:
    ctx = _ctx(request)
    named = body.model.split("@", 1)[0]
    if any(t.name == named for t in ctx.config.teams) and not who.may_use(named):  # before saying what exists
        raise ServingError(403, f"This key is for team {who.team}; it may not use team {named}'s model",
                           type="permission_error", param="model", code="wrong_team")
    target = await run_in_threadpool(resolve_target, ctx, body.model)
    engine = _engine(request)
    ticket = engine.admission.enter()  # 429 here, before any work, when the queue is full
    if body.stream:
        cancel = threading.Event()
        return _AdmittedStream(_sse(ctx, engine, target, body, who, ticket, cancel), ticket, cancel)
    try:
        gen = await run_in_threadpool(engine.generate, target, body)
    finally:
        ticket.leave()
    cid = completion_id()
    await run_in_threadpool(record, ctx, cid, target, body, gen, who)
    return completion_body(cid, target.model, gen)


class _AdmittedStream(StreamingResponse):
    """A streamed answer that gives its queue place back however it ends: read to the end,
    failed, or abandoned by a client that went away, even before its first chunk (when the
    body was never started, so its own clean-up never ran). An answer nobody reads any more
    stops generating, and the body is closed at once, so the model is free for the next."""

    def __init__(self, events: Iterator[str], ticket: Ticket, cancel: threading.Event) -> None:
        super().__init__(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        self._events, self._ticket, self._cancel = events, ticket, cancel

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._cancel.set()
            try:
                with anyio.CancelScope(shield=True):
                    # Starlette waits for a `next()` running in a worker thread before it returns,
                    # so the body is not executing here; closing it runs its clean-up (the model lock).
                    await run_in_threadpool(self._events.close)
            finally:
                self._ticket.leave()


def _sse(ctx: Context, engine: Any, target: Target, body: ChatRequest, who: Caller, ticket: Ticket,
         cancel: threading.Event) -> Iterator[str]:
    """The stream (iterated in a worker thread by Starlette): a role chunk, content chunks, a
    finish chunk, the usage chunk when asked (`stream_options.include_usage`), `[DONE]`."""
    cid, created = completion_id(), int(time.time())

    def event(data: dict[str, Any]) -> str:
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

    try:
        yield event(chunk_body(cid, target.model, created, {"role": "assistant", "content": ""}, None))
        gen: Generation | None = None
        try:
            with closing(engine.stream(target, body, cancel)) as pieces:
                for piece in pieces:
                    if isinstance(piece, Generation):
                        gen = piece
                    else:
                        yield event(chunk_body(cid, target.model, created, {"content": piece}, None))
        except ServingError as exc:  # the status line is sent: report it in the stream, as OpenAI does
            ticket.leave()
            yield event(exc.body())
            yield "data: [DONE]\n\n"
            return
        assert gen is not None
        # The model's part is over: free its place before the last chunks, so a client that asks
        # again as soon as it reads [DONE] is not turned away, and record the conversation before
        # [DONE], so what the client has read is already stored.
        ticket.leave()
        record(ctx, cid, target, body, gen, who)
        yield event(chunk_body(cid, target.model, created, {}, gen.finish_reason))
        if body.stream_options is not None and body.stream_options.include_usage:
            yield event(chunk_body(cid, target.model, created, {}, None,
                                   usage(gen.prompt_tokens, gen.completion_tokens), choices=False))
        yield "data: [DONE]\n\n"
    finally:
        ticket.leave()


@router.post("/feedback", summary="Rate or correct an answer; it trains the team's next refresh",
             status_code=201, responses={404: {"description": "Unknown completion id"},
                                         409: {"description": "The conversation was not recorded"},
                                         403: {"description": "Another team's completion"}})
async def feedback(body: FeedbackRequest, request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    """A rating (-1/0/1, or 1..5) and/or a correction for the answer `completion_id`. Stored as a
    `feedback` interaction of the team (kept with the completion id and the version that
    answered); the next processing makes a preference example (correction vs. answer, or a
    well- vs. a badly-rated answer to the same question) and a chat example from it."""
    if body.rating is None and body.correction is None:
        raise ServingError(400, "Give a rating, a correction or both", param="rating")
    return await run_in_threadpool(store_feedback, _ctx(request), body, who)


# ---------------------------------------------------------------------------- the loop
def _serving_source(session: Any, team_id: int, team: str) -> models.Source:
    """The source that holds a team's served conversations (made on first use; `:` keeps its
    name apart from configured sources)."""
    name = f"{SERVING_SOURCE_KIND}:{team}"
    row = session.scalar(select(models.Source).where(models.Source.name == name))
    if row is None:
        row = models.Source(name=name, kind=SERVING_SOURCE_KIND, team_id=team_id, config={}, state={}, status="ok")
        session.add(row)
        session.flush()
    return row


def _content_hash(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()


def record(ctx: Context, cid: str, target: Target, body: ChatRequest, gen: Generation, who: Caller) -> None:
    """The completion row, and (for a team whose recording is on) the conversation as a `chat`
    interaction with the version that answered."""
    if target.team is None:
        return  # the base model is nobody's knowledge
    team_cfg = ctx.config.team(target.team)
    with ctx.session() as session:
        team_row = ctx.team_row(session, target.team)
        interaction_id = None
        if team_cfg.record_conversations:
            messages = [{"role": m["role"], "text": m["content"]} for m in body.turns()]
            messages.append({"role": "assistant", "text": gen.text})
            meta = {"served": True, "completion_id": cid, "model": target.model, "adapter_version": target.version}
            source = _serving_source(session, team_row.id, target.team)
            row = models.Interaction(source_id=source.id, team_id=team_row.id, external_id=cid, kind="chat",
                                     messages=messages, meta=meta, content_hash=_content_hash([messages, meta]))
            session.add(row)
            session.flush()
            interaction_id = row.id
        session.add(models.Completion(id=cid, team_id=team_row.id, adapter_version=target.version,
                                      interaction_id=interaction_id, api_key_id=who.key_id,
                                      prompt_tokens=gen.prompt_tokens, completion_tokens=gen.completion_tokens))


def store_feedback(ctx: Context, body: FeedbackRequest, who: Caller) -> dict[str, Any]:
    with ctx.session() as session:
        done = session.get(models.Completion, body.completion_id)
        team = session.get(models.Team, done.team_id) if done is not None else None
        if done is None or team is None:
            raise ServingError(404, f"No completion {body.completion_id!r}", param="completion_id",
                               code="completion_not_found")
        if not who.may_use(team.name):
            raise ServingError(403, f"Completion {body.completion_id} belongs to team {team.name}",
                               type="permission_error", param="completion_id", code="wrong_team")
        chat = session.get(models.Interaction, done.interaction_id) if done.interaction_id else None
        if chat is None:
            raise ServingError(409, f"Team {team.name} does not record conversations, so there is nothing to "
                                    "learn the feedback from", param="completion_id", code="not_recorded")
        meta = {"completion_id": done.id, "adapter_version": done.adapter_version,
                "chat_interaction_id": chat.id, "comment": body.comment}
        row = session.get(models.Interaction, done.feedback_interaction_id) if done.feedback_interaction_id else None
        if row is None:
            row = models.Interaction(source_id=chat.source_id, team_id=chat.team_id, external_id=f"{done.id}:feedback",
                                     kind="feedback", messages=list(chat.messages), content_hash="")
            session.add(row)
        row.rating, row.correction, row.meta = body.rating, body.correction, meta
        row.content_hash = _content_hash([row.messages, body.rating, body.correction, meta])
        row.updated_at = utcnow()
        session.flush()
        done.feedback_interaction_id = row.id
        return {"object": "feedback", "completion_id": done.id, "team": team.name, "interaction_id": row.id,
                "rating": body.rating, "correction": body.correction}


# ---------------------------------------------------------------------------- mounting
def mount(app: FastAPI) -> None:
    """Add the `/v1` routes, and answer their errors (and only theirs) in OpenAI's shape."""
    app.include_router(router)

    @app.exception_handler(ServingError)
    async def serving_error(request: Request, exc: ServingError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        if not request.url.path.startswith("/v1/"):
            return await request_validation_exception_handler(request, exc)
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        message = f"{'.'.join(loc) or 'body'}: {first.get('msg', 'invalid request')}"
        return JSONResponse(ServingError(400, message, param=".".join(loc) or None).body(), status_code=400)
