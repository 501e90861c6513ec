"""`tacit import`, `tacit sync` and `tacit process`: records into the corpus, then examples from it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from connectors.registry import connector_class
from ingestion.corpus.events import stage_import
from ingestion.corpus.runner import run_sync
from ingestion.processing.pipeline import process_team
from ingestion.worker.tasks import process_event, sync_source
from tacit.cli.progress import console, out, progress_bar
from tacit.cli.shared import DeprecatedTeamOption, JsonOption, context, emit_json, pick_team
from tacit.errors import UsageError

intake_app = typer.Typer()


@intake_app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="JSONL file in the record format.")],
    source: Annotated[str, typer.Option("--source", "-s", help="A source of kind webhook.")],
    as_json: JsonOption = False,
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
        if as_json:
            emit_json({"source": source, "file": str(file), "batches": 0, "queued": False, "totals": {}})
        else:
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
    if as_json:
        emit_json({"source": source, "file": str(file), "batches": len(ids), "queued": not ctx.config.queue.eager,
                   "totals": totals})
    elif ctx.config.queue.eager:
        out.print(f"imported {file} into {source}: {totals.get('documents_written', 0)} documents written, "
                  f"{totals.get('documents_unchanged', 0)} unchanged, {totals.get('interactions_written', 0)} "
                  f"interactions, {totals.get('tombstones', 0)} tombstones, {totals.get('failures', 0)} failures")
    else:
        out.print(f"queued {len(ids)} import batches of {file} for {source} on the workers")


def _maybe_process(ctx: Any, team: str) -> dict[str, Any]:
    """Eager mode: processing follows ingestion."""
    return process_team(ctx, team)


@intake_app.command()
def sync(
    sources: Annotated[list[str] | None, typer.Argument(help="Sources to sync (default: all pull sources).")] = None,
    full: Annotated[bool, typer.Option("--full", help="Ignore checkpoints; read everything again.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Pull new and changed items from sources into the corpus (exit 1 when a sync fails)."""

    ctx = context()
    names = sources or [s.name for s in ctx.config.sources if s.enabled and not connector_class(s.kind).push_only]
    for name in names:
        ctx.source_config(name)
    if not names:
        if as_json:
            emit_json({"sources": {}, "queued": [], "processed": {}})
        else:
            out.print("no pull sources are configured (webhook sources are pushed to)")
        return
    if not ctx.config.queue.eager:
        for name in names:
            sync_source.delay(name, full)
        if as_json:
            emit_json({"sources": {}, "queued": names, "processed": {}})
        else:
            out.print(f"queued {len(names)} syncs on the workers: {', '.join(names)}")
        return
    failed = False
    teams: set[str] = set()
    results: dict[str, Any] = {}
    for name in names:
        with progress_bar(f"syncing {name}") as update:
            summary = run_sync(ctx, name, full=full, progress=lambda s, u=update, n=name: u(
                completed=s.records, description=f"syncing {n}: {s.records} records, {s.failures} failures"))
        results[name] = summary.as_dict()
        if summary.status != "succeeded":
            failed = True
            console.print(f"[red]{name}: sync failed:[/red] {summary.error}", highlight=False)
        elif not as_json:
            out.print(f"{name}: {summary.documents_written} documents written, {summary.documents_unchanged} "
                      f"unchanged, {summary.interactions_written} interactions, {summary.tombstones} tombstones, "
                      f"{summary.failures} failures, {summary.requests} requests")
        if summary.changed:
            teams.add(ctx.config.source(name).team)
    processed = {team: _maybe_process(ctx, team) for team in sorted(teams)}
    if as_json:
        emit_json({"sources": results, "queued": [], "processed": processed})
    if failed:
        raise typer.Exit(1)


@intake_app.command()
def process(
    team: Annotated[str | None, typer.Argument(metavar="[TEAM]", help="Only this team (default: every team).",
                                               show_default=False)] = None,
    team_option: DeprecatedTeamOption = None,
    as_json: JsonOption = False,
) -> None:
    """Chunk new and changed documents and build training examples."""
    ctx = context()
    team = pick_team(team, team_option, "process", required=False)
    teams = [team] if team else [t.name for t in ctx.config.teams]
    results: dict[str, Any] = {}
    for name in teams:
        ctx.config.team(name)
        with progress_bar(f"processing {name}") as update:
            result = process_team(ctx, name, progress=update)
        # Records of this team's sources that feed other teams were processed for them too.
        for label, counts in [(name, result), *(result.pop("other_teams", None) or {}).items()]:
            counts = {k: v for k, v in counts.items() if k != "team"}
            seen = results.setdefault(label, {})
            for key, value in counts.items():  # a team processed twice (for another, then itself): summed
                seen[key] = seen[key] + value if isinstance(value, int) and key in seen else value
            if not as_json:
                out.print(f"{label}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if as_json:
        emit_json(results)
