"""`tacit sync` (the real command, in a subprocess) against the Notion sandbox, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from connectors.sandbox.company import FACTS, TEAMS
from connectors.sandbox.notion import NotionSandbox
from db import models
from tacit.context import Context
from tests.conftest import write_config
from tests.connectors.harness_notion import NotionHarness

#: The `tacit` fixture (conftest.py): the command line in a fresh process.
Tacit = Callable[..., subprocess.CompletedProcess[str]]

TEAM_BLOCK = "".join(f'[[teams]]\nname = "{t.name}"\nbase_model = "tiny-random"\n\n' for t in TEAMS)


def stored(ctx: Context) -> tuple[dict[str, models.Document], dict[str, models.Interaction], int]:
    with ctx.session() as session:
        docs = {d.external_id: d for d in session.scalars(select(models.Document).where(
            models.Document.deleted_at.is_(None)))}
        threads = {i.external_id: i for i in session.scalars(select(models.Interaction).where(
            models.Interaction.deleted_at.is_(None)))}
        rows = (session.scalar(select(func.count()).select_from(models.Document))
                + session.scalar(select(func.count()).select_from(models.Interaction)))
        session.expunge_all()
    return docs, threads, rows


def test_tacit_sync_brings_every_page_row_and_comment(tacit: Tacit, sandbox: NotionSandbox, db_url: str,
                                                      tmp_path: Path) -> None:
    config = write_config(tmp_path, db_url, TEAM_BLOCK + NotionHarness(sandbox).source_block("lumen", "platform"))
    run = tacit("sync", "lumen", config=config)
    assert run.returncode == 0, run.stderr
    assert "lumen: 27 documents written" in run.stdout and "13 interactions" in run.stdout
    ctx = Context.load(config)
    docs, threads, rows = stored(ctx)
    assert set(docs) | set(threads) == sandbox.expected_ids("blocks") and rows == len(docs) + len(threads)

    # Every fact is in a prose paragraph of its topic page, under a heading that names its subject
    # (not the question); only the discussed few are also asked and answered on that page.
    for fact in FACTS:
        page = docs[sandbox.page_id(f"{fact.team}/{fact.topic}")]
        assert fact.paragraph in page.text and f"## {fact.section}" in page.text and fact.question not in page.text
        assert page.acl == [f"team:{fact.team}"] and page.source_updated_at is not None
        asked = [t for t in threads.values() if t.messages[0]["text"] == fact.question]
        assert len(asked) == (1 if fact.discussed else 0)
        if fact.discussed:
            assert asked[0].document_external_id == page.external_id and asked[0].kind == "thread"
            assert fact.answer.lower() in asked[0].messages[1]["text"].lower()
    basalt = docs[sandbox.page_id("platform/row/Basalt")]
    assert "- **Backup retention days**: 35" in basalt.text and "- **Retention**: 35 days" in basalt.text
    assert "- **Owner**: Chen Liu" in basalt.text and basalt.meta["data_source"] == "Services"
    assert basalt.authors == ["Chen Liu"]
    blocks = [t for t in threads.values() if t.meta["on"] == "block"]
    assert len(blocks) == 3 and all(t.messages[0]["text"] == "Is this still current?" for t in blocks)

    # The checkpoint is small and readable; a second run reads nothing.
    show = tacit("sources", "show", "lumen", "--json", config=config)
    assert show.returncode == 0, show.stderr
    detail = json.loads(show.stdout)
    assert detail["checkpoint"]["pages"] == 27 and detail["settings"]["token"] == "********"
    assert sandbox.token not in show.stdout
    before = sandbox.request_count
    again = tacit("sync", "lumen", config=config)
    assert again.returncode == 0 and "0 documents written, 0 unchanged, 0 interactions" in again.stdout
    assert sandbox.request_count - before == 1 + 1 + 3  # check, one search page, one query per data source


def test_tacit_sync_with_a_bad_token_fails_cleanly(tacit: Tacit, sandbox: NotionSandbox, sqlite_url: str,
                                                   tmp_path: Path) -> None:
    block = NotionHarness(sandbox).source_block("lumen", "platform").replace(sandbox.token, "ntn_revoked_secret")
    config = write_config(tmp_path, sqlite_url, TEAM_BLOCK + block)
    run = tacit("sync", "lumen", config=config)
    assert run.returncode == 1
    said = " ".join((run.stderr + run.stdout).split())
    assert "lumen: sync failed: AuthError: Notion refused the integration token (401 unauthorized)" in said
    assert "ntn_revoked_secret" not in run.stderr + run.stdout
    show = json.loads(tacit("sources", "show", "lumen", "--json", config=config).stdout)
    assert show["status"] == "failing" and "401" in show["last_error"]


@pytest.mark.slow
def test_sigkilled_sync_resumes_with_nothing_missing_or_duplicated(tacit: Tacit, sandbox: NotionSandbox,
                                                                   sqlite_url: str, tmp_path: Path) -> None:
    harness = NotionHarness(sandbox)
    config = write_config(tmp_path, sqlite_url, TEAM_BLOCK + harness.source_block("lumen", "platform"))
    env = {**os.environ, "TACIT_CONFIG": str(config)}
    needed = sandbox.minimum_requests("blocks")["total"]
    start = sandbox.request_count
    proc = subprocess.Popen([sys.executable, "-m", "tacit.cli", "sync", "lumen"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while sandbox.request_count - start < needed * 2 // 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ctx = Context.load(config)
    partial, _, _ = stored(ctx)
    assert 0 < len(partial) < 27, "the sync was not killed in the middle"
    with ctx.session() as session:
        checkpoint = ctx.source_row(session, "lumen").checkpoint
    assert checkpoint and checkpoint["pages"] > 0  # a mark was committed with the records before it

    resumed_from = sandbox.request_count
    run = tacit("sync", "lumen", config=config)
    assert run.returncode == 0, run.stderr
    assert sandbox.request_count - resumed_from < needed  # it resumed; it did not start over
    docs, threads, rows = stored(ctx)
    assert set(docs) | set(threads) == sandbox.expected_ids("blocks")
    assert rows == len(docs) + len(threads)
    with ctx.session() as session:
        assert set(session.scalars(select(models.Document.version))) == {1}
        statuses = list(session.scalars(select(models.SyncRun.status).order_by(models.SyncRun.id)))
    assert statuses == ["interrupted", "succeeded"]
