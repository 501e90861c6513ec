"""The `tacit` command line (Typer + Rich).

A configuration error or a bad argument is one line on stderr and exit status 2, never a
traceback (set TACIT_DEBUG=1 to see one). Every `--json` output is one JSON document.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.table import Table

from connectors.registry import connector_class
from db import models
from ingestion.api.views import collect_status, list_events, source_detail
from ingestion.corpus.events import pending_event_ids, stage_import
from ingestion.corpus.runner import run_sync
from ingestion.processing.pipeline import process_team
from ingestion.worker.tasks import process_event, set_context, sync_source
from tacit.cli.export import export_rows
from tacit.cli.progress import console, out, progress_bar
from tacit.config import ConfigError
from tacit.context import Context
from tacit.errors import Refused, UsageError
from tacit.multiproc import prepare_multiprocess_metrics
from tacit.secrets import rotate_all
from training import registry as adapter_registry
from training.serving.vllm import sync_team_quietly

# A deprecation inside transformers that PEFT triggers on every model it wraps: noise to a user.
warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.*", category=FutureWarning)

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Tacit: learn a team's private context into its own LoRA adapter.")
sources_app = typer.Typer(no_args_is_help=True, help="Configured sources.")
adapters_app = typer.Typer(no_args_is_help=True, help="A team's adapter versions.")
events_app = typer.Typer(no_args_is_help=True, help="Pushed webhook and import events.")
export_app = typer.Typer(no_args_is_help=True, help="Export the corpus and examples as JSONL on stdout.")
app.add_typer(sources_app, name="sources")
app.add_typer(adapters_app, name="adapters")
app.add_typer(events_app, name="events")
app.add_typer(export_app, name="export")

_state: dict[str, Any] = {"config": None}


def fail(message: str, code: int = 1) -> NoReturn:
    console.print(f"[red]tacit:[/red] {message}", highlight=False, markup=True)
    raise typer.Exit(code)


@app.callback()
def _root(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Path to tacit.toml.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")] = False,
) -> None:
    _state["config"] = config
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def context(migrate: bool = True):  # type: ignore[no-untyped-def]

    ctx = Context.load(_state["config"], migrate_db=migrate)
    set_context(ctx)
    return ctx


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, default=str, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------------------- init / status
TEMPLATE = """\
# Tacit configuration. ${VAR} is read from the environment; see the README.
[storage]
database_url = "sqlite:///.tacit/tacit.db"
data_dir = ".tacit"

[queue]
broker_url = "memory://"          # "redis://localhost:6379/0" to run real workers

[[teams]]
name = "platform"
base_model = "smollm2-135m"

[[sources]]
name = "assistant"
kind = "webhook"                  # pushed to: POST /webhooks/assistant, or tacit import
team = "platform"
# secret = "${ASSISTANT_WEBHOOK_SECRET}"
"""


@app.command()
def init(force: Annotated[bool, typer.Option(help="Overwrite an existing tacit.toml.")] = False) -> None:
    """Write a starter tacit.toml here and create the database."""
    path = Path(_state["config"] or "tacit.toml")
    if path.exists() and not force:
        fail(f"{path} exists (use --force to overwrite)", 2)
    path.write_text(TEMPLATE, encoding="utf-8")
    _state["config"] = path
    ctx = context()
    out.print(f"wrote {path}; database ready at {ctx.database_url}")


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False) -> None:
    """Teams, sources, corpus sizes, adapters and pending events."""

    ctx = context()
    data = collect_status(ctx)
    if as_json:
        emit_json(data)
        return
    table = Table(title="Teams")
    for col in ("team", "base model", "documents", "interactions", "chunks", "examples", "active adapter"):
        table.add_column(col)
    for t in data["teams"]:
        table.add_row(t["name"], t["base_model"], str(t["documents"]), str(t["interactions"]), str(t["chunks"]),
                      str(t["examples"]), str(t["active_adapter"] or "-"))
    out.print(table)
    table = Table(title="Sources")
    for col in ("source", "kind", "team", "status", "last sync", "documents", "last error"):
        table.add_column(col)
    for s in data["sources"]:
        table.add_row(s["name"], s["kind"], s["team"], s["status"], str(s["last_synced_at"] or "-"),
                      str(s["documents"]), (s["last_error"] or "")[:80])
    out.print(table)
    out.print(f"events: {data['events']}")


# ---------------------------------------------------------------------------- sources
@sources_app.command("list")
def sources_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List configured sources."""

    data = collect_status(context())["sources"]
    if as_json:
        emit_json(data)
        return
    table = Table()
    for col in ("source", "kind", "team", "status", "schedule", "last sync"):
        table.add_column(col)
    for s in data:
        table.add_row(s["name"], s["kind"], s["team"], s["status"], s["schedule"] or "-", str(s["last_synced_at"] or "-"))
    out.print(table)


