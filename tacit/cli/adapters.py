"""`tacit adapters list|show|promote|rollback|export`: a team's adapter versions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tacit.cli.progress import out
from tacit.cli.shared import ForceOption, JsonOption, TeamArgument, context, emit_json, warn
from training import registry as adapter_registry
from training.serving.vllm import sync_team_quietly

adapters_app = typer.Typer(no_args_is_help=True, help="A team's adapter versions.")


@adapters_app.command("list")
def adapters_list(team: TeamArgument, as_json: JsonOption = False) -> None:
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
def adapters_show(team: TeamArgument, version: Annotated[int | None, typer.Argument()] = None,
                  as_json: JsonOption = False) -> None:
    """One version (the active one by default): metrics, lineage, flags, as JSON (one line with --json)."""
    ctx = context()
    ctx.config.team(team)
    data = adapter_registry.show_version(ctx, team, version)
    if as_json:
        emit_json(data)
    else:
        out.print_json(json.dumps(data, default=str))


@adapters_app.command("promote")
def adapters_promote(team: TeamArgument, version: int, force: ForceOption = False) -> None:
    """Make a version the active one."""
    ctx = context()
    ctx.config.team(team)
    out.print(adapter_registry.promote(ctx, team, version, reason="promoted by hand", force=force, warn=warn))
    _sync_inference(ctx, team)


@adapters_app.command("rollback")
def adapters_rollback(team: TeamArgument, force: ForceOption = False) -> None:
    """Go back to the previously active version."""
    ctx = context()
    ctx.config.team(team)
    out.print(adapter_registry.rollback(ctx, team, force=force, warn=warn))
    _sync_inference(ctx, team)


def _sync_inference(ctx: Any, team: str) -> None:
    """With `[inference] backend = "vllm"`, load the now active version into vLLM."""
    synced = sync_team_quietly(ctx, team)
    if synced:
        out.print(synced)


@adapters_app.command("export")
def adapters_export(team: TeamArgument, dest: Annotated[Path, typer.Argument(help="Folder to write.")],
                    version: Annotated[int | None, typer.Option(help="Default: the active one.")] = None,
                    force: ForceOption = False) -> None:
    """Export a version as a PEFT directory that vLLM and LoRAX load."""
    ctx = context()
    ctx.config.team(team)
    out.print(str(adapter_registry.export(ctx, team, dest, version, force=force, warn=warn)))
