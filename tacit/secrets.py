"""Secrets at rest: Fernet encryption with `TACIT_SECRET_KEY` (comma-separated keys; the first
encrypts, all decrypt, so keys can be rotated), or a key file created once in the data dir."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

KEY_ENV = "TACIT_SECRET_KEY"
SECRET_KEYS = re.compile(r"(secret|token|password|api_key|apikey|credential|private_key)", re.I)
_MARK = "fernet:"


class SecretBox:
    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ValueError("no secret key")
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    @classmethod
    def from_env(cls, data_dir: Path) -> SecretBox:
        raw = os.environ.get(KEY_ENV, "").strip()
        if raw:
            return cls([k.strip().encode() for k in raw.split(",") if k.strip()])
        key_file = data_dir / "secret.key"
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
