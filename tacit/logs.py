"""Logging for every process: readable lines, or JSON lines for a log collector.

`--log-format json` on the command line, or `TACIT_LOG_FORMAT=json` in the environment (which
`tacit serve`'s worker processes and the Celery worker inherit), writes one JSON object a line on
stderr: time, level, logger, message, and the traceback where there is one.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any, Literal

from tacit.errors import UsageError

LogFormat = Literal["text", "json"]
FORMATS: tuple[str, ...] = ("text", "json")
ENV = "TACIT_LOG_FORMAT"
TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: Attributes every LogRecord has; anything else was passed with `extra=` and is kept.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, `extra=` fields included."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                data[key] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, ensure_ascii=False)


def log_format_from_env() -> LogFormat:
    value = os.environ.get(ENV, "text").strip().lower() or "text"
    if value not in FORMATS:
        raise UsageError(f"{ENV}={value!r}: use text or json")
    return value  # type: ignore[return-value]


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is now (a test's capture, a redirected stream)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure_logging(level: int = logging.WARNING, fmt: LogFormat | None = None) -> None:
    """Send the root logger's records to stderr in `fmt` (default: from the environment)."""
    fmt = fmt or log_format_from_env()
    handler = _Stderr()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_tacit", False):
            root.removeHandler(old)
    handler._tacit = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)


def configure_logging_from_env() -> None:
    """In a process the command line did not set up (a uvicorn worker): JSON lines when asked for."""
    if log_format_from_env() == "json" and not any(getattr(h, "_tacit", False) for h in logging.getLogger().handlers):
        configure_logging(logging.getLogger().level or logging.WARNING, "json")
