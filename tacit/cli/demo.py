"""`tacit demo`: the whole story on one laptop, on the bundled sample company (Lumen Labs).

1. start the sandbox Notion and Microsoft Graph servers on loopback (same ports on every run,
   so stored cursors and delta links stay valid) and write a `tacit.toml` for the company;
2. sync every source through the real connectors over HTTP, and push the assistant's feedback
   through the real, signed webhook endpoint;
3. process the corpus into examples, train each team's adapter, evaluate, promote;
4. print a summary and write `.tacit/report/` (report.md, PNG plots, summary.json).

A second run is incremental: the demo edits one page, adds one Teams thread and deletes one
file in the sandbox, and only that is re-synced, reprocessed and trained on. The deleted file's
knowledge leaves the adapter through a clean retrain (its examples were in the lineage).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from connectors.sandbox.company import COMPANY, FACTS, TEAMS, discussed, person
from connectors.sandbox.graph import GraphSandbox
from connectors.sandbox.graph.workspace import build_company
from connectors.sandbox.notion import NotionSandbox
from connectors.sandbox.server import ThreadedServer, free_port
from connectors.webhook.signatures import new_secret, sign_headers
from ingestion.api.app import create_app
from ingestion.corpus.runner import run_sync
from ingestion.processing.pipeline import process_team
from ingestion.worker.tasks import set_context
from tacit.cli.progress import progress_bar
from tacit.cli.report import leakage_matrix, team_figures, write_report
from tacit.context import Context
from tacit.errors import NoAdapter
from training.registry import show_version
from training.service import refresh_adapter

DEMO_MARK = "# tacit demo configuration"
STATE_FILE = "demo/state.json"
#: The file the second run deletes, and the fact that leaves the adapter with it.
DELETED_TOPIC = ("research", "Data")


def demo_config_path(explicit: str | Path | None) -> Path:
    """Where the demo's configuration goes: ./tacit.toml unless a non-demo one is there."""
    if explicit:
        return Path(explicit)
    here = Path("tacit.toml")
    if not here.exists() or here.read_text(encoding="utf-8").startswith(DEMO_MARK):
        return here
    return Path(".tacit/demo/tacit.toml")



def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def load_state(data_dir: Path) -> dict[str, Any]:
    path = data_dir / STATE_FILE
    state: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    state.setdefault("run", 0)
    ports = state.setdefault("ports", {})
    for name in ("notion", "graph", "graph_auth", "api"):
        if not ports.get(name) or not _port_free(ports[name]):
            ports[name] = free_port()
    state.setdefault("webhook_secret", new_secret())
    return state


def save_state(data_dir: Path, state: dict[str, Any]) -> None:
    path = data_dir / STATE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state, indent=2))


# ---------------------------------------------------------------------------- configuration
def eval_sets(data_dir: Path) -> dict[str, Path]:
    """Per team, the questions colleagues really ask, in other words than the docs use."""
    out = {}
    for team in TEAMS:
        path = data_dir / "demo" / "eval" / f"{team.name}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = [{"question": f.eval_question, "answer": f.answer, "answers": [f.answer, *f.answers]}
                for f in FACTS if f.team == team.name]
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
        out[team.name] = path
    return out


def write_demo_config(path: Path, *, quick: bool, sources: list[str], evals: dict[str, Path]) -> None:
    model = "tiny-random" if quick else "smollm2-135m"
    lines = [DEMO_MARK, f"# {COMPANY}: {len(TEAMS)} teams. Written by `tacit demo`; safe to delete.", "",
             "[storage]", 'database_url = "sqlite:///.tacit/tacit.db"', 'data_dir = ".tacit"', "",
             "[queue]", 'broker_url = "memory://"', ""]
    for team in TEAMS:
        lines += ["[[teams]]", f'name = "{team.name}"', f'base_model = "{model}"',
                  f'description = "{team.description}"', f'principals = ["team:{team.name}"]',
                  f'eval_set = "{evals[team.name].resolve()}"', "", "[teams.training]"]
        # Any new example is worth a refresh here: the second run shows one change being learned.
        # Otherwise the defaults (chosen on benchmarks/knowledge/dev), except one pass over the
        # data in 256-token steps of 256-token sequences: with study data a team has hundreds of
        # examples (each fact restated many times), and three passes would not fit the 2-core
        # budget; small steps give the default min_steps updates for the tokens 40 steps of 512 cost.
        lines += (["max_steps = 6", "seq_len = 256", "min_new_tokens = 1"] if quick else
                  ["epochs = 1", "micro_batch_tokens = 256", "seq_len = 256", "min_new_tokens = 1"])
        lines.append("")
    lines += sources
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")


