"""One Graph session: a private event loop, the shared HTTP layer's client, the msgraph SDK.

The SDK is asynchronous; the connector's `sync()` is a plain generator. A session owns an
event loop and steps async generators on it (`iterate`), so records flow out one at a time
and a checkpoint can be persisted between them.

The SDK is given `HttpBudget.async_client()` as its `httpx` client, so retries, `Retry-After`
and the per-tenant rate budget live in `connectors.http` only. Passing our own client also
means none of kiota's default middleware runs (no `RetryHandler`, hence no double retries;
redirects are followed by httpx, which drops the Authorization header on the cross-origin hop
to a pre-authenticated download URL).

Errors are translated once, here: 401/403 → `AuthError` naming the permission the call needs,
410 → `CheckpointExpired`, 404 → `NotFound`, 400 → `BadRequest`, throttling or 5xx still
failing after the HTTP layer's retries → `TransientError`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from kiota_abstractions.api_error import APIError
from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation
from kiota_http.httpx_request_adapter import HttpxRequestAdapter
from msgraph import GraphServiceClient
from msgraph.generated.models.o_data_errors.o_data_error import ODataError

from connectors.base import AuthError, CheckpointExpired, ConnectorError, TransientError
from connectors.http import HttpBudget, retry_after_seconds
from connectors.msgraph.auth import make_auth_provider, make_credential
from connectors.msgraph.settings import GraphSettings

log = logging.getLogger(__name__)
T = TypeVar("T")
_TEMPAUTH = re.compile(r"(tempauth=)[^&\s\"']+", re.I)


class _MaskDownloadCredentials(logging.Filter):
    """httpx logs every URL at INFO (and httpcore the `Location` header at DEBUG); a pre-authenticated
    download URL carries its credential in `tempauth` (SharePoint), which must not reach the logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "tempauth=" in message.lower():
            record.msg, record.args = _TEMPAUTH.sub(r"\1********", message), None
        return True


for _name in ("httpx", "httpcore.http11", "httpcore.http2", "httpcore.connection"):
    _logger = logging.getLogger(_name)
    if not any(isinstance(f, _MaskDownloadCredentials) for f in _logger.filters):
        _logger.addFilter(_MaskDownloadCredentials())

#: `$batch` takes at most 20 requests (https://learn.microsoft.com/graph/json-batching#batch-size-limitations);
#: the same limit as msgraph-core's `BatchRequestContent.MAX_REQUESTS`.
MAX_BATCH = 20
ERROR_MAP: dict[str, Any] = {"XXX": ODataError}
THROTTLED = frozenset({429, 503, 504})


