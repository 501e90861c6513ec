"""`tacit train`, `tacit adapters list|show|promote|rollback|export` and `tacit ask` on tiny-random."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tacit.cli import main
from tacit.config import load_config
from tacit.context import Context
from tests.training.helpers import PLATFORM_QA, add_chunk, add_qa, body
from training import service


def run(capsys, *args: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as exit_info:
        main(["--config", "tacit.toml", *args])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_train_adapters_and_ask_from_the_command_line(write_config: Callable[..., Path], capsys, sqlite_url, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write_config(tmp_path, sqlite_url, body(tmp_path))
    ctx = Context(load_config(path))
    add_qa(ctx, "platform", PLATFORM_QA)
    add_chunk(ctx, "platform", "assistant", "deploys", "Production deploys go through the Skylark pipeline.")

    code, out, err = run(capsys, "train", "platform", "--json")
    assert code == 0, err
    assert out.count("\n") == 1  # --json: one line, the progress on stderr
    result = json.loads(out)
    assert (result["status"], result["version"]) == ("promoted", 1)
    assert "platform: version 1 promoted" in " ".join(err.split())

    code, out, _ = run(capsys, "train", "platform")
    assert code == 0 and json.loads(out)["status"] == "skipped"
    code, out, _ = run(capsys, "train", "platform", "--force")
    assert code == 0 and json.loads(out)["reason"].startswith("nothing to train on")

    add_qa(ctx, "platform", [("Where is service ownership recorded?", "Atlas")])
    code, out, err = run(capsys, "train", "platform")
    second = json.loads(out)
    assert code == 0 and second["version"] == 2 and second["continued_from"] == 1, err

    code, out, _ = run(capsys, "adapters", "list", "platform", "--json")
    listed = json.loads(out)
    assert [(r["version"], r["parent_version"]) for r in listed] == [(1, None), (2, 1)]
    code, out, _ = run(capsys, "adapters", "list", "platform")
    assert code == 0 and "active" in out

    code, out, _ = run(capsys, "adapters", "show", "platform", "1")
    shown = json.loads(out)
    assert shown["version"] == 1 and shown["lineage"]["new"] == 4 and shown["metrics"]["qa_n"] == 6
    # the prompt-stuffing baseline beside the adapter, with F1 beside each match
    for key in ("qa_rag", "qa_adapter_rag", "qa_rag_f1", "qa_adapter_rag_f1", "qa_f1_before", "qa_f1_after"):
        assert 0.0 <= shown["metrics"][key] <= 1.0, key

    code, out, _ = run(capsys, "adapters", "show", "platform", "1", "--json")
    assert code == 0 and out.count("\n") == 1 and json.loads(out) == shown

    # The demo's report, for this team's active version.
    code, out, err = run(capsys, "report", "platform", "--out", str(tmp_path / "report"))
    assert code == 0 and Path(out.strip()) == tmp_path / "report" / "report.md", err
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    active_now = json.loads(run(capsys, "adapters", "show", "platform", "--json")[1])
    figures = summary["teams"]["platform"]
    assert figures["adapter_version"] == active_now["version"]
    assert figures["qa_after"] == active_now["metrics"]["qa_after"] and len(summary["samples"]["platform"]) == 6
    assert summary["leakage"]["teams"] == ["platform"] and (tmp_path / "report" / "qa.png").exists()
    assert f"| platform | v{active_now['version']} |" in Path(out.strip()).read_text()
    code, _, err = run(capsys, "report", "support")
    assert code == 4 and "team support has no active adapter" in err

    active = next(r["version"] for r in listed if r["status"] == "active")
    other = 3 - active
    code, out, _ = run(capsys, "adapters", "promote", "platform", str(other))
    assert code == 0 and out.strip() == f"platform: version {other} is active (was {active})"
    code, out, _ = run(capsys, "adapters", "rollback", "platform")
    assert code == 0 and out.strip() == f"platform: rolled back from version {other} to version {active}"

    code, out, _ = run(capsys, "adapters", "export", "platform", str(tmp_path / "out"))
    assert code == 0 and Path(out.strip()) == tmp_path / "out"
    assert (tmp_path / "out" / "adapter_model.safetensors").exists()
    code, _, err = run(capsys, "adapters", "export", "platform", str(tmp_path / "out"))
    assert code == 1 and err.startswith("tacit: ExportError:") and err.count("\n") == 1

    code, out, _ = run(capsys, "ask", "platform", "Which pipeline do production deploys go through?",
                       "--max-new-tokens", "8")
    assert code == 0
    assert out.strip() == service.ask(ctx, "platform", "Which pipeline do production deploys go through?",
                                      max_new_tokens=8)
    code, base_out, _ = run(capsys, "ask", "platform", "Which pipeline do production deploys go through?", "--base",
                            "--max-new-tokens", "8")
    assert code == 0 and base_out != out  # the adapter changes the answer

    code, _, err = run(capsys, "adapters", "show", "platform", "7")
    assert code == 4 and err.strip() == "tacit: team platform has no adapter version 7"
    code, _, err = run(capsys, "ask", "support", "Which helpdesk?")
    assert code == 4 and "team support has no active adapter yet" in err


def test_missing_base_model_is_one_line(write_config: Callable[..., Path], capsys, sqlite_url, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    write_config(tmp_path, sqlite_url, body(tmp_path, base_model="no-such-model"))
    code, out, err = run(capsys, "train", "platform")
    assert code == 1 and out == ""
    assert err.startswith("tacit: BaseModelError: unknown base model 'no-such-model'") and err.count("\n") == 1