# ---------------------------------------------------------------------------- sandboxes
@contextlib.contextmanager
def sandboxes(state: dict[str, Any]) -> Iterator[tuple[Any, Any, Any]]:

    notion = NotionSandbox(port=state["ports"]["notion"])
    graph = GraphSandbox(port=state["ports"]["graph"], auth_port=state["ports"]["graph_auth"])
    notion.start()
    graph.start()
    try:
        workspace = build_company(graph)
        yield notion, graph, workspace
    finally:
        graph.stop()
        notion.stop()


def source_blocks(notion: Any, graph: Any, workspace: Any, secret: str) -> list[str]:
    blocks = ["# One Notion workspace shared by every team: each page goes to the team its teamspace names.",
              notion.source_block("notion", "platform", rate_limit=50)]
    for team in TEAMS:
        space = workspace.teams[team.name]
        users = [workspace.onedrive_user] if team.name == "platform" else []
        blocks += [
            f"# {team.title}: SharePoint site, help mailbox and Teams channel.",
            "[[sources]]", f'name = "m365-{team.name}"', 'kind = "msgraph"', f'team = "{team.name}"',
            f'tenant_id = "{graph.tenant_id}"', f'client_id = "{graph.client_id}"',
            f'client_secret = "{graph.client_secret}"', f'authority = "{graph.authority}"',
            f'ca_bundle = "{graph.ca_file}"', f'base_url = "{graph.url}"', f'sites = ["{space.site_ref}"]',
            f"users = {json.dumps(users)}", f'mailboxes = ["{space.mailbox}"]', f'teams = ["{space.team_id}"]',
            "mail_as_documents = true", "rate_limit = 200", "",
        ]
    for team in TEAMS:
        blocks += [f"# The team's chat assistant pushes rated answers here (POST /webhooks/assistant-{team.name}).",
                   "[[sources]]", f'name = "assistant-{team.name}"', 'kind = "webhook"', f'team = "{team.name}"',
                   f'secret = "{secret}"', ""]
    return blocks


def apply_changes(notion: Any, graph: Any, workspace: Any) -> list[str]:
    """The second run's changes at the source: one edited page, one new thread, one deleted file."""
    changes = []
    page_id = notion.page_id("platform/On-call")
    notion.edit_page(page_id, "Update: the on-call handoff now also reviews open SEV2 incidents.", notify=False)
    changes.append("Notion: the platform team's On-call page was edited")
    space = workspace.teams["support"]
    graph.add_channel_thread(space.team_id, "Where do we log customer calls?",
                             "Customer calls are logged in the Harbor helpdesk under Calls.")
    changes.append("Teams: a new thread in the support channel")
    team, topic = DELETED_TOPIC
    file_id = workspace.fact_file(team, topic)
    graph.delete_file(file_id)
    changes.append(f"SharePoint: the {team} team's '{topic}' file was deleted")
    return changes


# ---------------------------------------------------------------------------- webhook push
@contextlib.contextmanager
def serve_api(ctx: Any, port: int) -> Iterator[Any]:

    # Processing runs as its own step of the demo (and is shown there), not behind each event.
    app = create_app(ctx, process_teams=False)
    with ThreadedServer(app, port=port, lifespan="on"):
        yield app


def feedback_events(team: str) -> list[dict[str, Any]]:
    """What the team's chat assistant reports: answers users rated, one with a correction.

    Users ask it about the few facts colleagues also discuss in threads; the rest stay prose only.
    """
    events = []
    for i, fact in enumerate(discussed(team)):
        wrong = "I am not sure; please check the team wiki."
        good = i % 2 == 0
        events.append({
            "type": "interaction", "external_id": f"assistant-{team}-{i}", "kind": "feedback",
            "acl": [f"team:{team}"], "rating": 1.0 if good else -1.0,
            "correction": None if good else fact.statement,
            "messages": [{"author": person(team, 1).email, "role": "user", "text": fact.question},
                         {"author": "assistant", "role": "assistant", "text": fact.statement if good else wrong}],
        })
    return events