@sources_app.command("show")
def sources_show(name: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """One source: settings (secrets hidden), checkpoint, state and recent runs."""

    data = source_detail(context(), name)
    if as_json:
        emit_json(data)
        return
    out.print_json(json.dumps(data, default=str))


@sources_app.command("rotate-key")
def sources_rotate_key() -> None:
    """Re-encrypt stored secrets with the first key of TACIT_SECRET_KEY (after adding a new key)."""

    ctx = context()
    with ctx.session() as session:
        changed = rotate_all(session, ctx.secrets)
    out.print(f"re-encrypted {changed} stored secrets with the newest key")


# ---------------------------------------------------------------------------- ingestion
@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="JSONL file in the record format.")],
    source: Annotated[str, typer.Option("--source", "-s", help="A source of kind webhook.")],
) -> None:
    """Read records from a JSONL file into a push source (kind webhook)."""

    ctx = context()
    cfg = ctx.source_config(source)
    if cfg.kind != "webhook":
        raise UsageError(f"source {source!r} is of kind {cfg.kind!r}; import needs a source of kind webhook")
    if not file.is_file():
        raise UsageError(f"{file}: no such file")
    ids = stage_import(ctx, source, file)
    if not ids:
        out.print(f"{file}: already imported into {source}; nothing new")
        return
    totals: dict[str, int] = {}
    with progress_bar(f"importing {file.name}", total=len(ids)) as update:
        for i, event_id in enumerate(ids, 1):
            result = process_event.delay(event_id)
            if ctx.config.queue.eager:
                for key, value in result.get().items():
                    if isinstance(value, int) and not isinstance(value, bool) and key not in ("event", "run_id"):
                        totals[key] = totals.get(key, 0) + value
            update(completed=i)
    if ctx.config.queue.eager:
        if totals.get("documents_written") or totals.get("interactions_written") or totals.get("tombstones"):
            _maybe_process(ctx, cfg.team)
        out.print(f"imported {file} into {source}: {totals.get('documents_written', 0)} documents written, "
                  f"{totals.get('documents_unchanged', 0)} unchanged, {totals.get('interactions_written', 0)} "
                  f"interactions, {totals.get('tombstones', 0)} tombstones, {totals.get('failures', 0)} failures")
    else:
        out.print(f"queued {len(ids)} import batches of {file} for {source} on the workers")


def _maybe_process(ctx: Any, team: str) -> None:
    """Eager mode: processing follows ingestion."""
    process_team(ctx, team)


@app.command()
def sync(
    sources: Annotated[list[str] | None, typer.Argument(help="Sources to sync (default: all pull sources).")] = None,
    full: Annotated[bool, typer.Option("--full", help="Ignore checkpoints; read everything again.")] = False,
) -> None:
    """Pull new and changed items from sources into the corpus."""

    ctx = context()
    names = sources or [s.name for s in ctx.config.sources if s.enabled and not connector_class(s.kind).push_only]
    for name in names:
        ctx.source_config(name)
    if not names:
        out.print("no pull sources are configured (webhook sources are pushed to)")
        return
    if not ctx.config.queue.eager:
        for name in names:
            sync_source.delay(name, full)
        out.print(f"queued {len(names)} syncs on the workers: {', '.join(names)}")
        return
    failed = False
    teams: set[str] = set()
    for name in names:
        with progress_bar(f"syncing {name}") as update:
            summary = run_sync(ctx, name, full=full, progress=lambda s, u=update, n=name: u(
                completed=s.records, description=f"syncing {n}: {s.records} records, {s.failures} failures"))
        if summary.status != "succeeded":
            failed = True
            console.print(f"[red]{name}: sync failed:[/red] {summary.error}", highlight=False)
        else:
            out.print(f"{name}: {summary.documents_written} documents written, {summary.documents_unchanged} "
                      f"unchanged, {summary.interactions_written} interactions, {summary.tombstones} tombstones, "
                      f"{summary.failures} failures, {summary.requests} requests")
        if summary.changed:
            teams.add(ctx.config.source(name).team)
    for team in sorted(teams):
        _maybe_process(ctx, team)
    if failed:
        raise typer.Exit(1)


