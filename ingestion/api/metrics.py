"""Prometheus metrics of the webhook service (one registry per app, so apps in one process don't clash).

Counters are kept by the process that answers requests; the backlog gauges are read from the
database when `/metrics` is scraped, so they are right whoever processes the events (the
app's own background worker in the embedded mode, Celery workers in production).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from db import models
from db.base import utcnow
from ingestion.api.signals import DatabaseCollector, SignalsCollector
from tacit.context import Context
from tacit.multiproc import multiprocess_enabled

LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class Metrics:
    def __init__(self, ctx: Context) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.accepted = Counter("tacit_webhook_events_accepted", "Deliveries committed and answered 2xx.",
                                ["source", "channel"], registry=r)
        self.rejected = Counter("tacit_webhook_events_rejected", "Deliveries refused, by reason "
                                "(unknown_source, content_type, too_large, signature, malformed, invalid, "
                                "backlog, rejected_before).", ["source", "reason"], registry=r)
        self.duplicates = Counter("tacit_webhook_events_duplicate", "Deliveries whose id was already stored.",
                                  ["source"], registry=r)
        self.processed = Counter("tacit_webhook_events_processed", "Events processed by this process's "
                                 "background worker, by outcome.", ["source", "status"], registry=r)
        self.lag = Histogram("tacit_webhook_event_processing_lag_seconds", "Time from receipt to the end of "
                             "processing (this process's background worker).", buckets=LAG_BUCKETS, registry=r)
        self.internal_errors = Counter("tacit_http_internal_errors", "Requests answered 500 (server faults).",
                                       registry=r)
        self.backlog = _BacklogCollector(ctx)
        self.signals = SignalsCollector(ctx)
        r.register(self.backlog)
        r.register(self.signals)

    def render(self) -> bytes:
        if not multiprocess_enabled():
            return generate_latest(self.registry)
        # Several worker processes: sum every process's counters from PROMETHEUS_MULTIPROC_DIR.
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(self.backlog)
        registry.register(self.signals)
        return generate_latest(registry)


class _BacklogCollector(DatabaseCollector):
    """Events by status and the age of the oldest pending one, read at scrape time."""

    what = "the event backlog"

    def read(self, session: Any) -> list[Any]:
        by_status = GaugeMetricFamily("tacit_webhook_events", "Stored events by status (all channels).",
                                      labels=["status"])
        oldest = GaugeMetricFamily("tacit_webhook_oldest_pending_age_seconds",
                                   "Age of the oldest pending event (0 when none): the processing lag now.")
        counts = dict(session.execute(select(models.WebhookEvent.status, func.count())
                                      .group_by(models.WebhookEvent.status)).all())
        first: datetime | None = session.scalar(select(func.min(models.WebhookEvent.received_at))
                                                .where(models.WebhookEvent.status == "pending"))
        for status in ("pending", "processed", "rejected", "failed"):
            by_status.add_metric([status], counts.get(status, 0))
        if first is not None and first.tzinfo is None:
            first = first.replace(tzinfo=utcnow().tzinfo)
        oldest.add_metric([], max(0.0, (utcnow() - first).total_seconds()) if first else 0.0)
        return [by_status, oldest]
