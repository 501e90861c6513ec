"""The command line in scripts: --version, --json everywhere, the team named first, not-found
exits, JSON log lines, `tacit doctor` against the sandbox and a running API, empty answers."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import pytest

from connectors.sandbox.company import TEAMS
from connectors.sandbox.notion import NotionSandbox
from connectors.sandbox.server import ThreadedServer, free_port
from ingestion.api.app import create_app
from tacit.config import load_config
from tacit.context import Context
from tacit.logs import JsonFormatter

#: The `tacit` fixture (conftest.py): the command line in a fresh process.
Tacit = Callable[..., subprocess.CompletedProcess[str]]
#: The `write_config` fixture (conftest.py).
WriteConfig = Callable[..., Path]

DOC = {"type": "document", "external_id": "runbook", "title": "Deploy runbook",
       "text": "# Deploys\n\nThe deploy freeze starts Thursday at 16:00 UTC.", "acl": ["team:platform"]}
TEAM_BLOCK = "".join(f'[[teams]]\nname = "{t.name}"\nbase_model = "tiny-random"\n\n' for t in TEAMS)


def one_json(proc: subprocess.CompletedProcess[str]) -> object:
    """The whole of stdout is one JSON document (json.loads refuses anything after it)."""
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_version(tacit: Tacit, tmp_path: Path) -> None:
    proc = tacit("--version", cwd=tmp_path)  # no tacit.toml needed
    assert (proc.returncode, proc.stdout) == (0, f"tacit {version('tacitlm')}\n")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_json_on_lists_shows_and_results_and_the_team_named_first(tacit: Tacit, tmp_path: Path, db_url: str,
                                                                  write_config: WriteConfig, default_teams: str,
                                                                  default_sources: str) -> None:
    config = write_config(tmp_path, db_url, default_teams + default_sources)
    (tmp_path / "records.jsonl").write_text(json.dumps(DOC) + "\n")
    imported = one_json(tacit("import", "records.jsonl", "--source", "assistant", "--json", config=config))
    assert imported["totals"]["documents_written"] == 1 and imported["queued"] is False  # type: ignore[index]

    processed = one_json(tacit("process", "platform", "--json", config=config))
    assert set(processed) == {"platform"} and processed["platform"]["documents_processed"] == 0  # type: ignore[index]
    every = one_json(tacit("process", "--json", config=config))
    assert set(every) == {"platform", "support"}  # type: ignore[arg-type]
    old = tacit("process", "--team", "platform", "--json", config=config)
    assert one_json(old) == processed and "--team is deprecated" in old.stderr

    rows = tacit("export", "documents", "platform", config=config, check=True).stdout.splitlines()
    assert [json.loads(r)["external_id"] for r in rows] == ["runbook"]
    old = tacit("export", "documents", "--team", "platform", config=config, check=True)
    assert old.stdout.splitlines() == rows and "name the team first: tacit export documents platform" in old.stderr
    assert tacit("export", "chunks", config=config).returncode == 2  # no team at all

    for args, check in [
        (("status", "--json"), lambda d: {t["name"] for t in d["teams"]} == {"platform", "support"}),
        (("sources", "list", "--json"), lambda d: [s["name"] for s in d] == ["assistant", "helpdesk"]),
        (("sources", "show", "assistant", "--json"), lambda d: d["name"] == "assistant"),
        (("events", "list", "--json"), lambda d: len(d) == 1 and d[0]["status"] == "processed"),
        (("adapters", "list", "platform", "--json"), lambda d: d == []),
        (("keys", "list", "platform", "--json"), lambda d: d == []),
        (("doctor", "--json"), lambda d: d["ok"] is True),
    ]:
        assert check(one_json(tacit(*args, config=config))), args

    # An unknown team, source or version: its own exit status (4), one line naming it.
    for args, needle in [(("adapters", "list", "nobody"), "no team named 'nobody'"),
                         (("sources", "show", "nothing"), "no source named 'nothing'"),
                         (("adapters", "show", "platform", "3"), "team platform has no adapter version 3")]:
        proc = tacit(*args, config=config)
        assert proc.returncode == 4 and proc.stderr.count("\n") == 1 and needle in proc.stderr, (args, proc.stderr)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_logs_as_json_lines_on_request(tacit: Tacit, tmp_path: Path, db_url: str, write_config: WriteConfig) -> None:
    config = write_config(tmp_path, db_url)
    for proc in (tacit("--log-format", "json", "-v", "status", "--json", config=config),
                 tacit("-v", "status", "--json", config=config, env={"TACIT_LOG_FORMAT": "json"})):
        assert proc.returncode == 0, proc.stderr
        json.loads(proc.stdout)  # stdout stays the command's one document
        lines = [json.loads(line) for line in proc.stderr.splitlines()]
        assert lines and all({"time", "level", "logger", "message"} <= set(entry) for entry in lines)
        assert any(entry["logger"].startswith("alembic") for entry in lines)
    text = tacit("-v", "status", "--json", config=config)
    assert text.stderr and not text.stderr.lstrip().startswith("{")
    bad = tacit("--log-format", "xml", "status", config=config)
    assert bad.returncode == 2 and "use text or json" in bad.stderr


def test_json_formatter_keeps_extra_fields_and_tracebacks() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("tacit.x", logging.ERROR, __file__, 1, "sync of %s failed", ("lumen",),
                                   sys.exc_info())
    record.source = "lumen"
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "sync of lumen failed" and entry["level"] == "error" and entry["source"] == "lumen"
    assert "ValueError: boom" in entry["exception"] and entry["time"].endswith("Z")


def test_doctor_passes_on_a_ready_installation_and_names_each_failure(tacit: Tacit, tmp_path: Path, db_url: str,
                                                                      write_config: WriteConfig,
                                                                      default_sources: str) -> None:
    with NotionSandbox() as notion:
        config = write_config(tmp_path, db_url, TEAM_BLOCK + notion.source_block("lumen", "platform") + default_sources)
        ctx = Context(load_config(config))  # migrated, as any command leaves it
        with ThreadedServer(create_app(ctx)) as api:
            text = config.read_text().replace("[queue]", f'[api]\npublic_url = "{api.url}/"\n\n[queue]')
            config.write_text(text)
            before = notion.request_count
            proc = tacit("doctor", "--json", config=config)
            report = one_json(proc)
            assert proc.stderr == ""
            status = {c["check"]: c["status"] for c in report["checks"]}  # type: ignore[index]
            assert report["ok"] is True and status == {  # type: ignore[index]
                "database": "ok", "secret key": "ok", "broker": "skip", "base model tiny-random": "ok",
                "source lumen": "ok", "source assistant": "ok", "source helpdesk": "ok", "public URL": "ok"}
            assert notion.request_count - before == 1  # one cheap authenticated call
            table = tacit("doctor", config=config)
            assert table.returncode == 0 and "credentials accepted" in table.stdout

        # A wrong token, a public URL nobody answers, a broker that is down, a base model that is
        # not there, and a database never migrated: one line each, exit status 1.
        broken = (text.replace(notion.token, "secret_wrong").replace(api.url, f"http://127.0.0.1:{free_port()}")
                  .replace('broker_url = "memory://"', f'broker_url = "redis://127.0.0.1:{free_port()}/0"')
                  .replace('base_model = "tiny-random"', 'base_model = "no-such-model"', 1))
        other = tmp_path / "other"
        other.mkdir()
        broken = broken.replace(db_url, f"sqlite:///{other / 'fresh.db'}")
        (other / "tacit.toml").write_text(broken)
        proc = tacit("doctor", config=other / "tacit.toml")
    assert proc.returncode == 1
    # (logs, such as the rate budget falling back from the dead Redis, may come between)
    failures = [line for line in proc.stderr.splitlines() if line.startswith("tacit doctor: ")]
    assert len(failures) == 5, proc.stderr
    named = "\n".join(failures)
    for needle in ("database: schema at no migration", "broker: redis://127.0.0.1", "base model no-such-model",
                   "source lumen: notion: credentials refused", "public URL: http://127.0.0.1"):
        assert needle in named, needle


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sync_json_is_one_document_with_each_source_and_what_was_processed(tacit: Tacit, tmp_path: Path, db_url: str,
                                                                          write_config: WriteConfig) -> None:
    with NotionSandbox() as notion:
        config = write_config(tmp_path, db_url, TEAM_BLOCK + notion.source_block("lumen", "platform"))
        result = one_json(tacit("sync", "--json", config=config))
    assert result["queued"] == [] and result["sources"]["lumen"]["status"] == "succeeded"  # type: ignore[index]
    assert result["sources"]["lumen"]["documents_written"] == 27  # type: ignore[index]
    assert result["processed"]["platform"]["documents_processed"] > 0  # type: ignore[index]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_an_empty_answer_says_so(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                 tmp_path: Path, db_url: str, write_config: WriteConfig) -> None:
    from tacit.cli import main
    from training import service

    write_config(tmp_path, db_url)
    monkeypatch.setattr(service, "ask", lambda *a, **k: " \n")
    with pytest.raises(SystemExit) as exit_info:
        main(["ask", "platform", "When is the freeze?", "--base"])
    captured = capsys.readouterr()
    assert exit_info.value.code == 0 and captured.out == ""
    assert "platform: the base model gave an empty answer" in " ".join(captured.err.split())
