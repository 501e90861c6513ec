"""The Grafana dashboard charts only metrics that /metrics exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ingestion.api import metrics, signals

ROOT = Path(__file__).resolve().parents[1]


def test_every_dashboard_query_names_an_exposed_metric() -> None:
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "tacit.json").read_text())
    source = Path(metrics.__file__).read_text() + Path(signals.__file__).read_text()
    names = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            names |= set(re.findall(r"\b(tacit_[a-z_]+)", target["expr"]))
    assert names
    for name in names:
        base = re.sub(r"_(total|sum|count)$", "", name)
        assert f'"{base}"' in source, name
