"""`tacit keys create|list|revoke TEAM`: a key shown once, stored hashed, revoked for good."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import select

from db import models
from training.serving.keys import hash_key, team_of_key


def tacit(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tacit.cli", "--config", str(config), *args], capture_output=True,
                          text=True, env={**os.environ}, timeout=120)


def test_keys_create_list_revoke(ctx: Any, tmp_path: Path) -> None:
    config = tmp_path / "tacit.toml"
    made = tacit(config, "keys", "create", "platform", "--name", "ide")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("tk-") and "not shown again" in made.stderr
    with ctx.session() as session:
        row = session.scalar(select(models.ApiKey))
        assert row.key_hash == hash_key(key) and key not in (row.prefix, row.name)
    assert team_of_key(ctx, key) == ("platform", row.id)

    listed = json.loads(tacit(config, "keys", "list", "platform", "--json").stdout)
    assert [(k["name"], k["prefix"], k["revoked_at"]) for k in listed] == [("ide", key[:10], None)]
    assert key not in tacit(config, "keys", "list", "platform").stdout

    assert tacit(config, "keys", "revoke", "support", str(row.id)).returncode == 1  # not support's key
    revoked = tacit(config, "keys", "revoke", "platform", str(row.id))
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    assert team_of_key(ctx, key) is None
    assert tacit(config, "keys", "create", "nobody").returncode == 2
