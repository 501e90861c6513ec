"""A fake Microsoft Graph that speaks real HTTP, for tests, the demo and the benchmark.

    with GraphSandbox() as sb:
        workspace = build_company(sb)          # connectors.sandbox.graph.workspace
        ...  # point a source at sb.url (base_url) with sb.static_token or client credentials

Serves `/v1.0/...` (sites, drives with `/delta`, file content via a 302 to a pre-authenticated
URL, permissions, mail folders with message delta, teams, channels and channel messages with
delta and replies, `$batch`, `/subscriptions`) on http://127.0.0.1, and a token authority
(OpenID configuration + client-credentials token endpoint) on https://127.0.0.1 with a
self-signed certificate (`ca_file`), because azure-identity only talks to an https authority.

Faults: `inject(status, count, retry_after)` (the next API requests fail), `throttle_every(n)`
(every n-th API request, `$batch` inner requests included, answers 429/503/504 with
`Retry-After`), `rate_limit(rate)` (a per-tenant bucket answering 429), `revoke(permission)`
(403 on the routes that need it), `expire_delta_tokens()` (410 Gone), `latency`, `truncate(count)` (the
next answers' JSON bodies are cut off half-way) and `delay(seconds, count)` (the next answers come late).
"""

from __future__ import annotations

import json
import math
import secrets
import time
from collections import Counter, deque
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from connectors.sandbox.graph.api import ERROR_CODES, ERROR_TEXT, GraphApi, Reply, error
from connectors.sandbox.graph.notify import Subscriptions
from connectors.sandbox.graph.state import SandboxState
from connectors.sandbox.server import SandboxControls, ThreadedServer, self_signed_certificate

__all__ = ["GraphSandbox"]

MAX_BATCH = 20  # https://learn.microsoft.com/graph/json-batching: "limited to 20 individual requests"


