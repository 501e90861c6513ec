"""PostgreSQL restarted in the middle of a sync: the sync goes on and ends with nothing lost."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import ClassVar

import pytest
from sqlalchemy import func, select

from connectors.base import Checkpoint, CheckpointMark, Connector, Document, SyncGenerator
from connectors.http import HttpBudget
from db import models
from ingestion.corpus.runner import run_sync
from tacit.config import SourceConfig
from tests.reliability.servers import PrivatePostgres

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


class Cursor(Checkpoint):
    version: int = 1
    position: int = 0


class SteadyConnector(Connector):
    """120 documents, one every few milliseconds, a checkpoint every 10."""

    kind: ClassVar[str] = "steady"
    Checkpoint: ClassVar[type[Checkpoint]] = Cursor

    def __init__(self) -> None:
        super().__init__(SourceConfig(name="assistant", kind="webhook", team="platform"), HttpBudget("steady"))
        self.yielded = 0

    def check(self) -> None:
        pass

    def sync(self, checkpoint: Cursor | None) -> SyncGenerator:  # type: ignore[override]
        for n in range(checkpoint.position if checkpoint else 0, 120):
            time.sleep(0.02)  # a slow source (stands in for network time)
            self.yielded += 1
            yield Document(external_id=f"doc-{n}", title=f"Doc {n}", text=f"body {n}")
            if n % 10 == 9:
                yield CheckpointMark(checkpoint=Cursor(position=n + 1))
        return Cursor(position=120)


@pytest.fixture
def pg() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres().start()
    yield server
    server.close()


def test_postgres_restart_mid_sync(pg: PrivatePostgres, make_ctx) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx(pg.url)
    connector = SteadyConnector()
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(summary=run_sync(ctx, "assistant", connector=connector,
                                                                            batch_size=10)))
    thread.start()
    while connector.yielded < 40:
        time.sleep(0.01)
    pg.restart()  # every pooled connection is now dead
    thread.join(timeout=120)
    summary = result["summary"]
    assert summary.status == "succeeded", summary.error
    with ctx.session() as session:
        ids = set(session.scalars(select(models.Document.external_id)))
        assert ids == {f"doc-{n}" for n in range(120)}
        assert session.scalar(select(func.max(models.Document.version))) == 1
        assert ctx.source_row(session, "assistant").checkpoint == {"version": 1, "position": 120}
    assert connector.yielded == 120  # it never had to start over
