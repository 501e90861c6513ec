"""The routes of the fake Notion API (version 2025-09-03), over a `Workspace`.

Response shapes follow https://developers.notion.com/reference: list responses are
`{"object": "list", "results": [...], "next_cursor", "has_more", "type", <type>: {}}`,
`page_size` defaults to 100 and may not exceed it, errors are
`{"object": "error", "status", "code", "message", "request_id"}`.

Endpoints: POST /v1/search, GET /v1/pages/{id}, GET /v1/blocks/{id},
GET /v1/blocks/{id}/children, GET /v1/databases/{id}, GET /v1/data_sources/{id},
POST /v1/data_sources/{id}/query, GET /v1/comments?block_id=, GET /v1/users,
GET /v1/users/{id}, GET /v1/users/me.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from connectors.sandbox.notion.model import Block, Page, Workspace, iso


class Sandbox(Protocol):
    """What the routes use of `NotionSandbox` (a protocol: `server` builds its app from this module)."""

    token: str
    workspace: Workspace

    def norm(self, object_id: str) -> str: ...
    def _arrive(self, method: str, path: str) -> tuple[int, int | None] | None: ...
    def _throttle(self) -> int | None: ...
    def _slow_or_cut(self) -> tuple[float, bool]: ...
    def _page_json(self, page: Page) -> dict[str, Any]: ...
    def _block_json(self, block: Block) -> dict[str, Any]: ...

API_VERSION = "2025-09-03"
ERROR_CODES = {
    400: "validation_error", 401: "unauthorized", 403: "restricted_resource", 404: "object_not_found",
    409: "conflict_error", 429: "rate_limited", 500: "internal_server_error", 502: "bad_gateway",
    503: "service_unavailable", 504: "gateway_timeout", 529: "service_overload",
}
MESSAGES = {
    401: "API token is invalid.",
    403: "Insufficient permissions for this endpoint.",
    429: "You have been rate limited. Please try again in a few minutes.",
    500: "Unexpected error occurred.",
    503: "Notion is unavailable, please try again later.",
}


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or ERROR_CODES.get(status, "internal_server_error")
        self.message = message
        self.headers = headers or {}


def error_response(status: int, message: str | None = None, code: str | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    if status == 502:  # gateways answer in HTML, not in Notion's error format
        return Response("<html><body><h1>502 Bad Gateway</h1></body></html>", status_code=502,
                        media_type="text/html", headers=headers)
    body = {"object": "error", "status": status, "code": code or ERROR_CODES.get(status, "internal_server_error"),
            "message": message or MESSAGES.get(status, "Request failed."), "request_id": str(uuid.uuid4())}
    return JSONResponse(body, status_code=status, headers=headers)


def _listing(results: list[dict[str, Any]], next_cursor: str | None, kind: str) -> dict[str, Any]:
    return {"object": "list", "results": results, "next_cursor": next_cursor, "has_more": next_cursor is not None,
            "type": kind, kind: {}, "request_id": str(uuid.uuid4())}


def _page_size(value: Any) -> int:
    if value is None:
        return 100
    try:
        size = int(value)
    except (TypeError, ValueError):
        raise ApiError(400, "body.page_size should be a number.") from None
    if not 1 <= size <= 100:
        raise ApiError(400, f"body.page_size should be ≤ 100 and ≥ 1, instead was `{size}`.")
    return size


def _by_cursor(items: list[Any], key: Callable[[Any], str], cursor: str | None, size: int) -> tuple[list[Any], str | None]:
    """Notion's cursors name the first item of the next page (an id)."""
    start = 0
    if cursor:
        for i, item in enumerate(items):
            if key(item) == cursor:
                start = i
                break
        else:
            raise ApiError(400, "The start_cursor provided is invalid.")
    chunk = items[start:start + size]
    following = items[start + size] if start + size < len(items) else None
    return chunk, key(following) if following is not None else None


