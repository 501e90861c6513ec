"""`tacit demo`: the whole story on the bundled sample company, written up as a report."""

from __future__ import annotations

from typing import Annotated

import typer

from tacit.cli.progress import console, out
from tacit.cli.shared import state

results_app = typer.Typer()


@results_app.command()
def demo(quick: Annotated[bool, typer.Option("--quick", help="tiny-random model, fewer steps.")] = False) -> None:
    """Run the whole story on a bundled sample company."""
    from tacit.cli.demo import run_demo  # the sandboxes and torch: loaded only for this command

    run_demo(state["config"], quick=quick, console=console, out=out)
