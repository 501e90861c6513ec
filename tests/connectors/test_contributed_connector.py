"""A connector defined only in the test suite is picked up through the entry-point registry alone.

The toy kind (`tests/connectors/toy_connector.py`) is "installed" the way any distribution is:
a `*.dist-info` folder with an `entry_points.txt` line under `[tacit.connectors]`, on `sys.path`.
With no other change, the platform validates its settings, syncs it, serves its webhook route
and processes its events, schedules its beat entry, shows its status fields and applies its rate
limit — in this process and in a `tacit` command started fresh.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from connectors import registry
from db import models
from ingestion.api.app import create_app
from ingestion.api.views import source_detail
from ingestion.corpus.runner import run_sync
from ingestion.worker.celery_app import beat_schedule
from tacit.config import ConfigError, load_config
from tacit.context import Context

REPO = Path(__file__).resolve().parents[2]
TOY = """
[[teams]]
name = "platform"
base_model = "tiny-random"

[[sources]]
name = "playroom"
kind = "toy"
team = "platform"
greeting = "Hello"
schedule = "0 * * * *"
"""


def install_toy(site: Path) -> None:
    """What `pip install` of a distribution carrying the toy connector would leave on `sys.path`."""
    info = site / "tacit_toy-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tacit-toy\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[tacit.connectors]\ntoy = tests.connectors.toy_connector:ToyConnector\n")


@pytest.fixture
def toy_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    site = tmp_path / "site"
    install_toy(site)
    monkeypatch.syspath_prepend(str(site))
    registry.refresh()
    yield site
    monkeypatch.undo()
    registry.refresh()


def test_not_installed_is_a_configuration_error(make_ctx: Callable[..., Context], sqlite_url: str) -> None:
    registry.refresh()
    with pytest.raises(ConfigError, match="unknown connector kind 'toy'"):
        make_ctx(sqlite_url, body=TOY)


def test_settings_are_validated_by_the_contributed_class(toy_site: Path, tmp_path: Path) -> None:
    assert "toy" in registry.kinds()
    (tmp_path / "bad.toml").write_text(TOY.replace('greeting = "Hello"\n', ""))
    with pytest.raises(ConfigError, match=r"sources.0 \(playroom\): greeting: Field required"):
        load_config(tmp_path / "bad.toml")


def test_sync_routes_events_beat_status_and_rate_limit(toy_site: Path, make_ctx: Callable[..., Context],
                                                       db_url: str) -> None:
    ctx = make_ctx(db_url, body=TOY)
    budget = ctx.http_budget(ctx.source_config("playroom")).budget
    assert (budget.rate, budget.burst) == (50.0, 5)

    summary = run_sync(ctx, "playroom")
    assert (summary.status, summary.documents_written) == ("succeeded", 2)

    with TestClient(create_app(ctx)) as client:
        answer = client.post("/webhooks/toy/playroom", content=json.dumps({"id": "pushed", "text": "From a push."}))
        assert answer.status_code == 200 and answer.json()["created"] is True
        assert client.post("/webhooks/toy/nowhere", content="{}").status_code == 404
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with ctx.session() as session:
                status = session.scalar(select(models.WebhookEvent.status))
            if status != "pending":
                break
            time.sleep(0.05)
    assert status == "processed"
    with ctx.session() as session:
        ids = set(session.scalars(select(models.Document.external_id)))
    assert ids == {"toy-0", "toy-1", "pushed"}

    schedule = beat_schedule(ctx.config)
    assert schedule["toy-playroom"]["task"] == "tacit.sync_source"
    assert schedule["sync-playroom"]["args"] == ("playroom",)
    assert source_detail(ctx, "playroom")["toy"] == {"greeting": "Hello"}


def test_a_fresh_tacit_command_finds_it(toy_site: Path, tmp_path: Path, sqlite_url: str,
                                        tacit: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    (tmp_path / "tacit.toml").write_text(f'[storage]\ndatabase_url = "{sqlite_url}"\n{TOY}')
    env = {"PYTHONPATH": os.pathsep.join([str(toy_site), str(REPO), os.environ.get("PYTHONPATH", "")])}
    synced = tacit("sync", "playroom", cwd=tmp_path, env=env)
    assert synced.returncode == 0, synced.stderr
    shown = tacit("sources", "show", "playroom", "--json", cwd=tmp_path, env=env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["toy"] == {"greeting": "Hello"}
    # Without the distribution on the path the kind is unknown: one line, exit 2.
    gone = tacit("sync", "playroom", cwd=tmp_path, env={"PYTHONPATH": str(REPO)})
    assert gone.returncode == 2 and "unknown connector kind 'toy'" in gone.stderr