def _keyset(items: list[tuple[str, str, dict[str, Any]]], cursor: str | None, size: int,
            descending: bool) -> tuple[list[dict[str, Any]], str | None]:
    """Search and query cursors: a position (timestamp, id) in the sorted order, stable under edits."""
    items = sorted(items, key=lambda x: (x[0], x[1]), reverse=descending)
    if cursor:
        try:
            pos = tuple(json.loads(base64.urlsafe_b64decode(cursor.encode())))
        except (ValueError, TypeError):
            raise ApiError(400, "The start_cursor provided is invalid.") from None
        items = [x for x in items if ((x[0], x[1]) <= pos if descending else (x[0], x[1]) >= pos)]
    chunk, rest = items[:size], items[size:]
    nxt = None
    if rest:
        nxt = base64.urlsafe_b64encode(json.dumps([rest[0][0], rest[0][1]]).encode()).decode()
    return [x[2] for x in chunk], nxt


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise ApiError(400, "Error parsing JSON body.", "invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "body should be an object.")
    return body


def create_api(sandbox: Sandbox) -> FastAPI:
    app = FastAPI(title="Notion sandbox", docs_url=None, redoc_url=None, openapi_url=None)
    ws = sandbox.workspace

    @app.middleware("http")
    async def gate(request: Request, call_next: Callable[[Request], Any]) -> Response:
        if not request.url.path.startswith("/v1/"):
            return await call_next(request)
        fault = sandbox._arrive(request.method, request.url.path)
        wait, cut = sandbox._slow_or_cut()
        if wait:
            await asyncio.sleep(wait)
        if cut:
            response = await gated(request, call_next, fault)
            if hasattr(response, "body_iterator"):
                body = b"".join([chunk async for chunk in response.body_iterator])
            else:
                body = bytes(response.body)
            headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
            return Response(body[: len(body) // 2], status_code=response.status_code, headers=headers)
        return await gated(request, call_next, fault)

    async def gated(request: Request, call_next: Callable[[Request], Any],
                    fault: tuple[int, int | None] | None) -> Response:
        if fault is not None:
            status, retry_after = fault
            headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
            return error_response(status, headers=headers)
        if request.headers.get("authorization") != f"Bearer {sandbox.token}":
            return error_response(401)
        version = request.headers.get("notion-version")
        if not version:
            return error_response(400, "Notion-Version header failed validation: Notion-Version header should be "
                                       "defined, instead was `undefined`.", "missing_version")
        if version < API_VERSION:
            return error_response(400, f"This sandbox speaks Notion-Version {API_VERSION} or later "
                                       f"(databases with data sources), not {version}.")
        wait = sandbox._throttle()
        if wait is not None:
            return error_response(429, headers={"Retry-After": str(wait)})
        try:
            return await call_next(request)
        except ApiError as exc:
            return error_response(exc.status, exc.message, exc.code, exc.headers)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return error_response(exc.status, exc.message, exc.code, exc.headers)

    def not_found(kind: str, object_id: str) -> ApiError:
        return ApiError(404, f"Could not find {kind} with ID: {object_id}. Make sure the relevant pages and "
                             "databases are shared with your integration.")

    def page_json(page: Page) -> dict[str, Any]:
        return sandbox._page_json(page)

    @app.post("/v1/search")
    async def search(request: Request) -> dict[str, Any]:
        body = await _json_body(request)
        size = _page_size(body.get("page_size"))
        wanted = (body.get("filter") or {}).get("value")
        if wanted not in (None, "page", "data_source"):
            raise ApiError(400, "body.filter.value should be `\"page\"` or `\"data_source\"`.")
        sort = body.get("sort") or {"direction": "descending", "timestamp": "last_edited_time"}
        if sort.get("timestamp") != "last_edited_time":
            raise ApiError(400, "body.sort.timestamp should be `\"last_edited_time\"`.")
        query = (body.get("query") or "").lower()
        with ws.lock:
            items: list[tuple[str, str, dict[str, Any]]] = []
            if wanted in (None, "page"):
                items += [(iso(p.edited), p.id, page_json(p)) for p in ws.listed_pages() if query in p.title.lower()]
            if wanted in (None, "data_source"):
                for ds in ws.data_sources.values():
                    db = ws.databases[ds.database_id]
                    parent = ws.pages.get(db.parent.get("page_id", ""))
                    if parent is not None and parent.shared and not parent.in_trash and query in ds.title.lower():
                        items.append((iso(ds.edited), ds.id, ds.json(db)))
            results, nxt = _keyset(items, body.get("start_cursor"), size, sort.get("direction") != "ascending")
        return _listing(results, nxt, "page_or_data_source")

    @app.get("/v1/pages/{page_id}")
    async def retrieve_page(page_id: str) -> dict[str, Any]:
        with ws.lock:
            page = ws.visible_page(sandbox.norm(page_id))
            if page is None:
                raise not_found("page", page_id)
            return page_json(page)

    @app.get("/v1/blocks/{block_id}")
    async def retrieve_block(block_id: str) -> dict[str, Any]:
        with ws.lock:
            bid = sandbox.norm(block_id)
            block = ws.blocks.get(bid)
            if block is None or ws.container(bid) is None and ws.visible_page(bid) is None:
                raise not_found("block", block_id)
            return sandbox._block_json(block)

    @app.get("/v1/blocks/{block_id}/children")
    async def block_children(block_id: str, start_cursor: str | None = None,
                             page_size: str | None = None) -> dict[str, Any]:
        size = _page_size(page_size)
        with ws.lock:
            children = ws.container(sandbox.norm(block_id))
            if children is None:
                raise not_found("block", block_id)
            visible = [ws.blocks[c] for c in children if c in ws.blocks and not ws.blocks[c].in_trash]
            chunk, nxt = _by_cursor(visible, lambda b: b.id, start_cursor, size)
            return _listing([sandbox._block_json(b) for b in chunk], nxt, "block")

    @app.get("/v1/databases/{database_id}")
    async def retrieve_database(database_id: str) -> dict[str, Any]:
        with ws.lock:
            db = ws.databases.get(sandbox.norm(database_id))
            if db is None or ws.visible_page(db.parent.get("page_id", "")) is None:
                raise not_found("database", database_id)
            return db.json({d: ws.data_sources[d].title for d in db.data_sources})

    @app.get("/v1/data_sources/{data_source_id}")
    async def retrieve_data_source(data_source_id: str) -> dict[str, Any]:
        with ws.lock:
            ds = ws.data_sources.get(sandbox.norm(data_source_id))
            if ds is None:
                raise not_found("data source", data_source_id)
            return ds.json(ws.databases[ds.database_id])

    @app.post("/v1/data_sources/{data_source_id}/query")
    async def query_data_source(data_source_id: str, request: Request) -> dict[str, Any]:
        body = await _json_body(request)
        size = _page_size(body.get("page_size"))
        with ws.lock:
            ds = ws.data_sources.get(sandbox.norm(data_source_id))
            if ds is None:
                raise not_found("data source", data_source_id)
            rows = ws.rows(ds.id)
            flt = body.get("filter") or {}
            if flt:
                if flt.get("timestamp") != "last_edited_time":
                    raise ApiError(400, "The sandbox supports only last_edited_time filters.")
                cond = flt.get("last_edited_time") or {}
                if "on_or_after" in cond:
                    rows = [r for r in rows if iso(r.edited) >= cond["on_or_after"]]
                if "after" in cond:
                    rows = [r for r in rows if iso(r.edited) > cond["after"]]
            sorts = body.get("sorts") or [{"timestamp": "created_time", "direction": "descending"}]
            first = sorts[0]
            stamp = first.get("timestamp", "created_time")
            items = [(iso(r.edited if stamp == "last_edited_time" else r.created), r.id, page_json(r)) for r in rows]
            results, nxt = _keyset(items, body.get("start_cursor"), size, first.get("direction") != "ascending")
        return _listing(results, nxt, "page_or_data_source")

    @app.get("/v1/comments")
    async def list_comments(block_id: str | None = None, start_cursor: str | None = None,
                            page_size: str | None = None) -> dict[str, Any]:
        size = _page_size(page_size)
        if not block_id:
            raise ApiError(400, "block_id should be defined, instead was `undefined`.")
        with ws.lock:
            bid = sandbox.norm(block_id)
            if ws.container(bid) is None and not (bid in ws.blocks and ws.blocks[bid].type == "child_database"):
                raise not_found("block", block_id)
            comments = [c for c in ws.comments if bid in (c.parent.get("page_id"), c.parent.get("block_id"))]
            chunk, nxt = _by_cursor(comments, lambda c: c.id, start_cursor, size)
            return _listing([c.json() for c in chunk], nxt, "comment")

    @app.get("/v1/users/me")
    async def me() -> dict[str, Any]:
        return ws.users[ws.bot_id]

    @app.get("/v1/users")
    async def list_users(start_cursor: str | None = None, page_size: str | None = None) -> dict[str, Any]:
        size = _page_size(page_size)
        with ws.lock:
            users = list(ws.users.values())
            chunk, nxt = _by_cursor(users, lambda u: u["id"], start_cursor, size)
            return _listing(chunk, nxt, "user")

    @app.get("/v1/users/{user_id}")
    async def retrieve_user(user_id: str) -> dict[str, Any]:
        user = ws.users.get(sandbox.norm(user_id))
        if user is None:
            raise not_found("user", user_id)
        return user

    @app.api_route("/v1/{rest:path}", methods=["GET", "POST", "PATCH", "DELETE"])
    async def unknown(rest: str) -> Response:
        return error_response(400, f"Invalid request URL: /v1/{rest}", "invalid_request_url")

    return app