class GraphSandbox(SandboxControls):
    def __init__(self, *, page_size: int = 50, latency: float = 0.0, tenant_id: str = "lumen-tenant",
                 client_id: str = "tacit-sandbox-app", client_secret: str = "sandbox-client-secret-do-not-log",
                 static_token: str = "sandbox-static-token-do-not-log", port: int = 0, auth_port: int = 0) -> None:
        self.state = SandboxState(tenant_id)
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.client_secret = client_secret
        self.static_token = static_token
        self.page_size = page_size
        self.latency = latency
        self.revoked: set[str] = set()
        self.download_key = secrets.token_bytes(16)
        self.subscriptions = Subscriptions(self)
        self.state.listeners.append(self.subscriptions.on_change)
        self.api = GraphApi(self)
        self._issued: set[str] = set()
        self._init_controls()
        self._faults: deque[list[Any]] = deque()  # [status, remaining, retry_after]
        self._every: tuple[int, tuple[int, ...], float] | None = None
        self._rate: tuple[float, int] | None = None
        self._bucket = [0.0, 0.0]  # tokens, last refill
        self.time_offset = timedelta(0)
        self.counts: Counter[str] = Counter()  # api, inner, download, token, batch, throttled, by route kind
        self.port, self.auth_port = port, auth_port  # 0: any free port
        self._api_server: ThreadedServer | None = None
        self._auth_server: ThreadedServer | None = None
        self.ca_file = ""

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> GraphSandbox:
        self._api_server = ThreadedServer(self._api_app(), port=self.port).start()
        self.ca_file, key = self_signed_certificate()
        self._auth_server = ThreadedServer(self._auth_app(), port=self.auth_port, certfile=self.ca_file,
                                           keyfile=key).start()
        return self

    def stop(self) -> None:
        for server in (self._api_server, self._auth_server):
            if server:
                server.stop()

    @property
    def url(self) -> str:
        """The `base_url` a source uses (the connector adds `/v1.0`)."""
        assert self._api_server, "start() the sandbox first"
        return self._api_server.url

    @property
    def download_base(self) -> str:
        assert self._api_server
        return f"http://localhost:{self._api_server.port}"

    @property
    def authority(self) -> str:
        """The `authority` a source uses for client credentials (host:port of the token server)."""
        assert self._auth_server
        return f"127.0.0.1:{self._auth_server.port}"

    def now(self) -> datetime:
        return datetime.now(UTC) + self.time_offset

    # ------------------------------------------------------------------ content changes (see `state` for all)
    def edit_file(self, item_id: str, content: bytes) -> None:
        self.state.edit_file(item_id, content)

    def delete_file(self, item_id: str) -> None:
        self.state.delete_item(item_id)

    def add_channel_thread(self, team_id: str, question: str, answer: str, *, channel: str = "Help") -> str:
        """Post a question in a team channel and an answer to it; returns the root message id."""
        from html import escape

        from connectors.sandbox.graph.state import Identity

        team = self.state.teams[team_id]
        channel_id = next(c.id for c in team.channels.values() if c.name == channel)
        asker, answerer = Identity("Ivan Petrov", "ivan@lumenlabs.example"), Identity("Dana Whitfield",
                                                                                    "dana@lumenlabs.example")
        root = self.state.post_message(team_id, channel_id, f"<p>{escape(question)}</p>", author=asker)
        self.state.post_message(team_id, channel_id, f"<p>{escape(answer)}</p>", author=answerer, reply_to=root.id)
        return root.id

    # ------------------------------------------------------------------ faults and counts
    def inject(self, status: int, count: int = 1, retry_after: float | None = None) -> None:
        """The next `count` API requests answer `status` with a Graph error body."""
        if count > 0:
            with self._lock:
                self._faults.append([status, count, retry_after])

    def throttle_every(self, n: int | None, statuses: tuple[int, ...] = (429, 503, 504),
                       retry_after: float = 0.0) -> None:
        """Every n-th API request (inner `$batch` requests too) is throttled, cycling through `statuses`."""
        self._every = (n, statuses, retry_after) if n else None

    def rate_limit(self, rate: float | None, burst: int = 10) -> None:
        """A per-tenant budget: beyond `rate` requests a second (after a burst) answer 429."""
        self._rate = (rate, burst) if rate else None
        self._bucket = [float(burst), time.monotonic()]

    def revoke(self, permission: str) -> None:
        self.revoked.add(permission)

    def expire_delta_tokens(self) -> None:
        self.state.expire_tokens()

    def requests_served(self) -> int:
        """HTTP requests answered by the API (including downloads and `$batch` envelopes)."""
        return self.counts["api"] + self.counts["download"]

    def deliver_notifications(self) -> list[int]:
        return self.subscriptions.deliver()

    def send_lifecycle(self, subscription_id: str, event: str) -> int:
        return self.subscriptions.send_lifecycle(subscription_id, event)

    def authorized(self, header: str) -> bool:
        token = header.removeprefix("Bearer ").strip()
        return bool(token) and (token == self.static_token or token in self._issued)

    def _fault(self, inner: bool) -> Reply | None:
        with self._lock:
            if not inner and self._faults:
                fault = self._faults[0]
                fault[1] -= 1
                if fault[1] <= 0:
                    self._faults.popleft()
                return self._fault_reply(fault[0], fault[2], inner)
            self.counts["throttle_tick"] += 1
            if self._every and self.counts["throttle_tick"] % self._every[0] == 0:
                statuses = self._every[1]
                status = statuses[(self.counts["throttle_tick"] // self._every[0]) % len(statuses)]
                return self._fault_reply(status, self._every[2], inner)
            if self._rate:
                rate, burst = self._rate
                tokens, last = self._bucket
                now = time.monotonic()
                tokens = min(float(burst), tokens + (now - last) * rate)
                if tokens < 1:
                    self._bucket = [tokens, now]
                    self.counts["rate_limited"] += 1
                    return self._fault_reply(429, math.ceil((1 - tokens) / rate * 100) / 100, inner)
                self._bucket = [tokens - 1, now]
        return None

    def _fault_reply(self, status: int, retry_after: float | None, inner: bool = False) -> Reply:
        """A throttled or failed answer: 429 (and 503/504) with `Retry-After` in seconds, a Graph error body
        (https://learn.microsoft.com/graph/throttling, https://learn.microsoft.com/graph/errors)."""
        self.counts["inner_faults" if inner else "faults"] += 1
        if status in (429, 503, 504):
            self.counts["throttled"] += 1
        headers = {"Retry-After": _fmt(retry_after)} if retry_after is not None else {}
        return error(status, ERROR_CODES.get(status, "error"), ERROR_TEXT.get(status, "Injected failure."), headers)

    # ------------------------------------------------------------------ resources for subscriptions
    def resource_exists(self, resource: str) -> bool:
        from connectors.sandbox.graph.notify import _norm

        parts = _norm(resource).split("/")
        st = self.state
        if parts[0] == "drives":
            return any(d.lower() == parts[1] for d in st.drives)
        if parts[0] == "users":
            return st.mailbox(parts[1]) is not None
        if parts[0] == "teams":
            team = next((t for t in st.teams.values() if t.id.lower() == parts[1]), None)
            return team is not None and len(parts) > 3 and any(c.lower() == parts[3] for c in team.channels)
        return False

    # ------------------------------------------------------------------ HTTP apps
    def _api_app(self) -> FastAPI:
        app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

        @app.api_route("/v1.0/{path:path}", methods=["GET", "POST", "PATCH", "DELETE"])
        async def graph(path: str, request: Request) -> Response:
            body = await request.body()
            raw_path = request.scope.get("raw_path", b"").decode().split("?", 1)[0].removeprefix("/v1.0/")
            reply = await run_in_threadpool(self._serve, request.method, raw_path, request.url.query,
                                            dict(request.headers), body, str(request.base_url).rstrip("/"))
            response = _response(reply)
            if self._cut_next():
                with self._lock:
                    self.counts["truncated"] += 1
                headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
                return Response(response.body[: len(response.body) // 2], status_code=response.status_code,
                                headers=headers)
            return response

        @app.get("/_layouts/15/download.aspx")
        def download(request: Request, tempauth: str = "") -> Response:
            self.counts["download"] += 1
            if "authorization" in request.headers:
                return JSONResponse({"error": "a pre-authenticated URL must not get a bearer token"}, 400)
            token = tempauth
            item = self.state.items.get(token.partition(".")[0])
            if item is None or item.deleted or self.api.download_token(item) != token:
                return JSONResponse({"error": "the download URL expired"}, 401)
            return Response(item.content, media_type=item.mime or "application/octet-stream")

        return app

    def _serve(self, method: str, raw_path: str, raw_query: str, headers: dict[str, str], body: bytes,
               base: str) -> Reply:
        self.counts["api"] += 1
        delay = self._next_delay()
        if self.latency or delay:
            time.sleep(self.latency + delay)
        query = dict(parse_qsl(raw_query, keep_blank_values=True))
        fault = self._fault(inner=False)
        if fault is not None:
            return fault
        if raw_path.strip("/") == "$batch" and method == "POST":
            if not self.authorized(headers.get("authorization", "")):
                return error(401, "InvalidAuthenticationToken", ERROR_TEXT[401])
            return self._batch(body, headers, base)
        return self.api.dispatch(method, raw_path, query, headers, body or None, base)

    def _batch(self, body: bytes, headers: dict[str, str], base: str) -> Reply:
        self.counts["batch"] += 1
        try:
            requests = json.loads(body)["requests"]
        except (ValueError, KeyError, TypeError):
            return error(400, "BadRequest", "Invalid batch payload.")
        if len(requests) > MAX_BATCH:
            return error(400, "BadRequest", f"Batch request limit exceeded: at most {MAX_BATCH} requests.")
        # https://learn.microsoft.com/graph/json-batching: `url` is relative to the version
        # ("/users/…", not "https://graph…/v1.0/users/…"); each request is evaluated on its own against
        # throttling (an inner 429 with Retry-After, https://learn.microsoft.com/graph/throttling#throttling-and-batching);
        # "responses might appear in a different order than the requests": answered here in reverse.
        responses = []
        for req in requests:
            self.counts["inner"] += 1
            raw = str(req.get("url", ""))
            url = urlsplit(raw)
            path = url.path.lstrip("/")
            if url.scheme or path.startswith(("v1.0/", "beta/")):
                responses.append({"id": req.get("id"), "status": 400, "headers": {"Content-Type": "application/json"},
                                  "body": error(400, "BadRequest", f"Invalid request URL '{raw}': give it "
                                                "relative to the version, e.g. /users").body})
                continue
            reply = self._fault(inner=True) or self.api.dispatch(
                req.get("method", "GET").upper(), path, dict(parse_qsl(url.query, keep_blank_values=True)),
                {**{k.lower(): v for k, v in (req.get("headers") or {}).items()},
                 "authorization": headers.get("authorization", "")},
                json.dumps(req["body"]).encode() if req.get("body") is not None else None, base)
            item: dict[str, Any] = {"id": req.get("id"), "status": reply.status,
                                    "headers": {"Content-Type": "application/json", **reply.headers}}
            if reply.body is not None and not isinstance(reply.body, bytes):
                item["body"] = reply.body
            responses.append(item)
        return Reply(200, {"responses": responses[::-1]})

    def _auth_app(self) -> FastAPI:
        app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

        @app.get("/{tenant}/v2.0/.well-known/openid-configuration")
        def openid(tenant: str, request: Request) -> JSONResponse:
            base = str(request.base_url).rstrip("/")
            return JSONResponse({
                "issuer": f"{base}/{tenant}/v2.0", "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
                "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys", "response_types_supported": ["code"],
                "token_endpoint_auth_methods_supported": ["client_secret_post"],
                "tenant_region_scope": "EU",
            })

        @app.post("/{tenant}/oauth2/v2.0/token")
        async def token(tenant: str, request: Request) -> JSONResponse:
            self.counts["token"] += 1
            form = dict(parse_qsl((await request.body()).decode()))
            if (tenant != self.tenant_id or form.get("client_id") != self.client_id
                    or form.get("client_secret") != self.client_secret
                    or form.get("grant_type") != "client_credentials"):
                return JSONResponse({"error": "invalid_client", "error_description":
                                     "AADSTS7000215: Invalid client secret provided."}, 401)
            issued = "sbx." + secrets.token_urlsafe(24)
            self._issued.add(issued)
            return JSONResponse({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
                                 "access_token": issued})

        return app


def _fmt(seconds: float | None) -> str:
    if seconds is None:
        return "0"
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:.2f}"


def _response(reply: Reply) -> Response:
    if reply.status == 204 or reply.body is None:
        return Response(status_code=reply.status, headers=reply.headers)
    if isinstance(reply.body, bytes):
        return Response(reply.body, status_code=reply.status, headers=reply.headers)
    return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers,
                        media_type="application/json")
