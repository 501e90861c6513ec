"""`tacit sync` (the real command, in a subprocess) against the fake Graph, then `tacit export` to read back."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from connectors.sandbox.company import discussed_for, facts_for
from connectors.sandbox.graph import GraphSandbox
from connectors.sandbox.graph.workspace import Workspace
from tests.conftest import write_config
from tests.connectors.harness_msgraph import source_toml

#: The `tacit` fixture (conftest.py): the command line in a fresh process.
Tacit = Callable[..., subprocess.CompletedProcess[str]]

TEAMS = '[[teams]]\nname = "platform"\nbase_model = "tiny-random"\n\n'


GRAPH_PAGE_SIZE = 8  # the `sandbox` fixture's page size (conftest.py)


@pytest.mark.slow
def test_tacit_sync_brings_files_mail_and_teams_threads(tacit: Tacit, sandbox: tuple[GraphSandbox, Workspace],
                                                       tmp_path: Path, db_url: str) -> None:
    sb, ws = sandbox
    write_config(tmp_path, db_url, TEAMS + source_toml(sb, ws, "m365", "platform"))
    proc = tacit("sync", "m365", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    # 7 files of the platform site, Ada's OneDrive note, the long digest mail; 3 mail and 2 Teams threads;
    # the truncated .docx and the encrypted .pdf fail
    assert "m365: 9 documents written, 0 unchanged, 5 interactions, 0 tombstones, 2 failures" in proc.stdout
    assert sb.client_secret not in proc.stdout + proc.stderr

    docs = [json.loads(line) for line in tacit("export", "documents", "--team", "platform",
                                                  cwd=tmp_path).stdout.splitlines()]
    assert {d["external_id"] for d in docs} == ws.expected_ids("platform", onedrive=True) - {
        t for t in ws.teams["platform"].threads}
    text = " ".join(" ".join(d["text"] for d in docs if d["metadata"].get("source") == "drive").split())
    for fact in facts_for("platform"):
        assert fact.statement in text
    by_title = {d["title"]: d for d in docs}
    # the Markdown names where the file lives, then its content
    assert by_title["Databases.xlsx"]["text"].startswith(
        "Location: Platform Engineering / Documents / Handbook / Databases.xlsx\n\n## Databases\n\n| Topic | Statement |")
    assert by_title["Databases.xlsx"]["metadata"]["folder"] == "/Handbook"
    assert "user:ada@lumenlabs.example" in by_title["Databases.xlsx"]["acl"]

    threads = [json.loads(line) for line in tacit("export", "interactions", "--team", "platform",
                                                     cwd=tmp_path).stdout.splitlines()]
    # a mail conversation and a Teams thread for each of the few discussed facts, and the digest
    assert len(threads) == 2 * len(discussed_for("platform")) + 1 == 5 and {t["kind"] for t in threads} == {"thread"}
    fact = facts_for("platform")[4]  # "What is the primary Postgres cluster called?"
    mail = next(t for t in threads if t["metadata"]["source"] == "mail"
                and fact.question in t["messages"][0]["text"])
    assert fact.statement in mail["messages"][1]["text"] and "From:" not in mail["messages"][1]["text"]
    chat = next(t for t in threads if t["metadata"]["source"] == "teams" and t["messages"][0]["text"] == fact.question)
    assert [m["text"] for m in chat["messages"]][:2] == [fact.question, fact.statement]
    assert chat["metadata"]["channel"] == "Help"


def test_bad_graph_settings_are_one_line_and_exit_2(tacit: Tacit, tmp_path: Path, sqlite_url: str) -> None:
    write_config(tmp_path, sqlite_url, TEAMS + '[[sources]]\nname = "m365"\nkind = "msgraph"\nteam = "platform"\n'
                 'client_id = "abc"\nsites = ["contoso.sharepoint.com:/sites/eng"]\n')
    proc = tacit("sync", "m365", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "sources.0 (m365)" in proc.stderr and "client credentials need all of tenant_id" in proc.stderr
