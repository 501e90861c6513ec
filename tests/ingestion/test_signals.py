"""The sync, processing and training metrics move when the work is done (read from /metrics'
registry, as a scrape would)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from connectors.base import Document
from connectors.sandbox.notion import NotionSandbox
from connectors.sandbox.runbooks import page
from ingestion.api.metrics import Metrics
from ingestion.corpus.runner import ingest_records, run_sync
from ingestion.processing.pipeline import process_team
from tests.training.helpers import PLATFORM_QA, add_qa, body
from training import service


@pytest.fixture
def sandbox() -> Iterator[NotionSandbox]:
    with NotionSandbox() as sb:
        yield sb


def scrape(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_sync_processing_and_training_metrics_move(make_ctx: Any, sqlite_url: str, tmp_path: Path,
                                                   sandbox: NotionSandbox) -> None:
    teams = body(tmp_path) + '[[teams]]\nname = "research"\nbase_model = "tiny-random"\n\n'
    ctx = make_ctx(sqlite_url, body=teams + sandbox.source_block("notion", "platform", rate_limit=250))
    metrics = Metrics(ctx)
    before = scrape(metrics)
    assert value(before, "tacit_sync_records_total", source="notion") == 0
    assert value(before, "tacit_adapter_active_version", team="platform") == 0

    sandbox.inject(429, count=1, retry_after=0)
    summary = run_sync(ctx, "notion")
    assert summary.status == "succeeded"
    r = random.Random(3)
    original = Document(external_id="runbook", title="Runbook", text=page(r, 1))
    ingest_records(ctx, "assistant", [original, Document(external_id="runbook-copy", title="Runbook (copy)",
                                                         text=original.text)])
    process_team(ctx, "platform")
    mid = scrape(metrics)
    assert value(mid, "tacit_sync_records_total", source="notion") == summary.records > 0
    assert value(mid, "tacit_sync_requests_total", source="notion") == summary.requests > 0
    assert value(mid, "tacit_sync_throttled_total", source="notion") == 1
    assert value(mid, "tacit_sync_runs_total", source="notion", status="succeeded") == 1
    assert value(mid, "tacit_sync_records_total", source="assistant") == 2
    assert value(mid, "tacit_processing_examples", team="platform", kind="cpt") > 0
    assert value(mid, "tacit_processing_duplicates_dropped_total", team="platform") == 1

    add_qa(ctx, "platform", PLATFORM_QA)
    result = service.refresh_adapter(ctx, "platform", force=True)
    after = scrape(metrics)
    outcome = "promoted" if result["status"] == "promoted" else "rejected"
    assert value(after, "tacit_training_gate_outcomes_total", team="platform", outcome=outcome) == 1
    assert value(after, "tacit_training_refresh_seconds_count", team="platform") == 1
    assert value(after, "tacit_training_refresh_seconds_sum", team="platform") > 0
    assert value(after, "tacit_training_tokens_per_second", team="platform") == result["train"]["tokens_per_s"]
    assert value(after, "tacit_adapter_active_version", team="platform") == (result["active_version"] or 0)
