"""The command line as users and scripts see it: exit codes, one-line errors, JSON outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

#: The `tacit` fixture (conftest.py): the command line in a fresh process.
Tacit = Callable[..., subprocess.CompletedProcess[str]]

RECORDS = [
    {"type": "document", "external_id": "runbook", "title": "Deploy runbook",
     "text": "# Deploys\n\nThe deploy freeze starts Thursday at 16:00 UTC.", "url": "https://wiki/runbook",
     "authors": ["ada@lumenlabs.example"], "created_at": "2026-01-02T10:00:00Z",
     "updated_at": "2026-01-03T10:00:00Z", "acl": ["team:platform"], "metadata": {"space": "eng"}},
    {"type": "interaction", "external_id": "thread-1", "kind": "thread",
     "messages": [{"author": "bram", "role": "user", "text": "When is the freeze?", "at": "2026-01-04T09:00:00Z"},
                  {"author": "ada", "role": "assistant", "text": "Thursday 16:00 UTC."}]},
]


@pytest.fixture
def project(default_sources: str, default_teams: str, write_config: Callable[..., Path], tmp_path: Path, db_url: str) -> Path:
    write_config(tmp_path, db_url, default_teams + default_sources)
    (tmp_path / "records.jsonl").write_text("\n".join(json.dumps(r) for r in RECORDS) + "\n\nnot json\n")
    return tmp_path


def test_import_then_export_documents_in_the_record_format(tacit: Tacit, project: Path) -> None:
    proc = tacit("import", "records.jsonl", "--source", "assistant", cwd=project, check=True)
    assert "1 documents written" in proc.stdout and "1 failures" in proc.stdout
    out = tacit("export", "documents", "platform", cwd=project, check=True).stdout
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 1
    doc = rows[0]
    for key in ("type", "external_id", "title", "text", "url", "authors", "created_at", "updated_at",
                "parent_external_id", "acl", "metadata"):
        assert doc[key] == RECORDS[0].get(key, doc[key]) or key in ("created_at", "updated_at")
    assert doc["created_at"] == "2026-01-02T10:00:00Z"
    assert (doc["source"], doc["team"], doc["version"]) == ("assistant", "platform", 1)
    inter = [json.loads(x) for x in tacit("export", "interactions", "platform", cwd=project).stdout.splitlines()]
    assert inter[0]["messages"][0]["text"] == "When is the freeze?"
    # The other team sees nothing of it.
    assert tacit("export", "documents", "support", cwd=project, check=True).stdout == ""


def test_second_import_is_a_no_op_and_tombstones_show_with_include_deleted(tacit: Tacit, project: Path) -> None:
    tacit("import", "records.jsonl", "--source", "assistant", cwd=project, check=True)
    assert "nothing new" in tacit("import", "records.jsonl", "--source", "assistant", cwd=project, check=True).stdout
    (project / "gone.jsonl").write_text(json.dumps({"type": "tombstone", "external_id": "runbook"}) + "\n")
    tacit("import", "gone.jsonl", "--source", "assistant", cwd=project, check=True)
    assert tacit("export", "documents", "platform", cwd=project).stdout == ""
    rows = tacit("export", "documents", "platform", "--include-deleted", cwd=project).stdout.splitlines()
    assert len(rows) == 1 and json.loads(rows[0])["deleted_at"]


def test_status_json_is_one_document(tacit: Tacit, project: Path) -> None:
    tacit("import", "records.jsonl", "--source", "assistant", cwd=project, check=True)
    data = json.loads(tacit("status", "--json", cwd=project, check=True).stdout)
    platform = next(t for t in data["teams"] if t["name"] == "platform")
    assert platform["documents"] == 1 and platform["interactions"] == 1
    assert {s["name"] for s in data["sources"]} == {"assistant", "helpdesk"}
    assert "password" not in json.dumps(data)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        ("[[teams]]\nname = 'x'\n[storage\n", "invalid TOML"),
        ("[[teams]]\nname = 'Bad Name'\n", "teams.0.name"),
        ("[[teams]]\nname = 'a'\n[[sources]]\nname = 's'\nkind = 'webhook'\nteam = 'nope'\n", "unknown team 'nope'"),
        ("[[teams]]\nname = 'a'\n[[sources]]\nname = 's'\nkind = 'ftp'\nteam = 'a'\n", "unknown connector kind 'ftp'"),
        ("[[teams]]\nname = 'a'\n[[sources]]\nname = 's'\nkind = 'webhook'\nteam = 'a'\nsecret = '${NOPE_UNSET}'\n",
         "NOPE_UNSET is not set"),
        ("[queue]\nbroker_url = 1\n", "queue.broker_url"),
        ("[[teams]]\nname = 'a'\n[teams.training]\nrank = 12\n", "teams.0.training.rank"),
        ("[[teams]]\nname = 'a'\n[[teams]]\nname = 'a'\n", "duplicate team name"),
    ],
)
def test_bad_config_is_one_line_and_exit_2(tacit: Tacit, tmp_path: Path, db_url: str, toml: str,
                                           needle: str) -> None:
    (tmp_path / "tacit.toml").write_text(toml)
    proc = tacit("status", cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "tacit.toml" in lines[0] and needle in lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_bad_arguments_exit_2_and_unknown_names_exit_4(tacit: Tacit, project: Path) -> None:
    for args, code in ((["import", "missing.jsonl", "--source", "assistant"], 2), (["frobnicate"], 2),
                       (["export", "documents"], 2), (["import", "records.jsonl", "--source", "nope"], 4),
                       (["export", "documents", "nope"], 4), (["sync", "nope"], 4)):
        proc = tacit(*args, cwd=project)
        assert proc.returncode == code, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, (args, proc.stderr)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_env_interpolation_and_secrets_not_stored_in_clear(default_sources: str, default_teams: str, write_config: Callable[..., Path], project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = default_teams + default_sources.replace('team = "platform"', 'team = "platform"\nsecret = "${HOOK_SECRET}"', 1)
    write_config(project, f"sqlite:///{project / 'tacit.db'}", body)
    monkeypatch.setenv("HOOK_SECRET", secret)
    proc = subprocess.run([sys.executable, "-m", "tacit.cli", "sources", "show", "assistant", "--json"], cwd=project,
                          capture_output=True, text=True, env={**__import__("os").environ, "HOOK_SECRET": secret})
    assert proc.returncode == 0, proc.stderr
    assert secret not in proc.stdout and json.loads(proc.stdout)["settings"]["secret"] == "********"
    assert secret.encode() not in (project / "tacit.db").read_bytes()