class GraphRequestError(ConnectorError):
    def __init__(self, message: str, status: int, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class NotFound(GraphRequestError):
    """The resource does not exist (or no longer does)."""


class BadRequest(GraphRequestError):
    """Graph refused the request as such (e.g. delta on a channel that does not support it)."""


def translate(status: int, code: str, message: str, what: str, permission: str) -> ConnectorError:
    """The connector error for a Graph error answer to `what` (a call needing `permission`)."""
    detail = f"{status} {code}".strip()
    if status == 401:
        return AuthError(f"{what}: Graph refused the credentials ({detail}); check tenant_id, client_id and "
                         "client_secret, or access_token")
    if status == 403:
        return AuthError(f"{what}: access denied ({detail}); the app needs the {permission} application "
                         "permission (granted with admin consent)")
    if status == 404:
        return NotFound(f"{what}: not found ({detail}: {message})", status, code)
    if status == 410:
        return CheckpointExpired(f"{what}: the delta token expired ({detail})")
    if status == 400:
        return BadRequest(f"{what}: bad request ({detail}: {message})", status, code)
    if status in THROTTLED or status >= 500:
        return TransientError(f"{what}: Graph still answered {detail} after retries")
    return GraphRequestError(f"{what}: {detail}: {message}", status, code)


def _from_api_error(exc: APIError, what: str, permission: str) -> ConnectorError:
    status = exc.response_status_code or 0
    code, message = "", ""
    if isinstance(exc, ODataError) and exc.error is not None:
        code, message = exc.error.code or "", exc.error.message or ""
    return translate(status, code, message or str(exc), what, permission)


@dataclass
class BatchResult:
    """One inner response of a `$batch`: its own status, headers and JSON body."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)



class GraphSession:
    """An event loop, the HTTP layer's async client and a `GraphServiceClient` built on them."""

    def __init__(self, settings: GraphSettings, http: HttpBudget, credential: Any = None) -> None:
        self.settings = settings
        self.http = http
        self.loop = asyncio.new_event_loop()
        self.credential = credential if credential is not None else make_credential(settings)
        self.http_client = http.async_client(base_url=settings.api_url, follow_redirects=True,
                                             headers={"User-Agent": "tacit-msgraph"}, timeout=settings.timeout_s)
        self.adapter = HttpxRequestAdapter(make_auth_provider(settings, self.credential),
                                           http_client=self.http_client)
        self.adapter.base_url = settings.api_url
        self.client = GraphServiceClient(request_adapter=self.adapter)
        self.batches = 0
        self.batched_requests = 0

    # ------------------------------------------------------------------ loop
    def run(self, coro: Awaitable[T]) -> T:
        return self.loop.run_until_complete(coro)

    def iterate(self, agen: AsyncIterator[T]) -> Iterator[T]:
        """Step an async generator on the session's loop, yielding what it yields."""
        try:
            while True:
                try:
                    item = self.loop.run_until_complete(agen.__anext__())  # type: ignore[arg-type]
                except StopAsyncIteration:
                    return
                yield item
        finally:
            if not self.loop.is_closed():
                self.loop.run_until_complete(agen.aclose())  # type: ignore[attr-defined]

    def close(self) -> None:
        if self.loop.is_closed():
            return
        try:
            self.loop.run_until_complete(self.http_client.aclose())
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()

    # ------------------------------------------------------------------ calls
    async def call(self, what: str, permission: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Run one SDK call, translating Graph and transport errors (see the module docstring)."""
        try:
            return await fn()
        except APIError as exc:
            raise _from_api_error(exc, what, permission) from None
        except httpx.HTTPError as exc:  # RetriesExhausted, or a transport error on a non-retried path
            raise TransientError(f"{what}: {type(exc).__name__}: {exc}") from None
        except Exception as exc:
            from azure.core.exceptions import ClientAuthenticationError

            if isinstance(exc, ClientAuthenticationError):
                raise AuthError(f"{what}: no token from the authority: {_first_line(exc.message)}") from None
            raise

    async def json(self, request: RequestInformation | str, what: str, permission: str) -> Any:
        """Send a request built by the SDK (or GET an `@odata.nextLink`/`deltaLink` URL) through the
        adapter, and return the body as plain JSON.

        Hot paths (delta pages, `$batch` answers) are read as JSON rather than SDK models: the
        models' deserialisation costs more than the request itself
        (https://github.com/microsoftgraph/msgraph-sdk-python/issues/584)."""
        if isinstance(request, str):
            info = RequestInformation(Method.GET)
            info.url = request
        else:
            info = request
        info.headers.try_add("Accept", "application/json")
        raw = await self.call(what, permission, lambda: self.adapter.send_primitive_async(info, "bytes", ERROR_MAP))
        return _loads(raw, what)

    async def download(self, drive_id: str, item_id: str, cap: int, what: str) -> bytes | None:
        """Stream a file's content (following the 302 to its download URL); None when over `cap` bytes."""
        builder = self.client.drives.by_drive_id(drive_id).items.by_drive_item_id(item_id).content
        info = builder.to_get_request_information()
        self.adapter.set_base_url_for_request_information(info)  # done by the adapter's own send path
        request = await self.call(what, "Files.Read.All", lambda: self.adapter.convert_to_native_async(info))
        try:
            response = await self.http_client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise TransientError(f"{what}: {type(exc).__name__}: {exc}") from None
        try:
            if response.status_code >= 400:
                await response.aread()
                code, message = _error_fields(response)
                raise translate(response.status_code, code, message, what, "Files.Read.All")
            buf = bytearray()
            async for chunk in response.aiter_bytes():
                buf += chunk
                if len(buf) > cap:
                    return None
            return bytes(buf)
        finally:
            await response.aclose()

    async def batch(self, requests: dict[str, RequestInformation], what: str,
                    permission: str) -> dict[str, BatchResult]:
        """GET many resources with JSON `$batch`, ≤ 20 a round trip; each inner answer is checked alone.

        An inner 429/503/504 blocks the tenant's rate budget for its `Retry-After` (so the next
        request, the re-sent batch included, waits in the HTTP layer) and only those requests are
        sent again. The batch body is written here as JSON (the json-batching format) and the
        answers parsed here, not with msgraph-core's batch classes: its `BatchResponseItem` drops
        JSON object bodies with this kiota version (https://github.com/microsoft/kiota-python/issues/737)
        and its request module needs the `deprecated` package, which msgraph-core does not declare.
        """
        results: dict[str, BatchResult] = {}
        todo = dict(requests)
        prefix = self.settings.api_url
        for attempt in range(self.http.policy.max_attempts):
            if not todo:
                break
            retry: dict[str, RequestInformation] = {}
            ids = list(todo)
            for start in range(0, len(ids), MAX_BATCH):
                chunk = ids[start:start + MAX_BATCH]
                payload = {"requests": [
                    {"id": rid, "method": "GET", "url": _relative(todo[rid], prefix),
                     "headers": {"Accept": "application/json"}} for rid in chunk]}
                info = RequestInformation(Method.POST)
                info.url = f"{prefix}/$batch"
                info.headers.try_add("Content-Type", "application/json")
                info.headers.try_add("Accept", "application/json")
                info.content = json.dumps(payload).encode()
                raw = await self.call(f"{what} ($batch)", permission,
                                      lambda info=info: self.adapter.send_primitive_async(info, "bytes", ERROR_MAP))
                self.batches += 1
                self.batched_requests += len(chunk)
                answers = {r.get("id"): r for r in _loads(raw, f"{what} ($batch)").get("responses", [])}
                for rid in chunk:
                    answer = answers.get(rid)
                    if answer is None:  # a batch may answer fewer items than asked: ask again
                        retry[rid] = todo[rid]
                        continue
                    status = int(answer.get("status", 0))
                    headers = {k.lower(): str(v) for k, v in (answer.get("headers") or {}).items()}
                    if status in THROTTLED and attempt + 1 < self.http.policy.max_attempts:
                        wait = _retry_after(headers, self.http, attempt)
                        self.http.budget.block(wait)
                        self.http.stats.throttled += 1
                        self.http.stats.retries += 1
                        retry[rid] = todo[rid]
                        continue
                    results[rid] = BatchResult(status, answer.get("body"), headers)
            todo = retry
        for rid in todo:  # still throttled after every attempt
            results[rid] = BatchResult(429, None, {})
        return results


def _loads(raw: bytes | None, what: str) -> Any:
    """The JSON of an answer; one still cut off after the HTTP layer's retries is a transient failure."""
    try:
        return json.loads(raw or b"{}")
    except ValueError as exc:
        raise TransientError(f"{what}: Graph's answer is not complete JSON after retries ({exc})") from None


def _relative(info: RequestInformation, prefix: str) -> str:
    """The URL of a request relative to the API root, as `$batch` wants it (`/drives/...`)."""
    url = info.url
    return url[len(prefix):] if url.startswith(prefix) else url


def _retry_after(headers: dict[str, str], http: HttpBudget, attempt: int) -> float:
    value = headers.get("retry-after")
    if value is not None:
        wait = retry_after_seconds(httpx.Response(429, headers={"Retry-After": value}))
        if wait is not None:
            return min(wait, http.policy.max_retry_after)
    return http.policy.backoff(attempt) + 1


def _error_fields(response: httpx.Response) -> tuple[str, str]:
    try:
        err = response.json().get("error", {})
    except (ValueError, AttributeError):
        return "", response.text[:200]
    if isinstance(err, dict):
        return str(err.get("code", "")), str(err.get("message", ""))
    return "", str(err)


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if text else "authentication failed"