def push_feedback(url: str, secret: str, team: str) -> tuple[int, int]:

    accepted = duplicate = 0
    with httpx.Client(timeout=30) as client:
        for event in feedback_events(team):
            body = json.dumps(event).encode()
            msg_id = "msg_" + hashlib.sha256(body).hexdigest()[:24]
            response = client.post(f"{url}/webhooks/assistant-{team}", content=body, headers={
                "content-type": "application/json", **sign_headers(secret, msg_id, body)})
            if response.status_code == 202:
                accepted += 1
            elif response.status_code == 200:
                duplicate += 1
            else:
                raise RuntimeError(f"webhook answered {response.status_code}: {response.text}")
    return accepted, duplicate


# ---------------------------------------------------------------------------- the story
def run_demo(config: str | Path | None, *, quick: bool, console: Console, out: Console) -> dict[str, Any]:

    started = time.monotonic()
    path = demo_config_path(config)
    data_dir = (path.parent / ".tacit").resolve()
    state = load_state(data_dir)
    state["run"] += 1
    run = state["run"]
    console.print(f"[bold]Tacit demo[/bold] — {COMPANY}, {len(TEAMS)} teams, run {run}"
                  f"{' (quick: tiny-random model)' if quick else ''}; configuration in {path}")
    summary: dict[str, Any] = {"company": COMPANY, "run": run, "quick": quick,
                               "base_model": "tiny-random" if quick else "smollm2-135m"}
    with sandboxes(state) as (notion, graph, workspace):
        evals = eval_sets(data_dir)
        write_demo_config(path, quick=quick, evals=evals,
                          sources=source_blocks(notion, graph, workspace, state["webhook_secret"]))
        ctx = Context.load(path)
        set_context(ctx)
        save_state(data_dir, state)
        if run > 1:
            summary["changes"] = apply_changes(notion, graph, workspace)
            for change in summary["changes"]:
                console.print(f"  changed at the source: {change}")
        summary["sync"] = _sync_all(ctx, console)
    summary["webhooks"] = _push_all(ctx, state, console)
    summary["processing"] = _process_all(ctx, console)
    _train_all(ctx, summary, console)
    summary["duration_s"] = round(time.monotonic() - started, 1)

    report = write_report(summary, data_dir / "report")
    _print_summary(summary, out)
    out.print(f"report: {report}  (figures for scripts: {report.parent / 'summary.json'})")
    out.print(f'try:  tacit ask {TEAMS[0].name} "{FACTS[0].eval_question}"   (add --base to compare)')
    return summary


def _sync_all(ctx: Any, console: Console) -> dict[str, Any]:

    results = {}
    for source in ctx.config.sources:
        if source.kind == "webhook":
            continue
        with progress_bar(f"syncing {source.name}") as update:
            summary = run_sync(ctx, source.name, progress=lambda s, u=update, n=source.name: u(
                completed=s.records, description=f"syncing {n}: {s.records} records"))
        if summary.status != "succeeded":
            raise RuntimeError(f"sync of {source.name} failed: {summary.error}")
        results[source.name] = summary.as_dict()
        console.print(f"  {source.name}: {summary.documents_written} documents and "
                      f"{summary.interactions_written} conversations written, {summary.documents_unchanged + summary.interactions_unchanged} unchanged, "
                      f"{summary.tombstones} deleted, {summary.failures} failures, {summary.requests} requests")
    return results


def _push_all(ctx: Any, state: dict[str, Any], console: Console) -> dict[str, Any]:
    port = state["ports"]["api"]
    results = {}
    with serve_api(ctx, port) as app:
        for team in TEAMS:
            accepted, duplicate = push_feedback(f"http://127.0.0.1:{port}", state["webhook_secret"], team.name)
            results[team.name] = {"accepted": accepted, "duplicate": duplicate}
            console.print(f"  webhook assistant-{team.name}: {accepted} feedback events accepted (202), "
                          f"{duplicate} duplicates ignored")
        app.state.worker.wait_idle(timeout=300)
    return results


