"""Start-time settings of the production stack that need no running services."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from ingestion.worker.celery_app import REFRESH_TIME_LIMIT_S, configure, create_app
from tacit.config import load_config


def test_no_generated_secret_key_outside_the_embedded_mode(default_sources: str, default_teams: str, write_config: Callable[..., Path], tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("TACIT_SECRET_KEY")
    write_config(tmp_path, "postgresql+psycopg://tacit@127.0.0.1:1/none", default_teams + default_sources)
    result = subprocess.run([sys.executable, "-m", "tacit.cli", "status"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("tacit: TACIT_SECRET_KEY is not set") and result.stderr.count("\n") == 1
    assert not (tmp_path / ".tacit" / "secret.key").exists()

    write_config(tmp_path, f"sqlite:///{tmp_path / 'tacit.db'}", default_teams + default_sources)
    result = subprocess.run([sys.executable, "-m", "tacit.cli", "status", "--json"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / ".tacit" / "secret.key").exists()  # embedded: generated once, locally


def test_a_running_refresh_is_not_handed_out_again(default_teams: str, write_config: Callable[..., Path], tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, "sqlite:///x.db", default_teams, broker_url="redis://127.0.0.1:1/0"))
    app = configure(create_app(config), config)
    limits = app.conf.task_annotations["tacit.refresh_adapter"]
    assert limits["soft_time_limit"] < limits["time_limit"] == REFRESH_TIME_LIMIT_S
    # Redis redelivers an unacknowledged (late-acked) message after the visibility timeout: it must
    # outlast the longest refresh the hard limit allows.
    assert app.conf.broker_transport_options["visibility_timeout"] > limits["time_limit"]
