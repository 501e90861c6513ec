"""The Celery application: eager and in-process for `memory://`, real workers on Redis otherwise.

Queues: `sync` (connector syncs, webhook events), `process` (chunking, examples), `train`
(adapter refreshes). Workers read the configuration from `TACIT_CONFIG` (or ./tacit.toml).
"""

from __future__ import annotations

from celery import Celery
from celery.schedules import crontab

from connectors.registry import contributions, used_classes
from tacit.config import TacitConfig, load_config

QUEUES = ("sync", "process", "train")
#: The longest a refresh may run: killed (hard limit) past it, so it cannot hold the team forever.
REFRESH_TIME_LIMIT_S = 6 * 3600
#: Redis hands an unacknowledged message to another worker after this long. Refreshes are
#: acknowledged late (after they finish, so a crash re-runs them); a visibility timeout shorter
#: than a refresh would hand the same refresh out again while it still runs. It is set above the
#: refresh time limit, so that cannot happen; should a copy still arrive (e.g. after a broker
#: restore), the per-team lock (training.policy.team_lock) makes it return "busy" at once.
VISIBILITY_TIMEOUT_S = REFRESH_TIME_LIMIT_S + 3600
ROUTES = {
    "tacit.sync_source": {"queue": "sync"},
    "tacit.process_event": {"queue": "sync"},
    "tacit.replay_pending_events": {"queue": "sync"},
    "tacit.process_team": {"queue": "process"},
    "tacit.refresh_adapter": {"queue": "train"},
}


def configure(app: Celery, config: TacitConfig) -> Celery:
    eager = config.queue.eager
    app.conf.update(
        # kombu warns about a memory:// URL without a host; name one.
        broker_url="memory://localhost/" if eager else config.queue.broker_url,
        result_backend=config.queue.result_backend or (None if eager else config.queue.broker_url),
        task_always_eager=eager,
        task_eager_propagates=True,
        task_routes=ROUTES,
        task_default_queue="sync",
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        worker_prefetch_multiplier=1,
        task_reject_on_worker_lost=True,
        # Results are not read back (tasks write to the database); never wait on a result store.
        task_ignore_result=not eager,
        # A broker that is down must not hang a request or a command for long.
        broker_connection_timeout=5,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1},
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        result_backend_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        task_annotations={"tacit.refresh_adapter": {"time_limit": REFRESH_TIME_LIMIT_S,
                                                    "soft_time_limit": REFRESH_TIME_LIMIT_S - 300}},
        beat_schedule=beat_schedule(config),
        timezone="UTC",
    )
    return app


def beat_schedule(config: TacitConfig) -> dict[str, dict]:  # type: ignore[type-arg]
    schedule = {}
    for source in config.sources:
        if source.schedule and source.enabled:
            schedule[f"sync-{source.name}"] = {
                "task": "tacit.sync_source", "schedule": _crontab(source.schedule), "args": (source.name,),
            }
    for cls in used_classes([s.kind for s in config.sources]):
        beat = contributions(cls).beat
        sources = [s for s in config.sources if s.kind == cls.kind]
        for entry in beat(sources, config.api.public_url) if beat else []:
            schedule[entry.name] = {"task": entry.task, "schedule": _crontab(entry.cron), "args": entry.args}
    for team in config.teams:
        schedule[f"refresh-{team.name}"] = {
            "task": "tacit.refresh_adapter",
            "schedule": crontab(minute=0),  # hourly check; the policy decides whether it is due
            "args": (team.name, False),
        }
    return schedule


def _crontab(expr: str) -> crontab:
    parts = expr.split()
    if len(parts) != 5:
        raise ValueError(f"schedule {expr!r}: expected five cron fields")
    minute, hour, day, month, weekday = parts
    return crontab(minute=minute, hour=hour, day_of_month=day, month_of_year=month, day_of_week=weekday)


def create_app(config: TacitConfig | None = None) -> Celery:
    # Connectors' own tasks (e.g. Graph subscription renewal) register when `beat_schedule` loads their
    # contributions.
    app = Celery("tacit", include=["ingestion.worker.tasks"])
    configure(app, config or load_config(required=False))
    return app


app = create_app()
