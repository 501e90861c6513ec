"""`tacit train` and `tacit ask`: refresh a team's adapter, and ask it a question."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from tacit.cli.progress import console, out
from tacit.cli.shared import JsonOption, TeamArgument, context, emit_json

train_app = typer.Typer()


@train_app.command()
def train(team: TeamArgument, force: Annotated[bool, typer.Option("--force", help="Train even if not due.")] = False,
          as_json: JsonOption = False) -> None:
    """Refresh a team's adapter: train, evaluate, promote if better; the result as JSON (one line with --json)."""
    from training import service  # imported when a command needs it: torch takes seconds to load

    ctx = context()
    ctx.config.team(team)
    result = service.refresh_adapter(ctx, team, force=force, console=console)
    if as_json:
        emit_json(result)
    else:
        out.print_json(json.dumps(result, default=str))


@train_app.command()
def ask(team: TeamArgument, question: str,
        base: Annotated[bool, typer.Option("--base", help="Answer with the base model, no adapter.")] = False,
        max_new_tokens: Annotated[int, typer.Option(help="Longest answer.")] = 128) -> None:
    """Answer a question with the team's active adapter (or the base model)."""
    from training import service  # imported when a command needs it: torch takes seconds to load

    ctx = context()
    ctx.config.team(team)
    answer = service.ask(ctx, team, question, base=base, max_new_tokens=max_new_tokens)
    if not answer.strip():
        # Nothing on stdout (a script reads an empty answer), and a person is told why.
        console.print(f"{team}: the {'base model' if base else 'adapter'} gave an empty answer "
                      f"(it ended its reply at once; try rewording the question or --max-new-tokens)", highlight=False)
        return
    out.print(answer)
