"""Fixtures shared by the connector tests: a vendor's webhook routes served on loopback, and a
stored corpus row read back."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI

from connectors.sandbox.server import ThreadedServer
from ingestion.corpus.events import process_event
from tacit.context import Context


class WebhookReceiver:
    """A vendor's webhook `router` served by uvicorn on loopback (`url`: the server and `path`).
    Once attached to a context, the deliveries it accepts are queued here instead of dispatched,
    and `process()` processes them when the test says."""

    def __init__(self, router: APIRouter, path: str = "") -> None:
        self.app = FastAPI()
        self.app.include_router(router)
        self.queued: list[int] = []
        self.ctx: Context | None = None
        self.server = ThreadedServer(self.app).start()
        self.url = f"{self.server.url}{path}"

    def attach(self, ctx: Context) -> Context:
        self.app.state.ctx = self.ctx = ctx
        ctx.dispatch_event = self.queued.append  # type: ignore[attr-defined]
        return ctx

    def process(self) -> list[dict[str, Any]]:
        assert self.ctx is not None, "attach a context first"
        results = [process_event(self.ctx, event_id) for event_id in self.queued]
        self.queued.clear()
        return results


@pytest.fixture
def webhook_receiver() -> Iterator[Callable[..., WebhookReceiver]]:
    """webhook_receiver(router, path=""): a started `WebhookReceiver`, stopped at the end of the test."""
    started: list[WebhookReceiver] = []

    def start(router: APIRouter, path: str = "") -> WebhookReceiver:
        receiver = WebhookReceiver(router, path)
        started.append(receiver)
        return receiver

    yield start
    for receiver in reversed(started):
        receiver.server.stop()


@pytest.fixture
def stored_row() -> Callable[..., Any]:
    """stored_row(ctx, models.Document, external_id): that row (there must be one), detached from its session."""

    def read(ctx: Context, model: Any, external_id: str) -> Any:
        from sqlalchemy import select

        with ctx.session() as session:
            row = session.scalar(select(model).where(model.external_id == external_id))
            assert row is not None, f"no {model.__name__} {external_id!r} stored"
            session.expunge(row)
            return row

    return read
