"""Shared helpers for the serving tests: adapter versions made without training, servers on loopback."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import uvicorn

from db import models
from training import base_models, registry
from training.recipe import lora_config

TOKEN = "serving-admin-token"


def add_version(ctx: Any, team: str, version: int, *, seed: int, promote: bool = True) -> str:
    """A LoRA version of `team` on its base model with random (non-zero) weights, so that each
    version answers differently; registered as a candidate and promoted unless told not to."""
    from peft import get_peft_model

    cfg = ctx.config.team(team)
    torch.manual_seed(seed)
    base = base_models.load_model(cfg.base_model, ctx.data_dir, device="cpu")
    peft_cfg = lora_config(8, 16)
    peft_cfg.init_lora_weights = False  # B is random too: the adapter changes the answers
    model = get_peft_model(base, peft_cfg)
    path = registry.version_dir(ctx.data_dir, team, version)
    model.save_pretrained(str(path))
    with ctx.session() as session:
        team_row = ctx.team_row(session, team)
        session.add(models.Adapter(team_id=team_row.id, version=version, status="candidate",
                                   base_model=cfg.base_model, path=str(path), reason="test version"))
    if promote:
        registry.promote(ctx, team, version, reason="test")
    return str(path)


@contextmanager
def serve_in_thread(app: Any, port: int) -> Iterator[uvicorn.Server]:
    """`app` served by uvicorn on 127.0.0.1:`port` in a thread, for the length of the block."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield server
    finally:
        server.should_exit = True
        thread.join(timeout=30)
