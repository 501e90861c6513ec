"""`tacit keys create|list|revoke TEAM`: API keys for a team's model on the `/v1` endpoint."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from tacit.cli.progress import console, out
from tacit.cli.shared import JsonOption, TeamArgument, context, emit_json
from training.serving.keys import create_key, list_keys, revoke_key

keys_app = typer.Typer(no_args_is_help=True, help="API keys for a team's OpenAI-compatible endpoint.")


@keys_app.command("create")
def keys_create(team: TeamArgument, name: Annotated[str, typer.Option(help="What the key is for.")] = "") -> None:
    """Make a key for TEAM's model; it is printed once (only its hash is kept)."""
    ctx = context()
    ctx.config.team(team)
    row, key = create_key(ctx, team, name)
    out.print(key, highlight=False)
    console.print(f"key {row['id']} ({row['prefix']}…) for team {team}: store it now, it is not shown again",
                  highlight=False)


@keys_app.command("list")
def keys_list(team: TeamArgument, as_json: JsonOption = False) -> None:
    """The team's keys (id, prefix, name, created, last used, revoked); never the keys themselves."""
    ctx = context()
    ctx.config.team(team)
    rows = list_keys(ctx, team)
    if as_json:
        emit_json(rows)
        return
    table = Table("id", "prefix", "name", "created", "last used", "revoked")
    for r in rows:
        table.add_row(str(r["id"]), r["prefix"] + "…", r["name"], str(r["created_at"])[:19],
                      str(r["last_used_at"] or "")[:19], str(r["revoked_at"] or "")[:19])
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(team: TeamArgument, key: Annotated[str, typer.Argument(help="Key id or prefix (see list), or the key.")]) -> None:
    """Revoke one of the team's keys: requests with it get 401 from now on."""
    ctx = context()
    ctx.config.team(team)
    key_id = revoke_key(ctx, team, key)
    out.print(f"{team}: key {key_id} revoked")
