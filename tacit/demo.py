"""`tacit demo`: the whole story on one laptop, on the bundled sample company (Lumen Labs).

It writes a `tacit.toml` for the sample company, brings its knowledge in, processes it,
and prints what it did.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from connectors.sandbox.company import COMPANY, FACTS, TEAMS, person

DEMO_MARK = "# tacit demo configuration"


def demo_config_path(explicit: str | Path | None) -> Path:
    """Where the demo's configuration goes: ./tacit.toml unless a non-demo one is there."""
    if explicit:
        return Path(explicit)
    here = Path("tacit.toml")
    if not here.exists() or here.read_text(encoding="utf-8").startswith(DEMO_MARK):
        return here
    return Path(".tacit/demo/tacit.toml")


def write_demo_config(path: Path, *, quick: bool) -> None:
    model = "tiny-random" if quick else "smollm2-135m"
    lines = [DEMO_MARK, f"# {COMPANY}: {len(TEAMS)} teams. Written by `tacit demo`; safe to delete.", "",
             "[storage]", 'database_url = "sqlite:///.tacit/tacit.db"', 'data_dir = ".tacit"', "",
             "[queue]", 'broker_url = "memory://"', ""]
    for team in TEAMS:
        lines += ["[[teams]]", f'name = "{team.name}"', f'base_model = "{model}"',
                  f'description = "{team.description}"', f'principals = ["team:{team.name}"]', ""]
    for team in TEAMS:
        lines += ["[[sources]]", f'name = "{team.name}-import"', 'kind = "webhook"', f'team = "{team.name}"', ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")


def sample_records(team: str) -> list[dict[str, Any]]:
    """The team's handbook pages and the questions colleagues asked, in the record format."""
    facts = [f for f in FACTS if f.team == team]
    topics: dict[str, list[str]] = {}
    for fact in facts:
        topics.setdefault(fact.topic, []).append(fact.statement)
    records: list[dict[str, Any]] = []
    for i, (topic, statements) in enumerate(topics.items()):
        text = f"# {topic}\n\n" + "\n\n".join(statements) + "\n"
        records.append({"type": "document", "external_id": f"{team}-handbook-{i}", "title": topic, "text": text,
                        "authors": [person(team).email], "acl": [f"team:{team}"], "metadata": {"sample": True}})
    for i, fact in enumerate(facts):
        records.append({"type": "interaction", "external_id": f"{team}-question-{i}", "kind": "thread",
                        "document_external_id": None, "acl": [f"team:{team}"],
                        "messages": [{"author": person(team, 1).name, "role": "user", "text": fact.question},
                                     {"author": person(team, 0).name, "role": "assistant", "text": fact.statement}]})
    return records


def run_demo(config: str | Path | None, *, quick: bool, console: Console, out: Console) -> None:
    from tacit.context import Context

    path = demo_config_path(config)
    write_demo_config(path, quick=quick)
    console.print(f"[bold]Tacit demo[/bold]: {COMPANY}, {len(TEAMS)} teams — configuration in {path}")
    ctx = Context.load(path)
    from ingestion.events import process_event, stage_import
    from ingestion.tasks import set_context

    set_context(ctx)
    rows = []
    for team in TEAMS:
        sample = ctx.data_dir / "demo" / f"{team.name}.jsonl"
        sample.parent.mkdir(parents=True, exist_ok=True)
        sample.write_text("\n".join(json.dumps(r) for r in sample_records(team.name)) + "\n", encoding="utf-8")
        written = 0
        for event_id in stage_import(ctx, f"{team.name}-import", sample):
            result = process_event(ctx, event_id)
            written += int(result.get("documents_written", 0)) + int(result.get("interactions_written", 0))
        rows.append((team.name, written))
    table = Table(title=f"{COMPANY}: what the demo brought in")
    table.add_column("team")
    table.add_column("records written")
    for name, written in rows:
        table.add_row(name, str(written))
    out.print(table)
    from tacit.status import collect_status

    status = collect_status(ctx)
    for team in status["teams"]:
        out.print(f"{team['name']}: {team['documents']} documents, {team['interactions']} interactions")
    out.print("Next stages (processing, training) run when they are installed; see `tacit status`.")
