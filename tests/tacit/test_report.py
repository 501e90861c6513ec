"""The demo report: summary.json holds the figures and the PNG plots are real images."""

from __future__ import annotations

import json
from pathlib import Path

from tacit.cli.report import write_report


def test_report_writes_summary_plots_and_markdown(tmp_path: Path) -> None:
    summary = {
        "company": "Lumen Labs", "run": 1, "base_model": "tiny-random", "duration_s": 12.0,
        "teams": {
            "platform": {"qa_before": 0.0, "qa_after": 0.5, "forgetting_before": 2.1, "forgetting_after": 2.2,
                         "loss_curve": [3.0, 2.0, 1.0], "adapter_version": 1, "status": "active",
                         "qa_f1_before": 0.1, "qa_f1_after": 0.6, "qa_rag": 0.875, "qa_rag_f1": 0.8,
                         "qa_adapter_rag": 0.75, "qa_adapter_rag_f1": 0.7, "examples": 40, "examples_new": 40,
                         "examples_replayed": 0, "trained_tokens": 9000, "refresh_s": 30.0,
                         "refresh_tokens_per_s": 300.0},
            "support": {"qa_before": 0.1, "qa_after": 0.4, "forgetting_before": 2.1, "forgetting_after": 2.15,
                        "loss_curve": [3.1, 2.5], "adapter_version": 1, "status": "active"},
        },
        "leakage": {"teams": ["platform", "support"], "matrix": [[0.5, 0.0], [0.0, 0.3]]},
        "samples": {"platform": [{"question": "q?", "expected": "a", "base": "b", "adapter": "a"}]},
    }
    report = write_report(summary, tmp_path)
    assert json.loads((tmp_path / "summary.json").read_text())["teams"]["platform"]["qa_after"] == 0.5
    for name in ("qa.png", "forgetting.png", "loss.png", "leakage.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in report.read_text()
    text = report.read_text()
    assert "| platform | v1 | 0.00 → 0.50 (0.10 → 0.60) | 0.88 (0.80) | 0.75 (0.70) |" in text
    assert "| support | v1 | 0.10 → 0.40 (- → -) | - (-) | - (-) |" in text
    assert "40 examples (40 new, 0 replayed), 9000 tokens in 30 s (300 tokens/s)" in text  # the refresh's speed  # no RAG figures: shown as missing
