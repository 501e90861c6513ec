"""Webhook intake: sustained accepted events per second and p99 latency, beside a bare FastAPI endpoint.

Every server is a uvicorn process on loopback, driven by the same bounded load generator
(httpx, a fixed number of signed deliveries, a fixed concurrency). The anchor is a FastAPI app
whose endpoint reads the body and answers 202 doing nothing else: the ceiling of this stack on
this machine, measured in the same run. For Tacit, every 202 must be a committed row: the
benchmark counts `webhook_events` afterwards and fails if rows stored != 202s answered.

    .venv/bin/python benchmarks/bench_webhooks.py [--requests 2000] [--concurrency 16]

Targets: `embedded` (SQLite, memory:// broker, the app's background worker processing while
the load runs) always; `postgres+redis` (events queued on Redis, as in production, with no
worker consuming, so only intake is measured) when TACIT_TEST_POSTGRES_URL and
TACIT_TEST_REDIS_URL are set (`source .test-services/env`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from connectors.sandbox.server import free_port, wait_healthy

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def bare_app() -> FastAPI:
    app = FastAPI()

    @app.post("/webhooks/{source}")
    async def receive(source: str, request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse({"status": "accepted"}, status_code=202)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app



def start(cmd: list[str], port: int, log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    try:
        wait_healthy(proc, port, log, timeout=90)
    except RuntimeError as exc:
        proc.kill()
        raise SystemExit(str(exc)) from None
    return proc


def payload(i: int) -> bytes:
    return json.dumps({"type": "interaction", "external_id": f"chat-{i}", "kind": "feedback", "rating": -1,
                       "correction": "Use the release pipeline.",
                       "messages": [{"role": "user", "text": f"How do I deploy service {i}?"},
                                    {"role": "assistant", "text": "Run make deploy."}]}).encode()


async def drive(port: int, requests: int, concurrency: int, prefix: str) -> dict[str, float]:
    """Send `requests` signed deliveries with `concurrency` in flight; returns rate and latencies."""
    from connectors.webhook.signatures import sign_headers

    bodies = [payload(i) for i in range(requests)]
    latencies: list[float] = []
    codes: dict[int, int] = {}
    next_index = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=60) as client:

        async def one_worker() -> None:
            nonlocal next_index
            while next_index < requests:
                i = next_index
                next_index += 1
                headers = {"content-type": "application/json",
                           **sign_headers(SECRET, f"{prefix}-{i}", bodies[i])}
                t0 = time.perf_counter()
                r = await client.post("/webhooks/assistant", content=bodies[i], headers=headers)
                latencies.append(time.perf_counter() - t0)
                codes[r.status_code] = codes.get(r.status_code, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(one_worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {"elapsed": elapsed, "accepted": codes.get(202, 0), "other": sum(v for k, v in codes.items() if k != 202),
            "rate": codes.get(202, 0) / elapsed, "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]}


def measure(name: str, cmd: list[str], port: int, env: dict[str, str], work: Path, args: argparse.Namespace,
            count_rows: bool) -> dict[str, float]:
    proc = start(cmd, port, work / f"{name}.log", env)
    try:
        run = uuid.uuid4().hex[:8]
        asyncio.run(drive(port, args.warmup, args.concurrency, f"warm-{run}"))
        result = asyncio.run(drive(port, args.requests, args.concurrency, f"{name}-{run}"))
    finally:
        proc.terminate()
        proc.wait(30)
    if count_rows:
        from sqlalchemy import func, select

        from db import models
        from tacit.config import load_config
        from tacit.context import Context

        ctx = Context(load_config(work / f"{name}.toml"), migrate_db=False)
        with ctx.session() as session:
            rows = session.scalar(select(func.count()).select_from(models.WebhookEvent)
                                  .where(models.WebhookEvent.delivery_id.like(f"{name}-{run}-%")))
        result["rows"] = rows or 0
        if rows != result["accepted"]:
            raise SystemExit(f"{name}: LOST EVENTS: {result['accepted']} answered 202, {rows} rows stored")
    return result


def tacit_config(work: Path, name: str, database_url: str, broker_url: str) -> Path:
    path = work / f"{name}.toml"
    path.write_text(
        f'[storage]\ndatabase_url = "{database_url}"\ndata_dir = ".tacit-{name}"\n'
        f'[queue]\nbroker_url = "{broker_url}"\n[api]\nmax_backlog = 1000000\n'
        '[[teams]]\nname = "platform"\nbase_model = "tiny-random"\n'
        f'[[sources]]\nname = "assistant"\nkind = "webhook"\nteam = "platform"\nsecret = "{SECRET}"\n',
        encoding="utf-8")
    return path


def claim_redis_db(url: str) -> str | None:
    """A database of the Redis server that nobody else holds (claimed with SET NX, flushed after use)."""
    import redis

    base = url.rsplit("/", 1)[0]
    for db in range(8, 16):
        client = redis.Redis.from_url(f"{base}/{db}")
        if client.set("tacit-test-claim", "bench", nx=True, ex=900):
            return f"{base}/{db}"
    return None


def fresh_postgres(base: str) -> str:
    from sqlalchemy import create_engine, text

    admin = create_engine(os.environ.get("TACIT_TEST_PG_ADMIN_URL", base), isolation_level="AUTOCOMMIT")
    name = f"bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return base.rsplit("/", 1)[0] + "/" + name


def drop_postgres(url: str) -> None:
    from sqlalchemy import create_engine, text

    from db.session import get_engine

    get_engine(url).dispose()
    admin = create_engine(os.environ.get("TACIT_TEST_PG_ADMIN_URL", url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--serve-bare", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        import uvicorn

        uvicorn.run(bare_app(), host="127.0.0.1", port=args.serve_bare, log_level="info")
        return

    env = {**os.environ, "TACIT_SECRET_KEY": os.environ.get("TACIT_SECRET_KEY",
                                                              "ZmRlYWRiZWVmZGVhZGJlZWZkZWFkYmVlZmRlYWRiZWU=")}
    os.environ.update(env)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        port = free_port()
        results["bare FastAPI (ceiling)"] = measure(
            "bare", [sys.executable, __file__, "--serve-bare", str(port)], port, env, work, args, False)

        from tacit.config import load_config
        from tacit.context import Context

        targets = [("embedded", f"sqlite:///{work / 'bench.db'}", "memory://")]
        pg, redis_url = os.environ.get("TACIT_TEST_POSTGRES_URL"), os.environ.get("TACIT_TEST_REDIS_URL")
        pg_url = fresh_postgres(pg) if pg and redis_url else None
        claimed = claim_redis_db(redis_url) if pg_url and redis_url else None
        if pg_url and claimed:
            # A Redis database of its own, so no other worker consumes the queued events.
            targets.append(("postgres+redis", pg_url, claimed))
        try:
            for name, db_url, broker in targets:
                path = tacit_config(work, name, db_url, broker)
                Context(load_config(path))  # migrate before serving
                port = free_port()
                cmd = [sys.executable, "-m", "tacit.cli", "--config", str(path), "serve", "--port", str(port)]
                results[f"tacit {name}"] = measure(name, cmd, port, env, work, args, True)
                if broker.startswith("redis://"):
                    import redis

                    redis.Redis.from_url(broker).flushdb()
        finally:
            if pg_url:
                drop_postgres(pg_url)

    ceiling = results["bare FastAPI (ceiling)"]
    print(f"\nwebhook intake on loopback: {args.requests} signed deliveries per target, "
          f"{args.concurrency} in flight, after {args.warmup} warm-up")
    print(f"{'target':<26}{'accepted/s':>12}{'p50 ms':>9}{'p99 ms':>9}{'202s':>7}{'rows':>7}{'other':>7}"
          f"{'vs ceiling':>12}")
    for name, r in results.items():
        rows = str(int(r["rows"])) if "rows" in r else "-"
        print(f"{name:<26}{r['rate']:>12.0f}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}{int(r['accepted']):>7}"
              f"{rows:>7}{int(r['other']):>7}{r['rate'] / ceiling['rate']:>11.0%}")
    print("zero lost events: rows stored == 202s answered for every Tacit target")


if __name__ == "__main__":
    main()
