"""The one HTTP layer: retries, `Retry-After`, backoff with jitter and a proactive rate budget.

Every connector talks to its vendor through an `httpx` client made here (the vendors' own
SDKs accept one: `notion_client.Client(client=…)`, kiota's `HttpxRequestAdapter(http_client=…)`),
so retry and rate policy live in one place and are shared by every worker:

* the **rate budget** is a token bucket per key (a Notion integration, a Graph tenant), kept in
  Redis when a URL is given so all workers draw from one bucket, in process memory otherwise;
* a **429/503/529** answer blocks the whole key until its `Retry-After` has passed, for every
  worker, and is retried;
* **5xx, timeouts, dropped connections and truncated JSON** are retried with exponential backoff
  and full jitter (AWS architecture blog, "Exponential Backoff And Jitter").
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 529})
THROTTLE_STATUSES = frozenset({429, 503, 529})
#: Failures with no answer that are retried with backoff.
_RETRIED_ERRORS = (httpx.TransportError, httpx.DecodingError)


@dataclass
class RetryPolicy:
    max_attempts: int = 8
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    max_retry_after: float = 300.0  # Notion's per-workspace limits can ask for more than 60 s
    #: Total time one request may spend waiting and retrying before it gives up.
    deadline: float = 900.0

    def backoff(self, attempt: int) -> float:
        return random.uniform(0, min(self.backoff_cap, self.backoff_base * 2**attempt))


@dataclass
class HttpStats:
    requests: int = 0
    retries: int = 0
    throttled: int = 0
    waited_s: float = 0.0
    by_status: dict[int, int] = field(default_factory=dict)

    def count(self, status: int) -> None:
        self.requests += 1
        self.by_status[status] = self.by_status.get(status, 0) + 1


class RetriesExhausted(httpx.HTTPError):
    """A request still failed after every retry the policy allows."""

    def __init__(self, message: str, response: httpx.Response | None = None) -> None:
        super().__init__(message)
        self.response = response


# --------------------------------------------------------------------------- budgets
class RateBudget:
    """A token bucket: `rate` requests a second on average, bursts up to `burst`."""

    def __init__(self, key: str, rate: float | None, burst: int = 1) -> None:
        self.key = key
        self.rate = rate
        self.burst = max(1, burst)

    def reserve(self) -> float:
        """Take one token; return how long the caller must wait before using it."""
        raise NotImplementedError

    def block(self, seconds: float) -> None:
        """Hold every caller of this key back for `seconds` (after a throttling answer)."""
        raise NotImplementedError


class LocalBudget(RateBudget):
    """In-process bucket (GCRA), shared by every client of the same key in this process."""

    _state: dict[str, list[float]] = {}  # key -> [theoretical arrival time, blocked until]
    _lock = threading.Lock()

    def reserve(self) -> float:
        with self._lock:
            now = time.monotonic()
            state = self._state.setdefault(self.key, [0.0, 0.0])
            tat, blocked = state
            if not self.rate:
                return max(0.0, blocked - now)
            interval = 1.0 / self.rate
            tat = max(tat, now)
            allowed = max(tat - (self.burst - 1) * interval, blocked)
            state[0] = max(tat, blocked) + interval
            return max(0.0, allowed - now)

    def block(self, seconds: float) -> None:
        with self._lock:
            state = self._state.setdefault(self.key, [0.0, 0.0])
            state[1] = max(state[1], time.monotonic() + seconds)


# GCRA in one Lua call: atomic across every worker that shares the Redis server.
_GCRA = """
local key = KEYS[1]
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local blocked = tonumber(redis.call('GET', key .. ':blocked') or '0')
if interval <= 0 then
  return tostring(math.max(0, blocked - now))
end
local tat = math.max(tonumber(redis.call('GET', key .. ':tat') or '0'), now)
local allowed = math.max(tat - (burst - 1) * interval, blocked)
redis.call('SET', key .. ':tat', tostring(math.max(tat, blocked) + interval), 'EX', 3600)
return tostring(math.max(0, allowed - now))
"""
_BLOCK = """
local key = KEYS[1]
local seconds = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local current = tonumber(redis.call('GET', key .. ':blocked') or '0')
if now + seconds > current then
  redis.call('SET', key .. ':blocked', tostring(now + seconds), 'EX', math.ceil(seconds) + 60)
