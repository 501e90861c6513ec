"""Teams kept apart end to end on a shared workspace, and forgetting a document deleted at its source.

One Notion source (the sandbox's workspace, one integration) whose teamspaces belong to three
teams: synced, processed, and adapters trained for two teams (tiny-random). The ground truth of
which team owns a page comes from the sandbox's own page tree, not from Tacit: every example in
an adapter's lineage must come from a record of that team's teamspace, and no other team's fact
may appear in what it was trained on.

Then a page of the platform team is deleted in Notion; sync, process and train again. The new
version's lineage holds no example of that page (nor of its discussions) — the previous version's
did — and `tacit adapters show platform` says the new version was trained without it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from connectors.sandbox.company import FACTS, TEAMS, facts_for
from connectors.sandbox.notion import NotionSandbox
from db import models
from ingestion.corpus.runner import run_sync
from ingestion.processing.pipeline import process_team
from tacit.context import Context
from training import service

pytestmark = pytest.mark.slow

TRAINED = ("platform", "support")


def config_body(sandbox: NotionSandbox, tmp_path: Path) -> str:
    teams = ""
    for team in TEAMS:
        eval_set = tmp_path / f"{team.name}-eval.jsonl"
        eval_set.write_text("".join(json.dumps({"question": f.eval_question, "answer": f.answer}) + "\n"
                                    for f in facts_for(team.name)[:3]), encoding="utf-8")
        teams += (f'[[teams]]\nname = "{team.name}"\nbase_model = "tiny-random"\neval_set = "{eval_set}"\n'
                  '[teams.training]\nmax_steps = 6\nlearning_rate = 0.005\n\n')
    return teams + sandbox.source_block("wiki", "platform", rate_limit=10000, comments="pages")


def owners(sandbox: NotionSandbox) -> dict[str, str]:
    """Ground truth from the sandbox: external id (page, row or discussion) -> team of its teamspace."""
    ws = sandbox.workspace
    team_of: dict[str, str] = {}
    for team in TEAMS:
        root = ws.keys[f"{team.name}/root"]
        for page_id in [root, *ws.descendants(root)]:
            team_of[page_id] = team.name
    for comment in ws.comments:
        page = comment.parent.get("page_id") or ws.block_page(comment.parent.get("block_id", ""))
        team_of[comment.discussion_id] = team_of[page or ""]
    return team_of


def lineage(ctx: Context, team: str, version: int) -> list[dict[str, Any]]:
    """Every example that trained this version: its team, payload and the record it came from."""
    with ctx.session() as s:
        team_row = ctx.team_row(s, team)
        adapter = s.scalar(select(models.Adapter).where(models.Adapter.team_id == team_row.id,
                                                        models.Adapter.version == version))
        assert adapter is not None
        rows = s.execute(select(models.Example, models.Document.external_id, models.Interaction.external_id)
                         .join(models.AdapterLineage, models.AdapterLineage.example_id == models.Example.id)
                         .outerjoin(models.Document, models.Document.id == models.Example.document_id)
                         .outerjoin(models.Interaction, models.Interaction.id == models.Example.interaction_id)
                         .where(models.AdapterLineage.adapter_id == adapter.id)).all()
        team_names = dict(s.execute(select(models.Team.id, models.Team.name)).all())
        return [{"team": team_names[e.team_id], "payload": e.payload, "record": doc or inter}
                for e, doc, inter in rows]


@pytest.fixture
def wiki(make_ctx: Callable[..., Context], sqlite_url: str, tmp_path: Path) -> Iterator[tuple[NotionSandbox, Context]]:
    with NotionSandbox() as sandbox:
        yield sandbox, make_ctx(sqlite_url, config_body(sandbox, tmp_path))


def test_teams_apart_from_documents_to_adapters_and_a_deleted_page_is_forgotten(
        wiki: tuple[NotionSandbox, Context], capsys: pytest.CaptureFixture[str]) -> None:
    sandbox, ctx = wiki
    assert run_sync(ctx, "wiki").status == "succeeded"
    process_team(ctx, "platform")  # and the teams its shared workspace feeds
    team_of = owners(sandbox)
    with ctx.session() as s:
        routed = {d.external_id: d.team_id for d in s.scalars(select(models.Document))}
        names = dict(s.execute(select(models.Team.id, models.Team.name)).all())
    assert {names[t] for t in routed.values()} == {t.name for t in TEAMS}  # the workspace feeds all three
    assert all(names[t] == team_of[ext] for ext, t in routed.items())

    first: dict[str, list[dict[str, Any]]] = {}
    for team in TRAINED:
        result = service.refresh_adapter(ctx, team)
        assert result["version"] == 1 and result["status"] in ("promoted", "rejected"), result
        first[team] = lineage(ctx, team, 1)
        assert first[team], f"{team}: nothing trained"
        for example in first[team]:
            assert example["team"] == team and team_of[example["record"]] == team, example
        text = json.dumps([e["payload"] for e in first[team]])
        assert not [f.answer for f in FACTS if f.team != team and f.answer in text]
        assert any(f.answer in text for f in facts_for(team))

    # Forgetting on request: the page holding platform's first fact is deleted in Notion.
    fact = facts_for("platform")[0]
    page_id = sandbox.page_id(f"platform/{fact.topic}")
    ws = sandbox.workspace
    forgotten = {page_id} | {c.discussion_id for c in ws.comments if c.parent.get("page_id") == page_id}
    assert forgotten & {e["record"] for e in first["platform"]}  # version 1 learned from it
    sandbox.delete_page(page_id, notify=False)
    summary = run_sync(ctx, "wiki")
    assert summary.status == "succeeded" and summary.tombstones == len(forgotten)
    process_team(ctx, "platform")
    second = service.refresh_adapter(ctx, "platform")
    assert second["version"] == 2 and second["clean_retrain"] is True and second["continued_from"] is None
    assert second["why"].startswith("clean retrain: ") and "deleted at the source" in second["why"]
    v2 = lineage(ctx, "platform", 2)
    assert v2 and not forgotten & {e["record"] for e in v2}
    assert all(e["team"] == "platform" and team_of[e["record"]] == "platform" for e in v2)

    from tacit.cli import main

    def show(*args: str) -> dict[str, Any]:
        capsys.readouterr()
        with pytest.raises(SystemExit) as done:
            main(["--config", str(ctx.config.path), "adapters", "show", "platform", *args])
        assert done.value.code == 0
        return json.loads(capsys.readouterr().out)

    shown = show("2")
    assert shown["version"] == 2 and shown["clean_retrain"] is True
    assert shown["deleted_documents"]["trained_without_deleted_documents"] is True
    assert [d["external_id"] for d in shown["deleted_documents"]["excluded"]] == [page_id]
    assert shown["deleted_documents"]["flagged"] == []
    old = show("1")
    assert old["deleted_documents"]["trained_without_deleted_documents"] is False
    assert [d["external_id"] for d in old["deleted_documents"]["flagged"]] == [page_id]
    active = show()  # what serves now
    assert active["deleted_documents"]["trained_without_deleted_documents"] is True, (second["status"],
                                                                                       second["reason"])
