"""The one HTTP layer against a real local HTTP server: retries, Retry-After, truncation, budgets."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from connectors.http import HttpBudget, LocalBudget, RetryPolicy, make_budget, retry_after_seconds


class Script:
    """Answers requests from a list of (status, headers, body); the last entry repeats."""

    def __init__(self) -> None:
        self.responses: list[tuple[int, dict[str, str], bytes]] = []
        self.hits = 0


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            i = min(script.hits, len(script.responses) - 1)
            script.hits += 1
            status, headers, body = script.responses[i]
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            if "Content-Length" not in headers:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    httpd.shutdown()


JSON = {"Content-Type": "application/json"}


def _budget(**kwargs: object) -> tuple[HttpBudget, list[float]]:
    slept: list[float] = []
    budget = HttpBudget(f"test-{time.monotonic_ns()}", sleep=slept.append,
                        policy=RetryPolicy(max_attempts=5, backoff_base=0.01), **kwargs)  # type: ignore[arg-type]
    return budget, slept


def test_429_with_retry_after_then_success(server: tuple[str, Script]) -> None:
    url, script = server
    script.responses = [(429, {**JSON, "Retry-After": "2"}, b'{"code":"rate_limited"}'), (200, JSON, b'{"ok":true}')]
    budget, slept = _budget()
    with budget.client(url) as client:
        response = client.post("/v1/search", json={})
    assert response.json() == {"ok": True}
    assert script.hits == 2 and budget.stats.retries == 1 and budget.stats.throttled == 1
    assert 2.0 in slept  # Retry-After honoured exactly


def test_5xx_and_truncated_json_are_retried(server: tuple[str, Script]) -> None:
    url, script = server
    script.responses = [(502, {}, b"bad gateway"), (200, JSON, b'{"results": [1, 2'), (529, JSON, b"{}"),
                        (200, JSON, b'{"results": [1, 2]}')]
    budget, _ = _budget()
    with budget.client(url) as client:
        assert client.get("/x").json() == {"results": [1, 2]}
    assert script.hits == 4 and budget.stats.by_status == {502: 1, 200: 2, 529: 1}


def test_gives_up_after_max_attempts_and_returns_last_answer(server: tuple[str, Script]) -> None:
    url, script = server
    script.responses = [(503, JSON, b'{"error":"down"}')]
    budget, _ = _budget()
    with budget.client(url) as client:
        response = client.get("/x")
    assert response.status_code == 503 and script.hits == 5


def test_client_errors_are_not_retried(server: tuple[str, Script]) -> None:
    url, script = server
    script.responses = [(401, JSON, b'{"code":"unauthorized"}')]
    budget, _ = _budget()
    with budget.client(url) as client:
        assert client.get("/x").status_code == 401
    assert script.hits == 1


def test_connection_refused_is_retried_then_raised() -> None:
    budget, slept = _budget()
    with budget.client("http://127.0.0.1:9") as client, pytest.raises(httpx.HTTPError):
        client.get("/x")
    assert len(slept) == 4  # five attempts, four waits


async def _async_get(budget: HttpBudget, url: str) -> dict:
    async with budget.async_client(url) as client:
        return (await client.get("/x")).json()


def test_async_client_retries_too(server: tuple[str, Script]) -> None:
    url, script = server
    script.responses = [(504, {"Retry-After": "0"}, b""), (200, JSON, b'{"a": 1}')]
    budget, _ = _budget()
    assert asyncio.run(_async_get(budget, url)) == {"a": 1}
    assert script.hits == 2


@pytest.mark.parametrize("side", ["sync", "async"])
def test_both_sides_log_and_count_a_retry(
    server: tuple[str, Script], side: str, caplog: pytest.LogCaptureFixture
) -> None:
    url, script = server
    script.responses = [(503, {**JSON, "Retry-After": "0"}, b"{}"), (200, JSON, b'{"a": 1}')]
    budget, _ = _budget()
    with caplog.at_level(logging.INFO, logger="connectors.http"):
        if side == "sync":
            with budget.client(url) as client:
                assert client.get("/x").json() == {"a": 1}
        else:
            assert asyncio.run(_async_get(budget, url)) == {"a": 1}
    retries = [r.getMessage() for r in caplog.records if r.getMessage().startswith("retrying")]
    assert retries == ["retrying GET /x in 0.0s (503)"]
    assert budget.stats.retries == 1 and budget.stats.throttled == 1 and budget.stats.by_status == {503: 1, 200: 1}


def test_retry_after_http_date() -> None:
    from email.utils import formatdate

    response = httpx.Response(429, headers={"Retry-After": formatdate(time.time() + 30, usegmt=True)})
    assert 25 <= (retry_after_seconds(response) or 0) <= 31
    assert retry_after_seconds(httpx.Response(429, headers={"Retry-After": "7"})) == 7


def test_local_budget_spaces_requests_at_the_rate() -> None:
    bucket = LocalBudget(f"rate-{time.monotonic_ns()}", rate=10.0, burst=1)
    waits = [bucket.reserve() for _ in range(5)]
    # Reserved back to back: each waits one more interval (0.1 s) than the one before.
    assert waits[0] == 0.0
    assert [round(b - a, 2) for a, b in zip(waits, waits[1:], strict=False)] == [0.1, 0.1, 0.1, 0.1]


def test_throttle_blocks_every_client_of_the_key(server: tuple[str, Script]) -> None:
    url, script = server
    key = f"shared-{time.monotonic_ns()}"
    one = HttpBudget(key, sleep=lambda s: None)
    two = make_budget(key, rate=None)
    script.responses = [(429, {"Retry-After": "30"}, b""), (200, JSON, b"{}")]
    with one.client(url) as client:
        client.get("/x")
    assert two.reserve() > 25  # the other client of the same key now waits too


def test_redis_budget_is_shared_between_workers(redis_url: str) -> None:
    key = f"redis-{time.monotonic_ns()}"
    a = make_budget(key, rate=5.0, burst=1, redis_url=redis_url)
    b = make_budget(key, rate=5.0, burst=1, redis_url=redis_url)
    waits = [a.reserve(), b.reserve(), a.reserve(), b.reserve()]
    assert waits[0] == 0.0
    gaps = [round(y - x, 1) for x, y in zip(waits, waits[1:], strict=False)]
    assert gaps == [0.2, 0.2, 0.2]  # one bucket: the two "workers" share 5 requests/s
    b.block(10)
    assert a.reserve() > 9


def test_stats_are_json_friendly(server: tuple[str, Script]) -> None:
    url, script = server
    script.responses = [(200, JSON, b"{}")]
    budget, _ = _budget()
    with budget.client(url) as client:
        client.get("/x")
    json.dumps(budget.stats.__dict__)
