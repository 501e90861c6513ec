"""`[inference] backend = "vllm"`: promotions load versions into a vLLM server and unload the
replaced ones; `tacit serve` forwards /v1 there, still checking keys and recording conversations.
The vLLM server is `tests.serving.fake_vllm`, serving vLLM's routes over HTTP on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import select

from connectors.sandbox.server import free_port
from db import models
from ingestion.api.app import create_app
from tacit.context import Context
from tests.serving.fake_vllm import fake_vllm
from tests.serving.helpers import TOKEN, add_version, serve_in_thread
from training.serving.keys import create_key
from training.serving.vllm import sync_team

QUESTION = [{"role": "user", "content": "who is on call"}]


@pytest.fixture
def stack(default_teams: str, make_ctx: Any, tmp_path: Any) -> Iterator[dict[str, Any]]:
    vllm_app, vllm_port = fake_vllm(), free_port()
    body = (f'[api]\nadmin_token = "{TOKEN}"\n\n[inference]\nbackend = "vllm"\n'
            f'url = "http://127.0.0.1:{vllm_port}"\n\n' + default_teams)
    ctx: Context = make_ctx(f"sqlite:///{tmp_path / 'tacit.db'}", body)
    with serve_in_thread(vllm_app, vllm_port):
        add_version(ctx, "platform", 1, seed=1)
        key = create_key(ctx, "platform")[1]
        app, port = create_app(ctx, process_teams=False), free_port()
        with serve_in_thread(app, port):
            yield {"ctx": ctx, "vllm": vllm_app.state, "url": f"http://127.0.0.1:{port}", "key": key,
                   "config": tmp_path / "tacit.toml"}


def test_promotion_loads_into_vllm_and_serve_forwards(stack: dict[str, Any]) -> None:
    ctx, vllm = stack["ctx"], stack["vllm"]
    assert sync_team(ctx, "platform") == "platform: platform@1 loaded in vLLM"
    assert vllm.loras == {"platform@1": str((ctx.data_dir / "adapters" / "platform" / "1").resolve())}

    platform = openai.OpenAI(base_url=stack["url"] + "/v1", api_key=stack["key"], max_retries=0)
    answer = platform.chat.completions.create(model="platform", messages=QUESTION, max_tokens=16, temperature=0)
    assert answer.choices[0].message.content == "[platform@1] who is on call"  # vLLM's answer, relayed
    assert answer.model == "platform@1" and answer.usage.completion_tokens == 5

    add_version(ctx, "platform", 2, seed=2)
    sync_team(ctx, "platform")
    assert list(vllm.loras) == ["platform@2"]
    assert vllm.events == [("load", "platform@1"), ("load", "platform@2"), ("unload", "platform@1")]
    chunks = list(platform.chat.completions.create(model="platform", messages=QUESTION, max_tokens=16, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "[platform@2] who is on call"

    # The command line's rollback swaps the versions in vLLM too.
    run = subprocess.run([sys.executable, "-m", "tacit.cli", "--config", str(stack["config"]), "adapters", "rollback",
                          "platform"], capture_output=True, text=True, env={**os.environ}, timeout=120)
    assert run.returncode == 0, run.stderr
    assert list(vllm.loras) == ["platform@1"] and "platform@1 loaded in vLLM" in run.stdout

    # A pinned version not loaded is loaded on demand.
    pinned = platform.chat.completions.create(model="platform@2", messages=QUESTION, max_tokens=16)
    assert pinned.choices[0].message.content.startswith("[platform@2]")

    # Keys are still checked, conversations still recorded, with the version that answered.
    with pytest.raises(openai.PermissionDeniedError):
        platform.chat.completions.create(model="support", messages=QUESTION)
    assert httpx.get(stack["url"] + "/v1/models").status_code == 401
    with ctx.session() as session:
        chats = list(session.scalars(select(models.Interaction).order_by(models.Interaction.id)))
    assert [c.meta["adapter_version"] for c in chats] == [1, 2, 2]
    assert chats[1].messages[-1] == {"role": "assistant", "text": "[platform@2] who is on call"}


def test_vllm_down_is_503(default_teams: str, make_ctx: Any, tmp_path: Any) -> None:
    body = f'[inference]\nbackend = "vllm"\nurl = "http://127.0.0.1:{free_port()}"\n\n' + default_teams
    ctx: Context = make_ctx(f"sqlite:///{tmp_path / 'tacit.db'}", body)
    add_version(ctx, "platform", 1, seed=1)
    key = create_key(ctx, "platform")[1]
    app, port = create_app(ctx, process_teams=False), free_port()
    with serve_in_thread(app, port):
        response = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                              json={"model": "platform", "messages": QUESTION})
    assert response.status_code == 503 and response.json()["error"]["code"] == "inference_backend"
