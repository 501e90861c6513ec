"""Prometheus signals of the work behind the webhooks: sync, processing, training.

That work runs in Celery workers (other processes, other containers), so its figures are read
from what it records when `/metrics` is scraped, not kept in this process's memory: sync runs
(`sync_runs`: records, requests, throttled answers, failures), the corpus (`examples` by kind),
the near-duplicate drop log of processing (`ingestion.processing.dedup_index`) and the adapter
registry (refresh time, training throughput, gate outcomes, the active version). Totals are
exposed as counters: they only grow while runs, examples and versions are kept.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from db import models
from ingestion.processing.dedup_index import dropped_documents
from tacit.context import Context

log = logging.getLogger(__name__)
SYNC_RECORD_COLUMNS = ("documents_written", "documents_unchanged", "interactions_written", "interactions_unchanged",
                       "tombstones")


class DatabaseCollector(Collector):
    """Metric families read from the database when `/metrics` is scraped. `read(session)` builds
    them; a database that does not answer leaves them out with a warning (`what` names them), so
    the scrape itself does not fail (/readyz says the database is down)."""

    what = "figures"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def describe(self) -> Iterator[Any]:
        return iter(())

    def read(self, session: Any) -> list[Any]:
        raise NotImplementedError

    def collect(self) -> Iterator[Any]:
        try:
            with self.ctx.session() as session:
                families = self.read(session)
        except Exception as exc:
            log.warning("metrics: cannot read %s: %s", self.what, exc)
            return
        yield from families


class SignalsCollector(DatabaseCollector):
    """Sync, processing and training metrics, read from the database at scrape time."""

    what = "sync, processing and training figures"

    def read(self, session: Any) -> list[Any]:
        return [*self._sync(session), *self._processing(session), *self._training(session)]

    # ------------------------------------------------------------------ sync
    def _sync(self, session: Any) -> list[Any]:
        records = CounterMetricFamily("tacit_sync_records", "Records read by sync and push runs, by source.",
                                      labels=["source"])
        requests = CounterMetricFamily("tacit_sync_requests", "HTTP requests made to the vendor, by source.",
                                       labels=["source"])
        throttled = CounterMetricFamily("tacit_sync_throttled", "Throttling answers (429/503/529) from the "
                                        "vendor, by source.", labels=["source"])
        failures = CounterMetricFamily("tacit_sync_failures", "Items that could not be read, by source.",
                                       labels=["source"])
        runs = CounterMetricFamily("tacit_sync_runs", "Finished runs by source and status.",
                                   labels=["source", "status"])
        names = dict(session.execute(select(models.Source.id, models.Source.name)).all())
        totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        run = models.SyncRun
        for row in session.execute(select(run.source_id, run.status, run.requests, run.failures, run.stats,
                                          *(getattr(run, c) for c in SYNC_RECORD_COLUMNS))):
            t = totals[names.get(row.source_id, str(row.source_id))]
            t["records"] += sum(getattr(row, c) or 0 for c in SYNC_RECORD_COLUMNS)
            t["requests"] += row.requests or 0
            t["failures"] += row.failures or 0
            t["throttled"] += float((row.stats or {}).get("throttled") or 0)
            if row.status != "running":
                t[f"status:{row.status}"] += 1
        for source in sorted(set(names.values()) | set(totals)):
            t = totals[source]
            records.add_metric([source], t["records"])
            requests.add_metric([source], t["requests"])
            throttled.add_metric([source], t["throttled"])
            failures.add_metric([source], t["failures"])
            for key, value in sorted(t.items()):
                if key.startswith("status:"):
                    runs.add_metric([source, key.split(":", 1)[1]], value)
        return [records, requests, throttled, failures, runs]

    # ------------------------------------------------------------------ processing
    def _processing(self, session: Any) -> list[Any]:
        examples = GaugeMetricFamily("tacit_processing_examples", "Live training examples by team and kind.",
                                     labels=["team", "kind"])
        duplicates = CounterMetricFamily("tacit_processing_duplicates_dropped", "Documents dropped as near "
                                         "duplicates of another document, by team.", labels=["team"])
        teams = dict(session.execute(select(models.Team.id, models.Team.name)).all())
        counts = session.execute(select(models.Example.team_id, models.Example.kind, func.count())
                                 .where(models.Example.retired_at.is_(None))
                                 .group_by(models.Example.team_id, models.Example.kind)).all()
        for team_id, kind, n in counts:
            examples.add_metric([teams.get(team_id, str(team_id)), kind], n)
        for team_id, name in sorted(teams.items(), key=lambda kv: kv[1]):
            duplicates.add_metric([name], len(dropped_documents(self.ctx, team_id)))
        return [examples, duplicates]

    # ------------------------------------------------------------------ training
    def _training(self, session: Any) -> list[Any]:
        seconds = SummaryMetricFamily("tacit_training_refresh_seconds", "Refreshes that trained a version: "
                                      "time from start to the gate's decision, by team.", labels=["team"])
        speed = GaugeMetricFamily("tacit_training_tokens_per_second", "Training throughput of the team's newest "
                                  "trained version.", labels=["team"])
        outcomes = CounterMetricFamily("tacit_training_gate_outcomes", "Trained versions by the gate's outcome "
                                       "(promoted, rejected) or failed runs, by team.", labels=["team", "outcome"])
        active = GaugeMetricFamily("tacit_adapter_active_version", "The version answering for the team "
                                   "(0: none).", labels=["team"])
        teams = dict(session.execute(select(models.Team.id, models.Team.name)).all())
        a = models.Adapter
        rows = session.execute(select(a.team_id, a.version, a.status, a.created_at, a.finished_at, a.promoted_at,
                                      a.train_config).order_by(a.version)).all()
        per_team: dict[int, dict[str, Any]] = {t: {"n": 0, "sum": 0.0, "speed": None, "active": 0,
                                                   "promoted": 0, "rejected": 0, "failed": 0} for t in teams}
        for row in rows:
            t = per_team.setdefault(row.team_id, {"n": 0, "sum": 0.0, "speed": None, "active": 0,
                                                  "promoted": 0, "rejected": 0, "failed": 0})
            if row.status == "active":
                t["active"] = row.version
            if row.status == "failed":
                t["failed"] += 1
            elif row.finished_at is not None:
                t["promoted" if row.promoted_at is not None else "rejected"] += 1
                t["n"] += 1
                t["sum"] += max(0.0, (row.finished_at - row.created_at).total_seconds())
            run = (row.train_config or {}).get("run") or {}
            if run.get("tokens_per_s"):
                t["speed"] = float(run["tokens_per_s"])
        for team_id, t in sorted(per_team.items(), key=lambda kv: teams.get(kv[0], "")):
            name = teams.get(team_id, str(team_id))
            seconds.add_metric([name], t["n"], t["sum"])
            if t["speed"] is not None:
                speed.add_metric([name], t["speed"])
            for outcome in ("promoted", "rejected", "failed"):
                outcomes.add_metric([name, outcome], t[outcome])
            active.add_metric([name], t["active"])
        return [seconds, speed, outcomes, active]
