"""`tacit train` and `tacit ask`: refresh a team's adapter, and ask it a question."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from tacit.cli.progress import console, out
from tacit.cli.shared import context

train_app = typer.Typer()


@train_app.command()
def train(team: str, force: Annotated[bool, typer.Option("--force", help="Train even if not due.")] = False) -> None:
    """Refresh a team's adapter: train, evaluate, promote if better."""
    from training import service  # imported when a command needs it: torch takes seconds to load

    ctx = context()
    ctx.config.team(team)
    result = service.refresh_adapter(ctx, team, force=force, console=console)
    out.print_json(json.dumps(result, default=str))


@train_app.command()
def ask(team: str, question: str,
        base: Annotated[bool, typer.Option("--base", help="Answer with the base model, no adapter.")] = False,
        max_new_tokens: Annotated[int, typer.Option(help="Longest answer.")] = 128) -> None:
    """Answer a question with the team's active adapter (or the base model)."""
    from training import service  # imported when a command needs it: torch takes seconds to load

    ctx = context()
    ctx.config.team(team)
    out.print(service.ask(ctx, team, question, base=base, max_new_tokens=max_new_tokens))