@app.command()
def process(team: Annotated[str | None, typer.Option("--team", help="Only this team.")] = None) -> None:
    """Chunk new and changed documents and build training examples."""
    ctx = context()
    teams = [team] if team else [t.name for t in ctx.config.teams]
    for name in teams:
        ctx.config.team(name)
        with progress_bar(f"processing {name}") as update:
            result = process_team(ctx, name, progress=update)
        # Records of this team's sources that feed other teams were processed for them too.
        for label, counts in [(name, result), *(result.pop("other_teams", None) or {}).items()]:
            out.print(f"{label}: " + ", ".join(f"{k} {v}" for k, v in counts.items() if k != "team"))


# ---------------------------------------------------------------------------- training
@app.command()
def train(team: str, force: Annotated[bool, typer.Option("--force", help="Train even if not due.")] = False) -> None:
    """Refresh a team's adapter: train, evaluate, promote if better."""
    from training import service  # imported when a command needs it: torch takes seconds to load

    ctx = context()
    ctx.config.team(team)
    result = service.refresh_adapter(ctx, team, force=force, console=console)
    out.print_json(json.dumps(result, default=str))


@app.command()
def ask(team: str, question: str,
        base: Annotated[bool, typer.Option("--base", help="Answer with the base model, no adapter.")] = False,
        max_new_tokens: Annotated[int, typer.Option(help="Longest answer.")] = 128) -> None:
    """Answer a question with the team's active adapter (or the base model)."""
    from training import service  # imported when a command needs it: torch takes seconds to load

    ctx = context()
    ctx.config.team(team)
    out.print(service.ask(ctx, team, question, base=base, max_new_tokens=max_new_tokens))


