"""`tacit keys create|list|revoke TEAM`: a key shown once, stored hashed, revoked for good."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from db import models
from training.serving.keys import hash_key, team_of_key

#: The `tacit` fixture (conftest.py): the command line in a fresh process.
Tacit = Callable[..., subprocess.CompletedProcess[str]]


def test_keys_create_list_revoke(tacit: Tacit, ctx: Any, tmp_path: Path) -> None:
    config = tmp_path / "tacit.toml"
    made = tacit("keys", "create", "platform", "--name", "ide", config=config)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("tk-") and "not shown again" in made.stderr
    with ctx.session() as session:
        row = session.scalar(select(models.ApiKey))
        assert row.key_hash == hash_key(key) and key not in (row.prefix, row.name)
    assert team_of_key(ctx, key) == ("platform", row.id)

    listed = json.loads(tacit("keys", "list", "platform", "--json", config=config).stdout)
    assert [(k["name"], k["prefix"], k["revoked_at"]) for k in listed] == [("ide", key[:10], None)]
    assert key not in tacit("keys", "list", "platform", config=config).stdout

    assert tacit("keys", "revoke", "support", str(row.id), config=config).returncode == 4  # not support's key
    revoked = tacit("keys", "revoke", "platform", str(row.id), config=config)
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    assert team_of_key(ctx, key) is None
    assert tacit("keys", "create", "nobody", config=config).returncode == 4  # an unknown team
