"""`tacit doctor`: is this installation ready for production? One row per thing it depends on.

It checks, without changing anything: the database (it answers, and its schema is at the newest
migration), the secret key, the broker (when one is configured), each team's base model (loadable
here), each enabled source (its credentials, through the connector's own cheap authenticated
call), and the public URL the vendors call back (it answers `/healthz` like `tacit serve`).
Exit status 0 when every check passes; 1 otherwise, with one line per failure on stderr.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import httpx
import typer
from rich.markup import escape
from rich.table import Table

from connectors.base import AuthError, ConnectorError
from connectors.http import RetryPolicy
from db.session import schema_revisions
from ingestion.api.app import broker_status
from tacit.cli.progress import out
from tacit.cli.shared import JsonOption, context, emit_json
from tacit.context import Context
from training import base_models

doctor_app = typer.Typer()

#: A source check is one cheap call: few retries and a short deadline, so a dead host is reported
#: in seconds rather than after the sync's patient back-off.
CHECK_POLICY = RetryPolicy(max_attempts=2, backoff_cap=1.0, deadline=20.0)
TIMEOUT_S = 10.0


@dataclass
class Check:
    check: str
    status: str  # ok, fail or skip
    detail: str


def _run(name: str, probe: Callable[[], str]) -> Check:
    """`probe` returns what it found; any exception is that check's failure, in one line."""
    try:
        return Check(name, "ok", probe())
    except Skipped as exc:
        return Check(name, "skip", str(exc))
    except Exception as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        return Check(name, "fail", message if isinstance(exc, Problem) else f"{type(exc).__name__}: {message}")


class Problem(Exception):
    """A failed check whose message says it all."""


class Skipped(Exception):
    """A check that does not apply to this configuration."""


def check_database(ctx: Context) -> str:
    current, head = schema_revisions(ctx.database_url)
    if current != head:
        raise Problem(f"schema at {current or 'no migration'}, newest is {head}: run any tacit command "
                      f"(it migrates), e.g. `tacit status`")
    return f"{ctx.database_url.split('://')[0]} at migration {head}"


def check_secret_key(ctx: Context) -> str:
    ctx.secrets  # noqa: B018  (raises when TACIT_SECRET_KEY is needed and missing)
    return "TACIT_SECRET_KEY set" if os.environ.get("TACIT_SECRET_KEY") else "local key file (embedded mode)"


def check_broker(ctx: Context) -> str:
    if ctx.config.queue.eager:
        raise Skipped("memory:// (in-process, no workers)")
    found = broker_status(ctx.config.queue.broker_url)
    if found != "ok":
        raise Problem(f"{_redact(ctx.config.queue.broker_url)}: {found}")
    return f"{_redact(ctx.config.queue.broker_url)} answers"


def _redact(url: str) -> str:
    """A URL without its password."""
    parsed = httpx.URL(url)
    return str(parsed.copy_with(password="********")) if parsed.password else url


def check_base_model(ctx: Context, name: str) -> str:
    return base_models.check(name, ctx.data_dir)


def check_source(ctx: Context, name: str) -> str:
    connector = ctx.connector(name, policy=CHECK_POLICY, timeout=TIMEOUT_S)
    if connector.push_only:
        return f"{connector.kind}: pushed to, settings valid (nothing to call)"
    started = time.monotonic()
    try:
        connector.check()
    except AuthError as exc:
        raise Problem(f"{connector.kind}: credentials refused: {exc}") from None
    except (ConnectorError, httpx.HTTPError) as exc:
        raise Problem(f"{connector.kind}: not reachable: {exc or type(exc).__name__}") from None
    finally:
        close = getattr(connector, "close", None)
        if callable(close):
            close()
    took = (time.monotonic() - started) * 1000
    return f"{connector.kind}: credentials accepted ({connector.http.stats.requests} requests, {took:.0f} ms)"


def check_public_url(ctx: Context) -> str:
    base = ctx.config.api.public_url
    if not base:
        raise Skipped("[api] public_url not set: no vendor calls back (webhooks and change notifications off)")
    url = base.rstrip("/") + "/healthz"
    try:
        response = httpx.get(url, timeout=TIMEOUT_S, follow_redirects=True)
    except httpx.HTTPError as exc:
        raise Problem(f"{url}: not reachable: {exc or type(exc).__name__}") from None
    try:
        healthy = response.status_code == 200 and response.json().get("status") == "ok"
    except ValueError:
        healthy = False
    if not healthy:
        raise Problem(f"{url}: answered {response.status_code}, not Tacit's health check")
    return f"{url} answers"


def diagnose(ctx: Context) -> list[Check]:
    checks = [_run("database", lambda: check_database(ctx)), _run("secret key", lambda: check_secret_key(ctx)),
              _run("broker", lambda: check_broker(ctx))]
    for model in dict.fromkeys(t.base_model for t in ctx.config.teams):
        checks.append(_run(f"base model {model}", lambda m=model: check_base_model(ctx, m)))  # type: ignore[misc]
    for source in ctx.config.sources:
        if source.enabled:
            checks.append(_run(f"source {source.name}", lambda n=source.name: check_source(ctx, n)))  # type: ignore[misc]
    checks.append(_run("public URL", lambda: check_public_url(ctx)))
    return checks


@doctor_app.command()
def doctor(as_json: JsonOption = False) -> None:
    """Check the database, broker, base models, each source's credentials and the public URL.

    Exit status 0 when all pass; 1 with one line per failure on stderr otherwise.
    """
    ctx = context(migrate=False)  # a doctor looks; it does not migrate
    checks = diagnose(ctx)
    failed = [c for c in checks if c.status == "fail"]
    if as_json:
        emit_json({"ok": not failed, "checks": [asdict(c) for c in checks]})
    else:
        table = Table("check", "status", "detail")
        colour = {"ok": "green", "fail": "red", "skip": "yellow"}
        for c in checks:
            table.add_row(escape(c.check), f"[{colour[c.status]}]{c.status}[/]", escape(c.detail))
        out.print(table)
    for c in failed:
        sys.stderr.write(f"tacit doctor: {c.check}: {c.detail}\n")
    if failed:
        raise typer.Exit(1)
