"""`tacit serve` and `tacit worker`: the long-running processes of a deployment."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer

from tacit.cli.shared import context, state
from tacit.errors import UsageError
from tacit.logs import ENV as LOG_FORMAT_ENV
from tacit.logs import configure_logging
from tacit.multiproc import prepare_multiprocess_metrics

services_app = typer.Typer()


@services_app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Default: [api] host.")] = None,
    port: Annotated[int | None, typer.Option(help="Default: [api] port.")] = None,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
) -> None:
    """Serve the webhook endpoints, health, metrics and the admin API (uvicorn)."""
    import uvicorn

    if workers > 1:
        # Before prometheus_client is imported: each worker process then counts into files that
        # /metrics sums, whichever process answers the scrape.
        prepare_multiprocess_metrics()
    ctx = context()
    if state["config"]:
        os.environ["TACIT_CONFIG"] = str(Path(state["config"]).resolve())
    elif ctx.config.path:
        os.environ["TACIT_CONFIG"] = str(ctx.config.path)
    json_logs = state["log_format"] == "json"
    os.environ[LOG_FORMAT_ENV] = state["log_format"]  # worker processes set up their logging from it
    # JSON lines: uvicorn's loggers keep their levels but write through the root's JSON handler.
    extra = {"log_config": None} if json_logs else {}
    uvicorn.run("ingestion.api.app:create_app", factory=True, host=host or ctx.config.api.host,
                port=port or ctx.config.api.port, workers=workers, log_level="info", **extra)


@services_app.command()
def worker(
    queues: Annotated[str, typer.Option(help="Comma-separated queues.")] = "sync,process,train",
    concurrency: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    beat: Annotated[bool, typer.Option(help="Also run the schedule (Celery beat).")] = False,
    schedule: Annotated[Path | None, typer.Option(help="Beat's schedule file (default: <data_dir>/beat/schedule); "
                                                       "its folder must be writable.")] = None,
) -> None:
    """Run a Celery worker on the configured broker."""
    ctx = context()
    if ctx.config.queue.eager:
        raise UsageError("the broker is memory:// (in-process); set [queue] broker_url to a Redis URL to run workers")
    if ctx.config.path:
        os.environ["TACIT_CONFIG"] = str(ctx.config.path)

    # Imported here: the module builds its Celery app from the configuration found at import.
    from ingestion.worker.celery_app import QUEUES, configure
    from ingestion.worker.celery_app import app as celery_app

    for q in queues.split(","):
        if q not in QUEUES:
            raise UsageError(f"unknown queue {q!r} (known: {', '.join(QUEUES)})")
    configure(celery_app, ctx.config)
    if state["log_format"] == "json":
        from celery.signals import setup_logging

        # A receiver of `setup_logging` replaces Celery's own set-up: its records become JSON lines.
        @setup_logging.connect(weak=False)
        def _json_logs(loglevel: int | str | None = None, **_: object) -> None:
            configure_logging(logging.getLevelName(loglevel) if isinstance(loglevel, str) else loglevel or logging.INFO,
                              "json")

    argv = ["worker", "-Q", queues, "--loglevel=INFO", f"--concurrency={concurrency}", "--without-gossip",
            "--without-mingle"]
    if beat:
        schedule = schedule or ctx.data_dir / "beat" / "schedule"
        schedule.parent.mkdir(parents=True, exist_ok=True)
        argv += ["-B", f"--schedule-filename={schedule}"]
    celery_app.worker_main(argv)
