"""The processing stage on SQLite and PostgreSQL: examples of every kind with provenance, team
isolation on a shared workspace, deletion with adapter flags, incremental work."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from connectors.base import Tombstone, parse_record
from connectors.sandbox.company import FACTS
from db import models
from ingestion.corpus.runner import ingest_records
from ingestion.processing.pipeline import process_team
from tacit.cli.export import export_rows
from tacit.config import ConfigError
from tacit.context import Context
from tests.ingestion.fake_openai import serve_fake_openai
from tests.ingestion.sample_workspace import FOOTER, records, write_jsonl

TEAMS = ("platform", "support")


def ingest(ctx: Context, source: str, rows: list[dict[str, Any]]) -> None:
    summary = ingest_records(ctx, source, [parse_record(r) for r in rows])
    assert summary.status == "succeeded" and summary.failures == 0


def load_sample(ctx: Context) -> None:
    for source, rows in records().items():
        ingest(ctx, source, rows)


def process_all(ctx: Context) -> dict[str, dict[str, Any]]:
    return {team: process_team(ctx, team) for team in TEAMS}


def examples(ctx: Context, team: str) -> list[dict[str, Any]]:
    return list(export_rows(ctx, "examples", team))


def test_sample_workspace_gives_all_four_kinds_with_provenance(ctx: Context) -> None:
    load_sample(ctx)
    calls: list[dict[str, Any]] = []
    result = process_team(ctx, "platform", progress=lambda **kw: calls.append(kw))
    assert result["documents_processed"] == 6 and result["interactions_processed"] == 11
    # Support's pages came in through the platform source: they were built for support.
    assert result["other_teams"]["support"]["documents_processed"] == 6
    assert result["chunks_written"] > 0 and result["examples_written"] > 0
    assert result["scrubbed"]["password"] == 1 and result["scrubbed"]["email"] == 4
    done = [c for c in calls if c["description"].endswith(": done")]
    assert [c["description"] for c in done] == ["platform: done", "support: done"]
    assert all(c["completed"] == c["total"] for c in done)
    rows = examples(ctx, "platform")
    by_kind = Counter(r["kind"] for r in rows)
    assert set(by_kind) == {"cpt", "qa", "chat", "preference"}
    with ctx.session() as s:
        chunks = {c.id: c for c in s.scalars(select(models.Chunk))}
        docs = {d.id: d for d in s.scalars(select(models.Document))}
        inters = {i.id: i for i in s.scalars(select(models.Interaction))}
    for r in rows:
        prov = r["provenance"]
        if r["kind"] == "cpt" and r["origin"] == "study":  # a restatement of one of the chunk's sentences
            assert chunks[prov["chunk_id"]].document_id == prov["document_id"]
        elif r["kind"] == "cpt":
            chunk = chunks[prov["chunk_id"]]
            assert chunk.document_id == prov["document_id"]
            assert chunk.text in r["payload"]["text"] and r["payload"]["text"].startswith(docs[chunk.document_id].title)
        elif r["kind"] == "qa":
            assert prov["document_id"] in docs and prov["interaction_id"] is None
        else:
            assert prov["interaction_id"] in inters and prov["document_id"] is None
        assert r["token_count"] > 0
    text = json.dumps(rows)
    assert "hunter2" not in text and "@lumenlabs.example" not in text  # scrubbed
    assert FOOTER not in text  # boilerplate stripped
    # A thread became question → resolving reply; the corrected feedback a preference pair.
    freeze = next(f for f in FACTS if f.team == "platform")
    chat = [r["payload"]["messages"] for r in rows if r["kind"] == "chat" and r["origin"] == "thread"]
    assert [{"role": "user", "content": freeze.question}, {"role": "assistant", "content": freeze.statement}] in chat
    prefs = [r["payload"] for r in rows if r["kind"] == "preference"]
    assert {"prompt": freeze.question, "chosen": freeze.statement,
            "rejected": "I am not sure, maybe ask someone."} in prefs
    assert {"prompt": freeze.eval_question, "chosen": f"{freeze.answer}.", "rejected": "Nobody knows that."} in prefs
    qa = [r["payload"] for r in rows if r["kind"] == "qa"]
    assert sum("owner of checkout-api" in p["question"] and "Ada Moreau" in p["answer"] for p in qa) >= 2  # table
    assert sum("Platform roadmap" in p["question"] and "Q3" in p["answer"] for p in qa) == 4  # row properties
    assert sum("checkout-api" in p["question"] and "Ada Moreau" in p["answer"] for p in qa) == 5  # 4 + the row


def test_no_example_crosses_teams_on_a_shared_workspace(ctx: Context) -> None:
    load_sample(ctx)
    extra = [  # a page with no team principal follows its source; helpdesk shares one with platform
        {"type": "document", "external_id": "no-acl", "title": "Lunch", "text": "Lunch is served at noon sharp daily."},
    ]
    ingest(ctx, "helpdesk", extra + [{"type": "document", "external_id": "to-platform", "title": "Basalt failover",
                                      "text": "Failover of Basalt is run by the Skylark job.",
                                      "acl": ["team:platform"]}])
    process_all(ctx)
    with ctx.session() as s:
        team_of = {t.id: t.name for t in s.scalars(select(models.Team))}
        source_team = {src.id: team_of[src.team_id] for src in s.scalars(select(models.Source))}
        docs = {d.id: d for d in s.scalars(select(models.Document))}
        inters = {i.id: i for i in s.scalars(select(models.Interaction))}
        chunks = list(s.scalars(select(models.Chunk)))
        rows = list(s.scalars(select(models.Example)))

    def team_for(acl: list[str], source_id: int) -> str:
        named = [t for t in TEAMS if f"team:{t}" in acl]
        own = source_team[source_id]
        return own if not named or own in named else named[0]

    for c in chunks:
        d = docs[c.document_id]
        assert team_of[c.team_id] == team_for(d.acl, d.source_id)
    assert {docs[c.document_id].external_id for c in chunks if team_of[c.team_id] == "support"} >= {
        "support-refunds", "no-acl"}
    assert "to-platform" in {docs[c.document_id].external_id for c in chunks if team_of[c.team_id] == "platform"}
    for e in rows:
        record = docs[e.document_id] if e.document_id else inters[e.interaction_id]
        assert team_of[e.team_id] == team_for(record.acl, record.source_id), (e.payload, record.external_id)
        if e.chunk_id:
            assert team_of[e.team_id] == team_of[next(c.team_id for c in chunks if c.id == e.chunk_id)]
    # And by content: no fact of one team appears in the other team's examples.
    for team in TEAMS:
        text = json.dumps([e.payload for e in rows if team_of[e.team_id] == team])
        for fact in FACTS:
            if fact.team in TEAMS and fact.team != team:
                assert fact.answer not in text, (team, fact.answer)
        assert any(f.answer in text for f in FACTS if f.team == team)


def test_tombstones_retire_chunks_and_examples_and_flag_adapters(ctx: Context) -> None:
    load_sample(ctx)
    process_all(ctx)
    with ctx.session() as s:
        platform = ctx.team_row(s, "platform").id
        doc = s.scalar(select(models.Document).where(models.Document.external_id == "platform-deploy-policy"))
        good = s.scalar(select(models.Interaction).where(models.Interaction.external_id == "feedback-platform-good"))
        doc_examples = list(s.scalars(select(models.Example.id).where(models.Example.document_id == doc.id)))
        pair = s.scalar(select(models.Example.id).where(models.Example.origin == f"pair:{good.id}"))
        good_examples = list(s.scalars(select(models.Example.id).where(models.Example.interaction_id == good.id)))
        other = s.scalar(select(models.Example.id).where(models.Example.team_id == platform,
                                                         models.Example.document_id != doc.id))
        v1 = models.Adapter(team_id=platform, version=1, status="active", base_model="tiny-random")
        v2 = models.Adapter(team_id=platform, version=2, status="candidate", base_model="tiny-random")
        s.add_all([v1, v2])
        s.flush()
        s.add_all([models.AdapterLineage(adapter_id=v1.id, example_id=doc_examples[0]),
                   models.AdapterLineage(adapter_id=v1.id, example_id=other),
                   models.AdapterLineage(adapter_id=v2.id, example_id=other)])
        ids = (v1.id, v2.id, doc.id, pair)
    assert pair is not None and len(doc_examples) > 5 and good_examples
    ingest_records(ctx, "assistant", [Tombstone(external_id="platform-deploy-policy"),
                                      Tombstone(external_id="feedback-platform-good")])
    result = process_team(ctx, "platform")
    assert (result["documents_deleted"], result["interactions_deleted"], result["adapters_flagged"]) == (1, 1, 1)
    with ctx.session() as s:
        v1, v2 = s.get(models.Adapter, ids[0]), s.get(models.Adapter, ids[1])
        assert v1.needs_clean_retrain and "platform-deploy-policy" in v1.flag_reason
        assert not v2.needs_clean_retrain and v2.flag_reason is None
        live_chunks = s.scalars(select(models.Chunk).where(models.Chunk.document_id == ids[2],
                                                           models.Chunk.retired_at.is_(None))).all()
        assert live_chunks == []
        retired = s.scalars(select(models.Example.id).where(models.Example.retired_at.is_not(None))).all()
        assert set(doc_examples) | set(good_examples) | {pair} <= set(retired)
        assert s.get(models.Example, other).retired_at is None
    exported = {r["id"] for r in examples(ctx, "platform")}
    assert not exported & (set(doc_examples) | {pair})
    # Nothing more to do on the next run; a document that comes back is processed again.
    assert process_team(ctx, "platform")["examples_retired"] == 0
    ingest(ctx, "assistant", [r for r in records()["assistant"] if r["external_id"] == "platform-deploy-policy"])
    again = process_team(ctx, "platform")
    assert again["documents_processed"] == 1 and again["examples_written"] == len(doc_examples)
    assert {r["id"] for r in examples(ctx, "platform")} >= set(doc_examples)  # the same rows come back


def test_incremental_second_run_does_nothing_and_a_change_rechunks_one_document(ctx: Context) -> None:
    load_sample(ctx)
    first = process_all(ctx)
    assert first["platform"]["documents_processed"] == 6
    assert first["platform"]["other_teams"]["support"]["documents_processed"] == 6
    second = process_all(ctx)
    for r in second.values():
        assert (r["documents_processed"], r["interactions_processed"], r["chunks_written"], r["examples_written"],
                r["examples_retired"]) == (0, 0, 0, 0, 0)
        assert r["skipped_unchanged"] == 17
    load_sample(ctx)  # the same versions delivered again
    assert process_team(ctx, "platform")["documents_processed"] == 0
    before = {r["id"]: r for r in examples(ctx, "platform")}
    page = next(r for r in records()["assistant"] if r["external_id"] == "platform-databases")
    page = dict(page, text=page["text"].replace("35 days", "42 days"))
    ingest(ctx, "assistant", [page])
    third = process_team(ctx, "platform")
    assert (third["documents_processed"], third["interactions_processed"]) == (1, 0)
    with ctx.session() as s:
        doc = s.scalar(select(models.Document).where(models.Document.external_id == "platform-databases"))
        assert doc.processed_hash == doc.content_hash and doc.version == 2
        live = s.scalars(select(models.Chunk).where(models.Chunk.retired_at.is_(None),
                                                    models.Chunk.document_id == doc.id)).all()
        assert {c.document_version for c in live} == {2}
        assert third["chunks_written"] == len(live) == third["chunks_retired"]
    after = {r["id"]: r for r in examples(ctx, "platform")}
    gone = [before[i]["payload"] for i in before.keys() - after.keys()]
    new = [after[i]["payload"] for i in after.keys() - before.keys()]
    assert gone and all("35 days" in json.dumps(p) for p in gone)
    assert new and all("42 days" in json.dumps(p) for p in new)
    assert len(gone) == third["examples_retired"] and len(new) == third["examples_written"]
    # Examples of the unchanged sections kept their ids (and now point at the new chunks).
    kept = [after[i] for i in before.keys() & after.keys() if after[i]["provenance"]["document_id"] == doc.id]
    assert kept and all(r["provenance"]["chunk_id"] in {c.id for c in live} for r in kept if r["kind"] == "cpt")


def test_near_duplicate_documents_are_learned_once(ctx: Context) -> None:
    body = " ".join(f"Step {i}: restart the indexer on node n{i} and wait for green." for i in range(40))
    ingest(ctx, "assistant", [
        {"type": "document", "external_id": "a", "title": "Indexer runbook", "text": body},
        {"type": "document", "external_id": "b", "title": "Indexer runbook (copy)",
         "text": body.replace("node n7 ", "node N-7 ")},
    ])
    result = process_team(ctx, "platform")
    assert (result["documents_processed"], result["documents_duplicate"]) == (2, 1)
    with ctx.session() as s:
        owners = {d.external_id for d in s.scalars(select(models.Document).join(
            models.Chunk, models.Chunk.document_id == models.Document.id))}
    assert owners == {"a"}


def test_a_document_whose_acl_moves_it_to_another_team_flags_the_first_team(ctx: Context) -> None:
    page = {"type": "document", "external_id": "shared", "title": "Escalations",
            "text": "Bugs are escalated to engineering through the Kestrel queue.", "acl": ["team:platform"]}
    ingest(ctx, "assistant", [page])
    process_all(ctx)
    with ctx.session() as s:
        platform = ctx.team_row(s, "platform").id
        example = s.scalar(select(models.Example.id).where(models.Example.team_id == platform))
        adapter = models.Adapter(team_id=platform, version=1, status="active", base_model="tiny-random")
        s.add(adapter)
        s.flush()
        s.add(models.AdapterLineage(adapter_id=adapter.id, example_id=example))
        adapter_id = adapter.id
    ingest(ctx, "assistant", [dict(page, acl=["team:support"])])
    result = process_team(ctx, "platform")  # processing after the sync of platform's source …
    assert result["documents_processed"] == 0  # … finds the page is not platform's any more,
    moved = result["other_teams"]["support"]  # … and builds it for support in the same call
    assert moved["documents_processed"] == 1 and moved["adapters_flagged"] == 1
    assert process_team(ctx, "support")["documents_processed"] == 0
    assert examples(ctx, "platform") == []
    assert any("Kestrel" in json.dumps(r["payload"]) for r in examples(ctx, "support"))
    with ctx.session() as s:
        assert "now feeds team support" in s.get(models.Adapter, adapter_id).flag_reason


def test_teacher_examples_from_an_openai_compatible_server(default_sources: str, default_teams: str, make_ctx: Callable[..., Context], sqlite_url: str) -> None:
    with serve_fake_openai() as url:
        body = default_teams.replace('name = "platform"\nbase_model = "tiny-random"',
                                     f'name = "platform"\nbase_model = "tiny-random"\n'
                                     f'[teams.training]\nteacher = "{url}"\nteacher_model = "m"') + default_sources
        ctx = make_ctx(sqlite_url, body=body)
        ingest(ctx, "assistant", [{"type": "document", "external_id": "p", "title": "Basalt",
                                   "text": "# Basalt\n\nBackups are kept for 35 days. Mail ada@lumenlabs.example."}])
        result = process_team(ctx, "platform")
    assert result["teacher_examples"] == 3
    teacher = [r for r in examples(ctx, "platform") if r["origin"] == "teacher"]
    assert Counter(r["kind"] for r in teacher) == {"qa": 1, "cpt": 2}
    qa = next(r for r in teacher if r["kind"] == "qa")
    assert qa["payload"] == {"question": "What does Basalt say?",
                             "answer": "# Basalt\n\nBackups are kept for 35 days. Mail [EMAIL]."}
    assert qa["provenance"]["chunk_id"] is not None


def test_tacit_process_and_export_examples_on_the_command_line(ctx: Context, tmp_path: Path) -> None:
    from tacit.cli import app

    runner = CliRunner()
    for source, rows in records().items():
        write_jsonl(tmp_path / f"{source}.jsonl", rows)
        res = runner.invoke(app, ["import", f"{source}.jsonl", "--source", source])
        assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["process"])
    assert res.exit_code == 0, res.output
    # The imports were processed as they came (eager mode), support's pages from the platform
    # source (a shared workspace) included.
    assert "platform: documents_processed 0" in res.output and "support: documents_processed 0" in res.output
    res = runner.invoke(app, ["export", "examples", "support"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert {r["kind"] for r in rows} == {"cpt", "qa", "chat", "preference"}
    assert all(r["team"] == "support" and set(r["provenance"]) == {"chunk_id", "document_id", "interaction_id"}
               for r in rows)
    assert all(any(r["provenance"].values()) for r in rows)


def test_an_unknown_teacher_is_a_configuration_error(default_sources: str, default_teams: str, make_ctx: Callable[..., Context], sqlite_url: str) -> None:
    body = default_teams.replace('name = "support"\nbase_model = "tiny-random"',
                                 'name = "support"\nbase_model = "tiny-random"\n[teams.training]\nteacher = "gpt-please"')
    with pytest.raises(ConfigError, match="teams.1.training.teacher: teacher must be none, self or"):
        make_ctx(sqlite_url, body=body + default_sources)


def test_an_unreachable_teacher_is_counted_and_processing_goes_on(default_sources: str, default_teams: str, make_ctx: Callable[..., Context],
                                                                  sqlite_url: str) -> None:
    body = default_teams.replace('name = "support"\nbase_model = "tiny-random"',
                                 'name = "support"\nbase_model = "tiny-random"\n[teams.training]\n'
                                 'teacher = "http://127.0.0.1:1/v1"')
    ctx = make_ctx(sqlite_url, body=body + default_sources)
    text = "\n\n".join(f"# Part {i}\n\nSome text about part {i} here." for i in range(5))
    ingest(ctx, "helpdesk", [{"type": "document", "external_id": "x", "title": "T", "text": text}])
    result = process_team(ctx, "support")
    assert result["documents_processed"] == 1 and result["teacher_failures"] == 3  # then it gave up
    assert {r["origin"] for r in examples(ctx, "support")} == {"chunk", "structure", "study"}


def test_changing_team_principals_reroutes_processed_documents(default_sources: str, default_teams: str, make_ctx: Callable[..., Context],
                                                              sqlite_url: str) -> None:
    page = {"type": "document", "external_id": "helpdesk-guide", "title": "Helpdesk guide",
            "text": "Customer conversations are handled in the Harbor helpdesk.", "acl": ["group:helpdesk-agents"]}
    ctx = make_ctx(sqlite_url)
    ingest(ctx, "assistant", [page])
    assert process_team(ctx, "platform")["documents_processed"] == 1  # no team principal: the source's team
    with ctx.session() as s:
        platform = ctx.team_row(s, "platform").id
        adapter = models.Adapter(team_id=platform, version=1, status="active", base_model="tiny-random")
        s.add(adapter)
        s.flush()
        s.add(models.AdapterLineage(adapter_id=adapter.id, example_id=s.scalar(select(models.Example.id))))
        adapter_id = adapter.id
    assert process_team(ctx, "platform")["rerouted"] == 0
    body = default_teams.replace('name = "support"\nbase_model = "tiny-random"',
                                 'name = "support"\nbase_model = "tiny-random"\nprincipals = ["group:helpdesk-agents"]')
    ctx = make_ctx(sqlite_url, body=body + default_sources)
    result = process_team(ctx, "platform")
    assert (result["rerouted"], result["documents_processed"], result["adapters_flagged"]) == (1, 0, 1)
    assert examples(ctx, "platform") == []
    assert result["other_teams"]["support"]["documents_processed"] == 1
    assert any("Harbor" in json.dumps(r["payload"]) for r in examples(ctx, "support"))
    with ctx.session() as s:
        assert "now feed team support" in s.get(models.Adapter, adapter_id).flag_reason
    assert process_team(ctx, "support")["rerouted"] == 0
