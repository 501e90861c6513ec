"""The webhook service's own background worker, for the embedded mode (`memory://` broker).

With no broker, a Celery send would run the task inside the request (eager). Instead the app
hands accepted event ids to this worker: one thread and a queue, processing in the order of
arrival, after the 2xx has been sent. The queue is only a hint: the events are committed first,
so a process that dies with ids in the queue loses nothing, since the app replays every pending
event when it starts (`replay_pending`).

When a batch of events changed a team's corpus, the worker runs that team's processing
(chunks, examples) once the queue is empty.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from ingestion.corpus.events import pending_event_ids, process_event
from ingestion.processing.pipeline import process_team
from tacit.context import Context

log = logging.getLogger(__name__)

FollowUp = Callable[[Context, str], Any]
ResultHook = Callable[[dict[str, Any]], None]
_STOP = object()


def process_team_after_events(ctx: Context, team: str) -> Any:
    """The follow-up of a team's processed events in the embedded mode: chunking and examples."""
    return process_team(ctx, team)


class EventWorker:
    def __init__(self, ctx: Context, *, follow_up: FollowUp | None = process_team_after_events,
                 on_result: ResultHook | None = None) -> None:
        self.ctx = ctx
        self.follow_up = follow_up
        self.on_result = on_result
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._idle = threading.Condition()
        self._outstanding = 0
        self._dirty_teams: set[str] = set()
        self.errors = 0

    # ------------------------------------------------------------------ control
    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="tacit-event-worker", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the event at hand and stop; ids still queued stay pending in the database."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._thread = None

    def submit(self, event_id: int) -> None:
        with self._idle:
            self._outstanding += 1
        self._queue.put(event_id)

    def replay_pending(self) -> int:
        """Queue every pending event (accepted before a crash or a restart)."""
        ids = pending_event_ids(self.ctx)
        for event_id in ids:
            self.submit(event_id)
        if ids:
            log.info("replaying %d pending events", len(ids))
        return len(ids)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every submitted event (and the follow-up) is done; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._outstanding == 0, timeout)

    @property
    def backlog(self) -> int:
        return self._outstanding

    # ------------------------------------------------------------------ loop
    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            try:
                self._process(item)
            finally:
                if self._queue.empty():
                    self._run_follow_up()
                with self._idle:
                    self._outstanding -= 1
                    self._idle.notify_all()

    def _process(self, event_id: int) -> None:
        try:
            result = process_event(self.ctx, event_id)
        except Exception:  # marked failed by process_event; `tacit events replay` retries it
            self.errors += 1
            log.exception("event %s failed", event_id)
            result = {"event": event_id, "status": "failed"}
        if result.get("team") and (result.get("documents_written") or result.get("interactions_written")
                                   or result.get("tombstones")):
            self._dirty_teams.add(result["team"])
        if self.on_result is not None:
            try:
                self.on_result(result)
            except Exception:
                log.exception("result hook failed for event %s", event_id)

    def _run_follow_up(self) -> None:
        if self.follow_up is None:
            self._dirty_teams.clear()
            return
        while self._dirty_teams:
            team = self._dirty_teams.pop()
            try:
                self.follow_up(self.ctx, team)
            except Exception:
                self.errors += 1
                log.exception("processing team %s after its events failed", team)