end
return 1
"""


class RedisBudget(RateBudget):
    """A bucket in Redis, so every worker of every host draws from the same budget."""

    def __init__(self, key: str, rate: float | None, burst: int, client: Any) -> None:
        super().__init__(key, rate, burst)
        self._redis = client
        self._gcra = client.register_script(_GCRA)
        self._block = client.register_script(_BLOCK)
        self._fallback = LocalBudget(key, rate, burst)

    def reserve(self) -> float:
        try:
            interval = 1.0 / self.rate if self.rate else 0.0
            return float(self._gcra(keys=[f"tacit:rate:{self.key}"], args=[interval, self.burst]))
        except Exception as exc:  # Redis down: keep working on the local bucket
            log.warning("rate budget %s: Redis unavailable (%s), using a local budget", self.key, exc)
            return self._fallback.reserve()

    def block(self, seconds: float) -> None:
        self._fallback.block(seconds)
        try:
            self._block(keys=[f"tacit:rate:{self.key}"], args=[seconds])
        except Exception:
            pass


def make_budget(key: str, rate: float | None, burst: int = 1, redis_url: str | None = None) -> RateBudget:
    if redis_url and redis_url.startswith(("redis://", "rediss://", "unix://")):
        import redis

        return RedisBudget(key, rate, burst, redis.Redis.from_url(redis_url, socket_timeout=5))
    return LocalBudget(key, rate, burst)


# --------------------------------------------------------------------------- policy core
def retry_after_seconds(response: httpx.Response) -> float | None:
    """`Retry-After` as seconds: an integer, or an HTTP date (RFC 9110 §10.2.3)."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _truncated_json(response: httpx.Response) -> bool:
    if "json" not in response.headers.get("content-type", ""):
        return False
    if not response.content:
        return response.status_code not in (204, 304) and response.request.method != "HEAD"
    try:
        json.loads(response.content)
    except ValueError:
        return True
    return False


