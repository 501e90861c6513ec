"""`tacit demo` and `tacit report`: what the adapters learned, written up as Markdown with plots."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from tacit.cli.progress import console, out
from tacit.cli.report import leakage_matrix, team_figures, write_report
from tacit.cli.shared import JsonOption, context, emit_json, state
from tacit.errors import NoAdapter, UsageError
from training.registry import show_version

results_app = typer.Typer()


@results_app.command()
def demo(quick: Annotated[bool, typer.Option("--quick", help="tiny-random model, fewer steps.")] = False) -> None:
    """Run the whole story on a bundled sample company."""
    from tacit.cli.demo import run_demo  # the sandboxes and torch: loaded only for this command

    run_demo(state["config"], quick=quick, console=console, out=out)


@results_app.command()
def report(
    teams: Annotated[list[str], typer.Argument(metavar="TEAM...", help="One or more teams, as named in tacit.toml.",
                                               show_default=False)],
    version: Annotated[int | None, typer.Option(help="This version (one team only; default: the active one).")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Folder to write (default: "
                                                 "<data_dir>/reports/<team>).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Write the demo's report (report.md, PNG plots, summary.json) for the teams' adapters.

    Prints the path of report.md (with --json: {"report": path, "summary": …}).
    """
    if version is not None and len(teams) > 1:
        raise UsageError("--version needs exactly one team")
    ctx = context()
    figures: dict[str, Any] = {}
    samples: dict[str, Any] = {}
    for team in teams:
        ctx.config.team(team)
        try:
            active = show_version(ctx, team, None)
        except NoAdapter:
            if version is None:
                raise
            active = {}
        chosen = show_version(ctx, team, version) if version is not None else active
        figures[team], samples[team] = team_figures(active, chosen)
    summary = {
        "company": ", ".join(teams), "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "base_model": ", ".join(dict.fromkeys(ctx.config.team(t).base_model for t in teams)),
        "teams": figures, "leakage": {"teams": teams, "matrix": leakage_matrix(figures, teams)}, "samples": samples,
    }
    path = write_report(summary, out_dir or ctx.data_dir / "reports" / "+".join(teams))
    if as_json:
        emit_json({"report": str(path), "summary": summary})
    else:
        out.print(str(path))
