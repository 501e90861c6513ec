"""Forgetting stays done: a version still carrying a document deleted at its source cannot be made
active again (promote, rollback) or exported without `--force`, and a forced override is recorded."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from db import models
from db.base import utcnow
from tacit.cli import main
from tacit.config import load_config
from tacit.context import Context
from tests.training.helpers import add_document, add_example, body
from training.export_readme import peft_base_model

RANK = 8


def _lora_dir(path: Path) -> str:
    """A minimal valid PEFT LoRA folder (one module), so promote/export can check it."""
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "r": RANK, "lora_alpha": 16, "target_modules": ["q_proj"],
        "base_model_name_or_path": "/home/someone/.tacit/models/tiny-random"}), encoding="utf-8")
    prefix = "base_model.model.model.layers.0.self_attn.q_proj"
    save_file({f"{prefix}.lora_A.weight": torch.zeros(RANK, 16), f"{prefix}.lora_B.weight": torch.zeros(16, RANK)},
              str(path / "adapter_model.safetensors"))
    return str(path)


def _history(ctx: Context, tmp_path: Path) -> None:
    """v1 learned the runbook; the runbook was deleted; v2, a clean retrain without it, is active."""
    doc_id = add_document(ctx, "platform", "assistant", "runbook-7", "The vault code is 4411.")
    kept = add_document(ctx, "platform", "assistant", "handbook", "Deploys go through Skylark.")
    secret = add_example(ctx, "platform", "qa", {"question": "Vault code?", "answer": "4411"}, document_id=doc_id)
    other = add_example(ctx, "platform", "qa", {"question": "Pipeline?", "answer": "Skylark"}, document_id=kept)
    start = utcnow() - timedelta(hours=2)
    with ctx.session() as session:
        team = ctx.team_row(session, "platform")
        v1 = models.Adapter(team_id=team.id, version=1, status="retired", base_model="tiny-random",
                            path=_lora_dir(tmp_path / "a1"), created_at=start, promoted_at=start)
        session.add(v1)
        session.flush()
        session.add_all([models.AdapterLineage(adapter_id=v1.id, example_id=secret),
                         models.AdapterLineage(adapter_id=v1.id, example_id=other)])
        session.get(models.Document, doc_id).deleted_at = start + timedelta(minutes=30)
        session.get(models.Example, secret).retired_at = start + timedelta(minutes=30)
        v2 = models.Adapter(team_id=team.id, version=2, status="active", base_model="tiny-random", clean_retrain=True,
                            path=_lora_dir(tmp_path / "a2"), created_at=start + timedelta(hours=1),
                            promoted_at=start + timedelta(hours=1))
        session.add(v2)
        session.flush()
        session.add(models.AdapterLineage(adapter_id=v2.id, example_id=other))


def run(capsys, *args: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as exit_info:
        main(["--config", "tacit.toml", *args])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_deleted_knowledge_is_not_brought_back_without_force(write_config: Callable[..., Path], capsys, sqlite_url, tmp_path: Path,
                                                             monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    ctx = Context(load_config(write_config(tmp_path, sqlite_url, body(tmp_path))))
    _history(ctx, tmp_path)

    for args in (("adapters", "rollback", "platform"), ("adapters", "promote", "platform", "1"),
                 ("adapters", "export", "platform", str(tmp_path / "out"), "--version", "1")):
        code, out, err = run(capsys, *args)
        assert code == 5 and out == "", (args, err)
        assert "version 1 was trained on documents deleted at their source since: runbook-7" in err
        assert "handbook" not in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
    code, out, _ = run(capsys, "adapters", "list", "platform", "--json")
    assert [(r["version"], r["status"]) for r in json.loads(out)] == [(1, "retired"), (2, "active")]

    # The clean retrain itself is fine to export.
    code, out, err = run(capsys, "adapters", "export", "platform", str(tmp_path / "clean"))
    assert code == 0, err
    assert "warning" not in json.loads((tmp_path / "clean" / "tacit.json").read_text())

    code, out, err = run(capsys, "adapters", "rollback", "platform", "--force")
    assert code == 0 and out.strip() == "platform: rolled back from version 2 to version 1", err
    assert "warning:" in err and "runbook-7" in err
    code, out, _ = run(capsys, "adapters", "show", "platform", "1")
    shown = json.loads(out)
    assert shown["status"] == "active"
    assert [(o["action"], [d["external_id"] for d in o["documents"]]) for o in shown["overrides"]] == [
        ("roll back to", ["runbook-7"])]

    code, out, err = run(capsys, "adapters", "export", "platform", str(tmp_path / "forced"), "--force")
    assert code == 0, err
    info = json.loads((tmp_path / "forced" / "tacit.json").read_text())
    assert "runbook-7" in info["warning"] and "overrides" not in info["metrics"]
    assert "runbook-7" in (tmp_path / "forced" / "README.md").read_text()
    code, out, _ = run(capsys, "adapters", "show", "platform", "1")
    assert [o["action"] for o in json.loads(out)["overrides"]] == ["roll back to", "export"]


def test_export_names_the_base_model_a_server_needs(write_config: Callable[..., Path], capsys, sqlite_url, tmp_path: Path,
                                                    monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    ctx = Context(load_config(write_config(tmp_path, sqlite_url, body(tmp_path))))
    _history(ctx, tmp_path)
    code, _, err = run(capsys, "adapters", "export", "platform", str(tmp_path / "out"))
    assert code == 0, err
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "vllm serve" in readme and "--enable-lora" in readme and "platform-v2=" in readme
    assert "tiny-random" in readme  # no hub id: the README says so instead of a path from this machine
    config = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "/home/someone/.tacit/models/tiny-random"
    assert peft_base_model("smollm2-135m", "/x/smollm2-135m") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert peft_base_model("Org/Model-1B", "/x") == "Org/Model-1B"
