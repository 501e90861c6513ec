"""`tacit train` SIGKILLed mid-training resumes from its checkpoint and ends with the very same adapter.

Two identical corpora (tiny-random base model, a handful of examples). On one, `tacit train
platform` runs to the end. On the other, the same command is SIGKILLed once it has written a
resume checkpoint, then run again: it says it resumes the interrupted version from that step,
and the adapter it saves holds exactly the same tensors, after the same losses, as the
uninterrupted run's. (The recipe's in-process resume and the service's resume after an
exception are tests/training/test_recipe.py and test_service.py; this is the real process kill.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from safetensors.torch import load_file
from sqlalchemy import select

from db import models
from tacit.context import Context
from tests.training.helpers import PLATFORM_QA, add_example, add_qa

pytestmark = pytest.mark.slow

BODY = ('[[teams]]\nname = "platform"\nbase_model = "tiny-random"\n[teams.training]\nmax_steps = 15\n'
        'learning_rate = 0.005\n\n[[sources]]\nname = "assistant"\nkind = "webhook"\nteam = "platform"\n')


def corpus(write_config: Callable[..., Path], directory: Path) -> Path:
    directory.mkdir()
    config = write_config(directory, f"sqlite:///{directory / 'tacit.db'}", BODY)
    ctx = Context.load(config)
    add_qa(ctx, "platform", PLATFORM_QA)
    add_example(ctx, "platform", "cpt", {"text": "The primary Postgres cluster is called Basalt. " * 12})
    add_example(ctx, "platform", "cpt", {"text": "Production deploys go through Skylark, never by hand. " * 12})
    return config


def train(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tacit.cli", "--config", str(config), "train", "platform"],
                            cwd=config.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def finish(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=400)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out)


def test_sigkill_mid_training_resumes_to_identical_weights(tmp_path: Path, write_config: Callable[..., Path]) -> None:
    straight_cfg, killed_cfg = corpus(write_config, tmp_path / "straight"), corpus(write_config, tmp_path / "killed")
    uninterrupted = train(straight_cfg)  # runs alongside the one that is killed and resumed
    version_dir = killed_cfg.parent / ".tacit" / "adapters" / "platform" / "1"
    proc = train(killed_cfg)
    deadline = time.monotonic() + 300
    while not (version_dir / "checkpoint.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (version_dir / "checkpoint.pt").exists(), "killed before the first checkpoint"
    assert not (version_dir / "adapter_model.safetensors").exists(), "training finished before the kill"
    ctx = Context.load(killed_cfg)
    with ctx.session() as s:
        assert [(a.version, a.status) for a in s.scalars(select(models.Adapter))] == [(1, "training")]

    resumed = finish(train(killed_cfg))
    straight = finish(uninterrupted)
    assert straight["status"] in ("promoted", "rejected") and straight["train"]["resumed_from_step"] is None
    assert resumed["version"] == 1 and resumed["why"] == "resuming interrupted version 1"
    assert resumed["train"]["resumed_from_step"] == 10
    assert resumed["train"]["steps"] == straight["train"]["steps"] == 15
    assert resumed["train"]["first_loss"] == straight["train"]["first_loss"]
    assert resumed["train"]["final_loss"] == straight["train"]["final_loss"]
    assert resumed["status"] == straight["status"] and resumed["metrics"] == straight["metrics"]
    assert not (version_dir / "checkpoint.pt").exists()

    a = load_file(straight_cfg.parent / ".tacit" / "adapters" / "platform" / "1" / "adapter_model.safetensors")
    b = load_file(version_dir / "adapter_model.safetensors")
    assert a.keys() == b.keys() and len(a) > 0
    assert all(a[k].equal(b[k]) for k in a), [k for k in a if not a[k].equal(b[k])]