class HttpBudget:
    """Retry policy + rate budget for one source; makes the `httpx` clients its connector uses."""

    def __init__(
        self,
        key: str = "default",
        *,
        rate: float | None = None,
        burst: int = 1,
        redis_url: str | None = None,
        policy: RetryPolicy | None = None,
        timeout: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        validate_json: bool = True,
    ) -> None:
        self.key = key
        self.budget = make_budget(key, rate, burst, redis_url)
        self.policy = policy or RetryPolicy()
        self.timeout = timeout
        self.sleep = sleep
        self.validate_json = validate_json
        self.stats = HttpStats()

    # The decision core, shared by `send` and `send_async`: they only do the I/O (sleep, send,
    # read, close) and ask here what every attempt means, so the two cannot drift apart.
    def _reserve(self) -> float:
        """Draw one token from the rate budget; the wait before using it, counted in the stats."""
        wait = self.budget.reserve()
        if wait > 0:
            self.stats.waited_s += wait
        return wait

    def _reads_body(self, response: httpx.Response) -> bool:
        """Whether the body must be read before deciding (a truncated JSON answer is retried)."""
        return self.validate_json and "json" in response.headers.get("content-type", "")

    def _decide(self, attempt: int, response: httpx.Response | None, error: Exception | None) -> float | None:
        """What one attempt's outcome asks for: None = done, a float = retry after that long."""
        if error is not None:
            return self.policy.backoff(attempt)
        assert response is not None
        if response.status_code in RETRY_STATUSES:
            wait = retry_after_seconds(response)
            if response.status_code in THROTTLE_STATUSES:
                self.stats.throttled += 1
                wait = min(wait if wait is not None else self.policy.backoff(attempt) + 1, self.policy.max_retry_after)
                self.budget.block(wait)
                return wait
            return wait if wait is not None else self.policy.backoff(attempt)
        if self.validate_json and response.status_code < 300 and _truncated_json(response):
            return self.policy.backoff(attempt)
        return None

    def _next(
        self,
        request: httpx.Request,
        attempt: int,
        started: float,
        response: httpx.Response | None,
        error: Exception | None,
    ) -> Literal["done", "final"] | float:
        """Account for one attempt and say what follows it.

        "done": hand the answer back as it is. "final": the answer still asks for a retry but none is
        left (attempts or deadline); read it and hand it back. A float: close the answer and retry
        after that many seconds (counted and logged here). Raises `RetriesExhausted` when no answer
        came and no retry is left.
        """
        self.stats.count(0 if error is not None or response is None else response.status_code)
        retry_in = self._decide(attempt, response, error)
        if retry_in is None:
            return "done"
        if attempt + 1 >= self.policy.max_attempts or time.monotonic() - started + retry_in > self.policy.deadline:
            if response is not None:
                return "final"
            raise RetriesExhausted(f"{request.method} {request.url}: {error}") from error
        self.stats.retries += 1
        log.info("retrying %s %s in %.1fs (%s)", request.method, request.url.path, retry_in,
                 response.status_code if error is None and response is not None else type(error).__name__)
        return retry_in

    def send(self, transport: httpx.BaseTransport, request: httpx.Request) -> httpx.Response:
        """Send `request` through `transport` under the budget and retry policy."""
        started = time.monotonic()
        for attempt in range(self.policy.max_attempts):
            if (wait := self._reserve()) > 0:
                self.sleep(wait)
            response: httpx.Response | None = None
            error: Exception | None = None
            try:
                response = transport.handle_request(request)
                if self._reads_body(response):
                    response.read()
            except _RETRIED_ERRORS as exc:
                error = exc
            step = self._next(request, attempt, started, response, error)
            if step == "final":
                assert response is not None
                response.read()
            if isinstance(step, str):
                assert response is not None
                return response
            if response is not None:
                response.close()
            self.sleep(step)
        raise AssertionError("unreachable")

    async def send_async(self, transport: httpx.AsyncBaseTransport, request: httpx.Request) -> httpx.Response:
        """The asynchronous twin of `send`: the same core, awaiting the I/O."""
        started = time.monotonic()
        for attempt in range(self.policy.max_attempts):
            if (wait := self._reserve()) > 0:
                await asyncio.sleep(wait)
            response: httpx.Response | None = None
            error: Exception | None = None
            try:
                response = await transport.handle_async_request(request)
                if self._reads_body(response):
                    await response.aread()
            except _RETRIED_ERRORS as exc:
                error = exc
            step = self._next(request, attempt, started, response, error)
            if step == "final":
                assert response is not None
                await response.aread()
            if isinstance(step, str):
                assert response is not None
                return response
            if response is not None:
                await response.aclose()
            await asyncio.sleep(step)
        raise AssertionError("unreachable")

    # ---------------------------------------------------------------- clients
    def client(self, base_url: str = "", headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Client:
        """A synchronous client whose every request goes through this budget."""
        return httpx.Client(
            base_url=base_url,
            headers=headers,
            timeout=kwargs.pop("timeout", self.timeout),
            transport=_Transport(self, httpx.HTTPTransport()),
            **kwargs,
        )

    def async_client(self, base_url: str = "", headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.AsyncClient:
        """An asynchronous client whose every request goes through this budget."""
        return httpx.AsyncClient(
            base_url=base_url,
            headers=headers,
            timeout=kwargs.pop("timeout", self.timeout),
            transport=_AsyncTransport(self, httpx.AsyncHTTPTransport()),
            **kwargs,
        )


class _Transport(httpx.BaseTransport):
    def __init__(self, budget: HttpBudget, inner: httpx.BaseTransport) -> None:
        self.budget = budget
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self.budget.send(self.inner, request)

    def close(self) -> None:
        self.inner.close()


class _AsyncTransport(httpx.AsyncBaseTransport):
    def __init__(self, budget: HttpBudget, inner: httpx.AsyncBaseTransport) -> None:
        self.budget = budget
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.budget.send_async(self.inner, request)

    async def aclose(self) -> None:
        await self.inner.aclose()
