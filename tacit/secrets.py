"""Secrets at rest: Fernet encryption with `TACIT_SECRET_KEY` (comma-separated keys; the first
encrypts, all decrypt, so keys can be rotated), or a key file created once in the data dir."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from tacit.config import ConfigError

KEY_ENV = "TACIT_SECRET_KEY"
SECRET_KEYS = re.compile(r"(secret|token|password|api_key|apikey|credential|private_key)", re.I)
_MARK = "fernet:"


class SecretBox:
    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ValueError("no secret key")
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    @classmethod
    def from_env(cls, data_dir: Path, *, generate: bool = True) -> SecretBox:
        """Keys from TACIT_SECRET_KEY, else `<data_dir>/secret.key`, generated if missing only when
        `generate` (the embedded mode): services on several hosts or containers would each
        generate their own key and could not read each other's secrets."""
        raw = os.environ.get(KEY_ENV, "").strip()
        if raw:
            return cls([k.strip().encode() for k in raw.split(",") if k.strip()])
        key_file = data_dir / "secret.key"
        if not key_file.exists() and not generate:
            raise ConfigError(f"{KEY_ENV} is not set: outside the embedded mode every service must share one key "
                              "(generate one with `python -c 'from cryptography.fernet import Fernet; "
                              "print(Fernet.generate_key().decode())'`)")
        if not key_file.exists():
            key_file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(Fernet.generate_key())
        return cls([key_file.read_bytes().strip()])

    def encrypt(self, value: str) -> str:
        return _MARK + self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, value: str) -> str:
        if not value.startswith(_MARK):
            return value
        try:
            return self._fernet.decrypt(value[len(_MARK):].encode()).decode()
        except InvalidToken:
            raise ValueError("a stored secret cannot be decrypted with the configured TACIT_SECRET_KEY") from None

    def rotate(self, value: str) -> str:
        """Re-encrypt with the first (newest) key."""
        if not value.startswith(_MARK):
            return self.encrypt(value)
        return _MARK + self._fernet.rotate(value[len(_MARK):].encode()).decode()

    def seal(self, settings: dict[str, Any]) -> dict[str, Any]:
        """A copy of `settings` with every secret-looking string value encrypted."""
        return {k: self._seal_value(k, v) for k, v in settings.items()}

    def _seal_value(self, key: str, value: Any) -> Any:
        if isinstance(value, dict):
            return self.seal(value)
        if isinstance(value, list):  # several secrets under one key (e.g. webhook keys while rotating)
            return [self._seal_value(key, v) for v in value]
        if isinstance(value, str) and SECRET_KEYS.search(key) and value and not value.startswith(_MARK):
            return self.encrypt(value)
        return value


def is_sealed(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(_MARK)


def secret_values(settings: dict[str, Any]) -> set[str]:
    """Every secret-looking string in a source's settings (for log redaction)."""
    found: set[str] = set()
    for key, value in settings.items():
        if isinstance(value, dict):
            found |= secret_values(value)
        elif isinstance(value, list):
            found |= {v for v in value if isinstance(v, str) and SECRET_KEYS.search(key) and len(v) >= 6}
        elif isinstance(value, str) and SECRET_KEYS.search(key) and len(value) >= 6:
            found.add(value)
    return found


class RedactingFilter:
    """A logging filter that masks known secret values in every record that passes a handler."""

    def __init__(self) -> None:
        self.values: set[str] = set()

    def filter(self, record: Any) -> bool:
        if not self.values:
            return True
        message = record.getMessage()
        masked = message
        for value in self.values:
            if value in masked:
                masked = masked.replace(value, "********")
        if masked != message:
            record.msg, record.args = masked, None
        return True


_filter = RedactingFilter()


def redact_in_logs(values: set[str]) -> None:
    """Mask these values in all log output of this process (root handlers and any added later)."""
    import logging

    _filter.values |= {v for v in values if v}
    root = logging.getLogger()
    if _filter not in root.filters:
        root.addFilter(_filter)
    for handler in root.handlers:
        if _filter not in handler.filters:
            handler.addFilter(_filter)
    # Records logged through non-root loggers reach root handlers without passing root's own
    # filters, so the filter also rides on the logging module's record factory.
    old = logging.getLogRecordFactory()
    if getattr(old, "_tacit_redacting", False):
        return

    def factory(*args: Any, **kwargs: Any) -> Any:
        record = old(*args, **kwargs)
        _filter.filter(record)
        return record

    factory._tacit_redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def rotate_all(session: Any, box: SecretBox) -> int:
    """Re-encrypt every stored secret with the newest key; returns how many values changed."""
    from sqlalchemy import select

    from db import models

    changed = 0

    def walk(value: Any) -> Any:
        nonlocal changed
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        if is_sealed(value):
            new = box.rotate(value)
            changed += new != value
            return new
        return value

    for source in session.scalars(select(models.Source)):
        source.config = walk(source.config)
        source.state = walk(source.state)
    return changed