@adapters_app.command("list")
def adapters_list(team: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """A team's adapter versions."""
    ctx = context()
    ctx.config.team(team)
    rows = adapter_registry.list_versions(ctx, team)
    if as_json:
        emit_json(rows)
        return
    table = Table()
    for col in ("version", "status", "parent", "base model", "team QA", "forgetting", "created", "reason"):
        table.add_column(col)
    for r in rows:
        m = r.get("metrics") or {}
        table.add_row(str(r["version"]), r["status"], str(r.get("parent_version") or "-"), r["base_model"],
                      str(m.get("qa_after", "-")), str(m.get("forgetting", "-")), str(r["created_at"])[:19],
                      (r.get("reason") or "")[:60])
    out.print(table)


@adapters_app.command("show")
def adapters_show(team: str, version: Annotated[int | None, typer.Argument()] = None) -> None:
    """One version (the active one by default): metrics, lineage, flags."""
    ctx = context()
    ctx.config.team(team)
    out.print_json(json.dumps(adapter_registry.show_version(ctx, team, version), default=str))


ForceOption = Annotated[bool, typer.Option("--force", help="Even if the version carries documents deleted at "
                                                           "their source (recorded as an override).")]


def _warn(message: str) -> None:
    console.print(f"[yellow]warning:[/yellow] {message}", highlight=False)


@adapters_app.command("promote")
def adapters_promote(team: str, version: int, force: ForceOption = False) -> None:
    """Make a version the active one."""
    ctx = context()
    ctx.config.team(team)
    out.print(adapter_registry.promote(ctx, team, version, reason="promoted by hand", force=force, warn=_warn))
    _sync_inference(ctx, team)


@adapters_app.command("rollback")
def adapters_rollback(team: str, force: ForceOption = False) -> None:
    """Go back to the previously active version."""
    ctx = context()
    ctx.config.team(team)
    out.print(adapter_registry.rollback(ctx, team, force=force, warn=_warn))
    _sync_inference(ctx, team)


def _sync_inference(ctx: Any, team: str) -> None:
    """With `[inference] backend = "vllm"`, load the now active version into vLLM."""
    synced = sync_team_quietly(ctx, team)
    if synced:
        out.print(synced)


@adapters_app.command("export")
def adapters_export(team: str, dest: Annotated[Path, typer.Argument(help="Folder to write.")],
                    version: Annotated[int | None, typer.Option(help="Default: the active one.")] = None,
                    force: ForceOption = False) -> None:
    """Export a version as a PEFT directory that vLLM and LoRAX load."""
    ctx = context()
    ctx.config.team(team)
    out.print(str(adapter_registry.export(ctx, team, dest, version, force=force, warn=_warn)))


# ---------------------------------------------------------------------------- export
def _export(what: str, team: str, include_deleted: bool = False) -> None:

    ctx = context()
    ctx.config.team(team)
    for row in export_rows(ctx, what, team, include_deleted=include_deleted):
        sys.stdout.write(json.dumps(row, default=str, ensure_ascii=False) + "\n")


@export_app.command("documents")
def export_documents(team: Annotated[str, typer.Option("--team")],
                     include_deleted: Annotated[bool, typer.Option("--include-deleted")] = False) -> None:
    """Live documents (add tombstoned ones with --include-deleted)."""
    _export("documents", team, include_deleted)


@export_app.command("interactions")
def export_interactions(team: Annotated[str, typer.Option("--team")],
                        include_deleted: Annotated[bool, typer.Option("--include-deleted")] = False) -> None:
    """Comments, threads, chats and feedback."""
    _export("interactions", team, include_deleted)


@export_app.command("chunks")
def export_chunks(team: Annotated[str, typer.Option("--team")]) -> None:
    """Live chunks with their heading paths."""
    _export("chunks", team)


@export_app.command("examples")
def export_examples(team: Annotated[str, typer.Option("--team")]) -> None:
    """Training examples: kind, payload and provenance."""
    _export("examples", team)


# ---------------------------------------------------------------------------- events
@events_app.command("list")
def events_list(
    status_: Annotated[str | None, typer.Option("--status", help="pending, processed, rejected or failed.")] = None,
    limit: Annotated[int, typer.Option(help="Newest first, at most this many.")] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Recent events with their status."""

    rows = list_events(context(), status=status_, limit=limit)
    if as_json:
        emit_json(rows)
        return
    table = Table()
    for col in ("id", "source", "channel", "delivery", "status", "received", "error"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r["id"]), r["source"], r["channel"], r["delivery_id"][:40], r["status"],
                      str(r["received_at"])[:19], (r["error"] or "")[:60])
    out.print(table)


@events_app.command("replay")
def events_replay(
    ids: Annotated[list[int] | None, typer.Argument(help="Event ids (default: every pending and failed one).")] = None,
    source: Annotated[str | None, typer.Option("--source")] = None,
) -> None:
    """Process pending and failed events again (processed ones are skipped: idempotent)."""

    ctx = context()
    chosen = ids or pending_event_ids(ctx, include_failed=True, source=source)
    if ids:
        with ctx.session() as session:
            for event_id in ids:
                event = session.get(models.WebhookEvent, event_id)
                if event is None:
                    raise UsageError(f"no event {event_id}")
                if event.status == "failed":
                    event.status = "pending"
    for event_id in chosen:
        process_event.delay(event_id)
    out.print(f"replayed {len(chosen)} events" + ("" if ctx.config.queue.eager else " (queued on the workers)"))


# ---------------------------------------------------------------------------- services
@app.command()
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
    if _state["config"]:
        os.environ["TACIT_CONFIG"] = str(Path(_state["config"]).resolve())
    elif ctx.config.path:
        os.environ["TACIT_CONFIG"] = str(ctx.config.path)
    uvicorn.run("ingestion.api.app:create_app", factory=True, host=host or ctx.config.api.host,
                port=port or ctx.config.api.port, workers=workers, log_level="info")


@app.command()
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
    argv = ["worker", "-Q", queues, "--loglevel=INFO", f"--concurrency={concurrency}", "--without-gossip",
            "--without-mingle"]
    if beat:
        schedule = schedule or ctx.data_dir / "beat" / "schedule"
        schedule.parent.mkdir(parents=True, exist_ok=True)
        argv += ["-B", f"--schedule-filename={schedule}"]
    celery_app.worker_main(argv)


@app.command()
def demo(quick: Annotated[bool, typer.Option("--quick", help="tiny-random model, fewer steps.")] = False) -> None:
    """Run the whole story on a bundled sample company."""
    from tacit.cli.demo import run_demo

    run_demo(_state["config"], quick=quick, console=console, out=out)


# ---------------------------------------------------------------------------- entry point
def main(argv: list[str] | None = None) -> None:
    try:
        # Outside standalone mode click returns a command's `typer.Exit(code)` instead of raising it.
        code = app(args=argv, prog_name="tacit", standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except ConfigError as exc:
        _one_line(str(exc), 2)
    except Refused as exc:
        _one_line(str(exc), 5)
    except UsageError as exc:
        _one_line(str(exc).strip("'\""), 2)
    except KeyboardInterrupt:
        _one_line("interrupted", 130)
    except Exception as exc:
        # Typer bundles its own copy of click; recognise its exceptions by shape.
        if type(exc).__name__ == "Abort":
            _one_line("aborted", 1)
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            _one_line(exc.format_message(), 2)
        if os.environ.get("TACIT_DEBUG"):
            raise
        _one_line(f"{type(exc).__name__}: {exc}", 1)
    sys.exit(0)


def _one_line(message: str, code: int) -> NoReturn:
    message = " ".join(message.split())
    sys.stderr.write(f"tacit: {message}\n")
    sys.exit(code)


if __name__ == "__main__":
    main()
