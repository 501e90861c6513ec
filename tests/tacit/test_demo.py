"""`tacit demo --quick`, twice, as a user runs it: the real sandboxes, connectors, webhook
endpoint, processing and training; the second run is incremental and forgets a deleted file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from connectors.sandbox.company import TEAMS

pytestmark = pytest.mark.slow


def demo(cwd: Path) -> tuple[dict, str]:  # type: ignore[type-arg]
    env = dict(os.environ)
    env.pop("TACIT_CONFIG", None)
    done = subprocess.run([sys.executable, "-m", "tacit.cli", "demo", "--quick"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((cwd / ".tacit" / "report" / "summary.json").read_text()), done.stdout + done.stderr


def test_quick_demo_twice_is_incremental_and_forgets_the_deleted_file(tmp_path: Path) -> None:
    names = [t.name for t in TEAMS]
    first, out = demo(tmp_path)
    assert first["run"] == 1 and first["base_model"] == "tiny-random"
    assert set(first["teams"]) == set(names)
    for name, team in first["teams"].items():
        assert team["trained_version"] == 1 and team["examples"] > 0 and team["trained_tokens"] > 0
        assert team["loss_curve"], name
        assert team["refresh_s"] >= team["train_s"] > 0, name  # training and evaluation
        # tokens over the unrounded time (refresh_s is rounded to 0.1 s, the rate to 0.1 token/s)
        assert (team["trained_tokens"] / (team["refresh_s"] + 0.05) - 0.05 <= team["refresh_tokens_per_s"]
                <= team["trained_tokens"] / (team["refresh_s"] - 0.05) + 0.05), name
        for key in ("qa_before", "qa_after", "qa_rag", "qa_adapter_rag", "qa_f1_before", "qa_f1_after",
                    "forgetting_before", "forgetting_after"):
            assert isinstance(team[key], float), (name, key)
        assert len(first["samples"][name]) == 8  # every eval question, both answers
        assert all(s["rag"] is not None for s in first["samples"][name])  # and the RAG baseline's
    assert first["leakage"]["teams"] == names and len(first["leakage"]["matrix"]) == 3
    assert all(len(row) == 3 for row in first["leakage"]["matrix"])
    assert all(w["accepted"] == 2 for w in first["webhooks"].values())  # rated answers on the discussed facts
    report = (tmp_path / ".tacit" / "report" / "report.md").read_text()
    assert "| base + RAG | adapter + RAG |" in report
    for png in ("qa.png", "forgetting.png", "loss.png", "leakage.png"):
        assert (tmp_path / ".tacit" / "report" / png).read_bytes()[:4] == b"\x89PNG"
        assert f"]({png})" in report
    assert "tacit ask platform" in out

    second, _ = demo(tmp_path)
    assert second["run"] == 2 and len(second["changes"]) == 3
    sync = second["sync"]
    assert sync["notion"]["documents_written"] == 1  # the edited page only
    assert sync["m365-support"]["interactions_written"] == 1  # the new thread only
    assert sync["m365-research"]["tombstones"] == 1  # the deleted file
    assert sync["m365-platform"]["documents_written"] == 0
    assert all(w["accepted"] == 0 and w["duplicate"] == 2 for w in second["webhooks"].values())
    assert second["processing"]["platform"]["documents_processed"] == 1
    assert second["processing"]["support"]["interactions_processed"] == 1
    research = second["teams"]["research"]
    assert research["trained_version"] == 2 and research["clean_retrain"] is True
    assert any(line.startswith("research: v1 had learned") for line in second["forgotten"])
    for name in ("platform", "support"):  # continued from v1 on the change plus a replay sample
        team = second["teams"][name]
        assert team["trained_version"] == 2 and not team["clean_retrain"]
        # the change's few examples (under 5 % of the team's), not the whole corpus again
        assert 0 < team["examples_new"] < first["teams"][name]["examples"] / 20 and team["examples_replayed"] > 0
    assert "## Forgetting on request" in (tmp_path / ".tacit" / "report" / "report.md").read_text()
