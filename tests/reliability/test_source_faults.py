"""Source APIs misbehaving, through the real connectors and their sandboxes over HTTP.

429 storms, 5xx, truncated JSON bodies, answers slower than the HTTP timeout and answers that are
merely slow. A fault the retry policy can absorb ends in a complete sync; one that outlasts it
stops the sync cleanly — run `failed`, source `error` with the reason, checkpoint kept — and the
next run resumes from that checkpoint and completes, with nothing lost and nothing written twice.
(Three 429s and a few 5xx followed by success, 401, and a crash or SIGKILL mid-sync are the
contract suite's: tests/connectors/test_contract.py.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from connectors.http import RetryPolicy
from db import models
from ingestion.corpus.runner import SyncSummary, run_sync
from tacit.context import Context
from tests.connectors import harness_msgraph, harness_notion

TEAMS = '[[teams]]\nname = "platform"\nbase_model = "tiny-random"\n\n'
#: The default number of attempts, with short backoffs so the suite stays fast (what is retried and
#: when it gives up is the default policy's; only the waits between attempts are shorter).
POLICY = RetryPolicy(backoff_base=0.02, backoff_cap=0.2)
TIMEOUT_S = 1.0
GRAPH_PAGE_SIZE, GRAPH_LATENCY = harness_msgraph.PAGE_SIZE, harness_msgraph.LATENCY


class Source:
    """One sandbox behind one configured source, with the fault levers the tests pull."""

    def __init__(self, kind: str, sandbox: Any, expected: set[str], block: str) -> None:
        self.kind, self.sandbox, self.expected, self.block = kind, sandbox, expected, block

    def inject(self, fault: str, count: int) -> None:
        if fault == "truncated":
            self.sandbox.truncate(count)
        elif fault == "timeout":
            self.sandbox.delay(TIMEOUT_S * 4, count)
        else:
            self.sandbox.inject(int(fault), count, retry_after=0)


@pytest.fixture(params=["notion", "msgraph"])
def source(request: pytest.FixtureRequest) -> Source:
    sandbox = request.getfixturevalue(f"{request.param}_sandbox")
    if request.param == "notion":
        n = harness_notion.harness(sandbox)
        block = n.source_block("src", "platform") + f"timeout_s = {TIMEOUT_S}\n"
        return Source("notion", n.sandbox, n.expected_ids(), block)
    g = harness_msgraph.harness(sandbox)
    block = harness_msgraph.source_toml(g.sandbox, g.workspace, "src", "platform", "platform",
                                        extra=f"timeout_s = {TIMEOUT_S}")
    g._spaces.add("platform")
    return Source("msgraph", g.sandbox, g.expected_ids(), block)


@pytest.fixture
def ctx(source: Source, make_ctx: Callable[..., Context], sqlite_url: str) -> Context:
    return make_ctx(sqlite_url, TEAMS + source.block)


def sync(ctx: Context, progress: Callable[[SyncSummary], None] | None = None) -> SyncSummary:
    return run_sync(ctx, "src", connector=ctx.connector("src", policy=POLICY), batch_size=5, progress=progress)


def stored(ctx: Context) -> tuple[set[str], int, set[int]]:
    """(live external ids, rows, versions) of documents and interactions."""
    with ctx.session() as s:
        ids: set[str] = set()
        rows, versions = 0, set()
        for model in (models.Document, models.Interaction):
            ids |= set(s.scalars(select(model.external_id).where(model.deleted_at.is_(None))))
            rows += s.scalar(select(func.count()).select_from(model)) or 0
            versions |= set(s.scalars(select(model.version)))
    return ids, rows, versions


def source_state(ctx: Context) -> tuple[str, str | None, dict[str, Any] | None]:
    with ctx.session() as s:
        row = ctx.source_row(s, "src")
        return row.status, row.last_error, row.checkpoint


# ------------------------------------------------------------------------------ absorbed
@pytest.mark.parametrize("fault,count", [("429", 7), ("503", 7), ("truncated", 5), ("timeout", 3)])
def test_a_fault_within_the_retry_policy_ends_in_a_complete_sync(source: Source, ctx: Context, fault: str,
                                                                 count: int) -> None:
    """Seven 429s (or 503s) in a row — one short of giving up on a request — truncated JSON, or
    answers that never come within the timeout: retried, and the sync completes."""
    source.inject(fault, count)
    summary = sync(ctx)
    assert summary.status == "succeeded", summary.error
    by_status = summary.stats["by_status"]
    if fault == "truncated":
        cut = source.sandbox.by_status[-1] if source.kind == "notion" else source.sandbox.counts["truncated"]
        assert cut == count
        assert summary.stats["retries"] >= count
    elif fault == "timeout":
        assert by_status.get("0") == count  # every timed-out attempt, counted as "no answer"
    else:
        assert by_status.get(fault) == count
    ids, rows, versions = stored(ctx)
    assert ids == source.expected and rows == len(ids) and versions == {1}
    assert source_state(ctx)[:2] == ("ok", None)


def test_slow_answers_below_the_timeout_are_waited_for(source: Source, ctx: Context) -> None:
    """Answers that take most of the timeout are slow, not failures: no retry at all."""
    source.sandbox.delay(TIMEOUT_S * 0.5, 6)
    summary = sync(ctx)
    assert summary.status == "succeeded", summary.error
    assert summary.stats["retries"] == 0 and "0" not in summary.stats["by_status"]
    ids, rows, _ = stored(ctx)
    assert ids == source.expected and rows == len(ids)


# ------------------------------------------------------------------------------ outlasting the policy
@pytest.mark.parametrize("fault", ["429", "500", "truncated",
                                   pytest.param("timeout", marks=pytest.mark.slow)])  # 8 attempts × timeout
def test_a_storm_longer_than_the_retries_stops_cleanly_and_the_rerun_resumes(source: Source, ctx: Context,
                                                                             fault: str) -> None:
    """The storm starts once a checkpoint is committed, mid-sync, and outlasts every retry: the run
    fails with a clear reason and keeps its checkpoint; after the storm the next run resumes there
    (it does not read everything again) and completes, each record written exactly once."""
    started: list[int] = []

    def storm_after_first_checkpoint(summary: SyncSummary) -> None:
        if not started and source_state(ctx)[2]:
            started.append(summary.records)
            source.inject(fault, 10_000)

    first = sync(ctx, storm_after_first_checkpoint)
    source.sandbox.clear_faults()
    assert started, "the sync ended before a checkpoint was committed"
    assert first.status == "failed"
    assert first.error and first.error.startswith("TransientError"), first.error
    status, last_error, checkpoint = source_state(ctx)
    assert (status, last_error) == ("error", first.error) and checkpoint
    with ctx.session() as s:
        runs = [(r.status, r.error) for r in s.scalars(select(models.SyncRun).order_by(models.SyncRun.id))]
    assert runs == [("failed", first.error)]
    partial, _, _ = stored(ctx)
    assert partial < source.expected

    second = sync(ctx)
    assert second.status == "succeeded", second.error
    ids, rows, versions = stored(ctx)
    assert ids == source.expected and rows == len(ids) and versions == {1}
    written = (first.documents_written + first.interactions_written + second.documents_written
               + second.interactions_written)
    assert written == len(source.expected)  # nothing written twice
    assert second.records < len(source.expected)  # resumed, not started over
    assert source_state(ctx)[:2] == ("ok", None)
