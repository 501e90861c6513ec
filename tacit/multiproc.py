"""Prometheus counters across the processes of `tacit serve --workers N`.

With several uvicorn workers each process keeps its own counters, and a scrape reaches one of
them at random. prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR, read when
prometheus_client is imported) stores every process's values in files in that folder, and
/metrics sums them. See https://prometheus.github.io/client_python/multiprocess/.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_metrics() -> Path:
    """Point PROMETHEUS_MULTIPROC_DIR at an empty folder (a fresh temporary one when unset).

    The folder must be emptied at start: values left by a previous run would be added to this one.
    """
    configured = os.environ.get(ENV)
    folder = Path(configured) if configured else Path(tempfile.mkdtemp(prefix="tacit-metrics-"))
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink(missing_ok=True)
    os.environ[ENV] = str(folder)
    return folder


def multiprocess_enabled() -> bool:
    return bool(os.environ.get(ENV))