def _process_all(ctx: Any, console: Console) -> dict[str, Any]:
    """Process every team; a shared source's records are processed for every team they feed in
    the first call that meets them, so each team's counts are summed over all calls."""

    totals: dict[str, dict[str, int]] = {team.name: {} for team in TEAMS}

    def add(name: str, counts: dict[str, Any]) -> None:
        into = totals.setdefault(name, {})
        for key, value in counts.items():
            if isinstance(value, int) and not isinstance(value, bool) and key != "skipped_unchanged":
                into[key] = into.get(key, 0) + value

    for team in TEAMS:
        with progress_bar(f"processing {team.name}") as update:
            result = process_team(ctx, team.name, progress=lambda u=update, **kw: u(**kw))
        for other, counts in (result.pop("other_teams", None) or {}).items():
            add(other, counts)
        add(team.name, result)
    for team in TEAMS:
        r = totals[team.name]
        console.print(f"  {team.name}: {r.get('documents_processed', 0)} documents and "
                      f"{r.get('interactions_processed', 0)} conversations processed, "
                      f"{r.get('chunks_written', 0)} chunks and {r.get('examples_written', 0)} examples written, "
                      f"{r.get('examples_retired', 0)} examples retired")
    gone = {k: sum(t.get(k, 0) for t in totals.values())
            for k in ("documents_deleted", "interactions_deleted", "adapters_flagged")}
    if gone["documents_deleted"] or gone["interactions_deleted"]:
        console.print(f"  deleted at the source: {gone['documents_deleted']} documents and "
                      f"{gone['interactions_deleted']} conversations taken back with their chunks and examples; "
                      f"{gone['adapters_flagged']} adapters that learned them flagged for a clean retrain")
    return totals


def _train_all(ctx: Any, summary: dict[str, Any], console: Console) -> None:

    teams: dict[str, Any] = {}
    samples: dict[str, Any] = {}
    forgotten: list[str] = []
    for team in TEAMS:
        console.print(f"[bold]training {team.name}[/bold]")
        before = _active_or_none(ctx, team.name)
        started = time.monotonic()
        result = refresh_adapter(ctx, team.name, force=summary["run"] == 1, console=console)
        refresh_s = time.monotonic() - started
        active = _active_or_none(ctx, team.name) or {}
        # The figures of the version trained now (promoted or not); when nothing was trained
        # (no change for this team), those of the active version.
        trained = show_version(ctx, team.name, result["version"]) if result.get("version") else active
        teams[team.name], samples[team.name] = team_figures(active, trained, result, refresh_s)
        excluded = (trained.get("deleted_documents") or {}).get("excluded") or []
        learned = {d["document_id"] for d in ((before or {}).get("deleted_documents") or {}).get("flagged") or []}
        gone = [d for d in excluded if d["document_id"] in learned]
        if result.get("clean_retrain") and gone:
            titles = ", ".join(f"'{d['title']}'" for d in gone)
            forgotten.append(f"{team.name}: v{before['version']} had learned {titles}, deleted at the source since; "
                             f"v{result['version']} was retrained from scratch and its lineage holds no example "
                             f"of it ({result['status']})")
    names = [t.name for t in TEAMS]
    matrix = leakage_matrix(teams, names)
    summary["teams"] = teams
    summary["leakage"] = {"teams": names, "matrix": matrix}
    summary["samples"] = samples
    summary["forgotten"] = forgotten


def _active_or_none(ctx: Any, team: str) -> dict[str, Any] | None:

    try:
        return show_version(ctx, team, None)
    except NoAdapter:
        return None


def _print_summary(summary: dict[str, Any], out: Console) -> None:
    table = Table(title=f"{COMPANY}: each team's adapter against the base model")
    for col in ("team", "adapter", "status", "QA match before → after", "base + RAG",
                "general probe loss before → after"):
        table.add_column(col)
    for team, d in summary["teams"].items():
        fmt = lambda v, n=2: "-" if v is None else f"{v:.{n}f}"  # noqa: E731
        table.add_row(team, f"v{d['adapter_version']}" if d["adapter_version"] else "-", str(d["status"]),
                      f"{fmt(d['qa_before'])} → {fmt(d['qa_after'])}", fmt(d.get("qa_rag")),
                      f"{fmt(d['forgetting_before'], 3)} → {fmt(d['forgetting_after'], 3)}")
    out.print(table)
