"""The real `openai` client against `tacit serve` on loopback: models, chat, streaming, keys,
a promotion picked up without a restart, the queue bound, and feedback that trains the next refresh."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI
from sqlalchemy import select

from connectors.sandbox.server import free_port
from db import models
from ingestion.api.app import create_app
from ingestion.processing.pipeline import process_team
from tacit.context import Context
from tests.serving.helpers import TOKEN, add_version, serve_in_thread
from training import base_models
from training.policy import decide
from training.registry import promote, rollback
from training.serving.keys import create_key, revoke_key

QUESTION = [{"role": "user", "content": "When does the deploy freeze start?"}]


@pytest.fixture
def served(make_ctx: Any, db_url: str, default_teams: str) -> Iterator[dict[str, Any]]:
    # The support team does not record its conversations.
    teams = default_teams.replace('name = "support"\n', 'name = "support"\nrecord_conversations = false\n')
    ctx: Context = make_ctx(db_url, f'[api]\nadmin_token = "{TOKEN}"\n\n[inference]\nmax_queue = 0\n\n' + teams)
    add_version(ctx, "platform", 1, seed=1)
    add_version(ctx, "support", 1, seed=2)
    keys = {team: create_key(ctx, team, "test")[1] for team in ("platform", "support")}
    app = create_app(ctx, process_teams=False)
    port = free_port()
    with serve_in_thread(app, port):
        yield {"ctx": ctx, "app": app, "url": f"http://127.0.0.1:{port}", "keys": keys}


def client(served: dict[str, Any], key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=served["url"] + "/v1", api_key=key, max_retries=0, timeout=60)


def completions(ctx: Context) -> list[models.Completion]:
    with ctx.session() as session:
        return list(session.scalars(select(models.Completion).order_by(models.Completion.created_at)))


def test_chat_stream_and_models(served: dict[str, Any]) -> None:
    platform = client(served, served["keys"]["platform"])
    ids = [m.id for m in platform.models.list()]
    assert ids == ["platform", "tiny-random"]  # support's model is not listed for platform's key
    answer = platform.chat.completions.create(model="platform", messages=QUESTION, max_tokens=12, temperature=0)
    assert answer.object == "chat.completion" and answer.id.startswith("chatcmpl-")
    assert answer.model == "platform@1"
    assert answer.choices[0].message.role == "assistant"
    text = answer.choices[0].message.content
    assert text and answer.choices[0].finish_reason in ("stop", "length")
    assert answer.usage.completion_tokens > 0
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens

    stream = platform.chat.completions.create(model="platform", messages=QUESTION, max_tokens=12, temperature=0,
                                              stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text  # greedy: the same answer
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == \
        [answer.choices[0].finish_reason]
    assert chunks[-1].usage.completion_tokens == answer.usage.completion_tokens
    assert len({c.id for c in chunks}) == 1

    # The base model answers too, but the conversation is nobody's knowledge: not recorded.
    base = platform.chat.completions.create(model="tiny-random", messages=QUESTION, max_tokens=12, temperature=0)
    assert base.model == "tiny-random" and base.choices[0].message.content != text

    # Both answers of the adapter were recorded as chat interactions with the version that answered.
    ctx = served["ctx"]
    with ctx.session() as session:
        chats = list(session.scalars(select(models.Interaction).where(models.Interaction.kind == "chat")))
    assert len(chats) == 2
    assert all(c.meta["adapter_version"] == 1 and c.messages[-1] == {"role": "assistant", "text": text}
               for c in chats)
    assert {c.external_id for c in chats} == {answer.id, chunks[0].id}


def test_keys_and_errors(served: dict[str, Any]) -> None:
    platform = client(served, served["keys"]["platform"])
    with pytest.raises(openai.PermissionDeniedError) as refused:
        platform.chat.completions.create(model="support", messages=QUESTION, max_tokens=4)
    assert refused.value.status_code == 403 and refused.value.code == "wrong_team"
    with pytest.raises(openai.AuthenticationError):
        client(served, "tk-not-a-key").models.list()
    no_key = httpx.post(served["url"] + "/v1/chat/completions", json={"model": "platform", "messages": QUESTION})
    assert no_key.status_code == 401
    assert set(no_key.json()["error"]) == {"message", "type", "param", "code"}
    # The admin token reaches every team's model.
    admin = client(served, TOKEN)
    assert admin.chat.completions.create(model="support", messages=QUESTION, max_tokens=4).model == "support@1"
    # Bad input: OpenAI-style 4xx bodies.
    with pytest.raises(openai.NotFoundError):
        platform.chat.completions.create(model="nobody", messages=QUESTION, max_tokens=4)
    with pytest.raises(openai.BadRequestError) as bad:
        platform.chat.completions.create(model="platform", messages=QUESTION, max_tokens=4, temperature=7)
    assert bad.value.param == "temperature"
    # A revoked key is refused from then on.
    revoke_key(served["ctx"], "platform", served["keys"]["platform"])
    with pytest.raises(openai.AuthenticationError):
        platform.models.list()


def test_promotion_and_rollback_served_without_restart(served: dict[str, Any]) -> None:
    ctx = served["ctx"]
    platform = client(served, served["keys"]["platform"])
    first = platform.chat.completions.create(model="platform", messages=QUESTION, max_tokens=12, temperature=0)
    add_version(ctx, "platform", 2, seed=3)  # promoted, as the gate of a refresh would
    second = platform.chat.completions.create(model="platform", messages=QUESTION, max_tokens=12, temperature=0)
    assert (first.model, second.model) == ("platform@1", "platform@2")
    assert second.choices[0].message.content != first.choices[0].message.content
    pinned = platform.chat.completions.create(model="platform@1", messages=QUESTION, max_tokens=12, temperature=0)
    assert pinned.choices[0].message.content == first.choices[0].message.content
    rollback(ctx, "platform")
    back = platform.chat.completions.create(model="platform", messages=QUESTION, max_tokens=12, temperature=0)
    assert back.model == "platform@1"
    assert [c.adapter_version for c in completions(ctx)] == [1, 2, 1, 1]
    promote(ctx, "platform", 2, reason="by hand")
    assert platform.chat.completions.create(model="platform", messages=QUESTION, max_tokens=4).model == "platform@2"


def test_queue_full_is_429_with_retry_after(served: dict[str, Any]) -> None:
    platform = client(served, served["keys"]["platform"])
    platform.chat.completions.create(model="platform", messages=QUESTION, max_tokens=2)
    engine = served["app"].state.engine
    ticket = engine.admission.enter()  # the one place ([inference] max_queue = 0) is taken by a request in progress
    try:
        response = httpx.post(served["url"] + "/v1/chat/completions", json={"model": "platform", "messages": QUESTION},
                              headers={"Authorization": f"Bearer {served['keys']['platform']}"})
        assert response.status_code == 429 and int(response.headers["Retry-After"]) > 0
        assert response.json()["error"]["code"] == "queue_full"
        with pytest.raises(openai.RateLimitError):
            platform.chat.completions.create(model="platform", messages=QUESTION, max_tokens=2)
    finally:
        ticket.leave()
    assert platform.chat.completions.create(model="platform", messages=QUESTION, max_tokens=2).choices


def test_rated_answer_becomes_preference_in_next_refresh(served: dict[str, Any]) -> None:
    ctx = served["ctx"]
    platform = client(served, served["keys"]["platform"])
    answer = platform.chat.completions.create(model="platform", messages=QUESTION, max_tokens=12, temperature=0)
    correction = "The deploy freeze starts Thursday at 16:00 UTC."
    schema = httpx.get(served["url"] + "/openapi.json").json()
    assert "/v1/feedback" in schema["paths"]
    wrong = httpx.post(served["url"] + "/v1/feedback", json={"completion_id": answer.id, "rating": -1},
                       headers={"Authorization": f"Bearer {served['keys']['support']}"})
    assert wrong.status_code == 403
    posted = platform.post("/feedback", cast_to=httpx.Response,
                           body={"completion_id": answer.id, "rating": -1, "correction": correction})
    assert posted.status_code == 201
    feedback_id = posted.json()["interaction_id"]

    process_team(ctx, "platform")
    with ctx.session() as session:
        examples = list(session.scalars(select(models.Example).where(models.Example.interaction_id == feedback_id)))
        kinds = {e.kind: e for e in examples}
        assert set(kinds) == {"preference", "chat"}
        pref = kinds["preference"].payload
        assert pref == {"prompt": QUESTION[0]["content"], "chosen": correction,
                        "rejected": answer.choices[0].message.content.strip()}
        feedback = session.get(models.Interaction, feedback_id)
        assert feedback.kind == "feedback" and feedback.meta["completion_id"] == answer.id
        assert feedback.meta["adapter_version"] == 1
        # The served chat alone is not trained on (it would echo the model's own answer).
        chat = session.scalar(select(models.Interaction).where(models.Interaction.external_id == answer.id))
        assert session.scalars(select(models.Example).where(models.Example.interaction_id == chat.id)).all() == []
        # The next refresh selects the new examples.
        team_cfg = ctx.config.team("platform")
        team_row = ctx.team_row(session, "platform")
        decision = decide(session, team_cfg, team_row.id, force=True, has_eval_set=False,
                          base_hash=base_models.weight_hash(team_cfg.base_model, ctx.data_dir))
        assert {e.id for e in examples} <= {e.id for e in decision.selection.new}


def test_recording_off_keeps_no_conversation(served: dict[str, Any]) -> None:
    ctx = served["ctx"]
    support = client(served, served["keys"]["support"])
    answer = support.chat.completions.create(model="support", messages=QUESTION, max_tokens=4)
    with ctx.session() as session:
        assert session.scalars(select(models.Interaction)).all() == []
    assert [c.adapter_version for c in completions(ctx)] == [1]
    refused = httpx.post(served["url"] + "/v1/feedback", json={"completion_id": answer.id, "rating": 1},
                         headers={"Authorization": f"Bearer {served['keys']['support']}"})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "not_recorded"
    missing = httpx.post(served["url"] + "/v1/feedback", json={"completion_id": "chatcmpl-nope", "rating": 1},
                         headers={"Authorization": f"Bearer {TOKEN}"})
    assert missing.status_code == 404


def test_a_stream_abandoned_before_its_first_chunk_gives_its_place_back(served: dict[str, Any],
                                                                         post_in_chunks: Any) -> None:
    """The client sends a streaming request and goes away before the first chunk: the one place
    ([inference] max_queue = 0) is free again, and the next client is answered, not refused."""
    app, key = served["app"], served["keys"]["platform"]
    request = json.dumps({"model": "platform", "messages": QUESTION, "max_tokens": 4, "stream": True}).encode()
    gone = post_in_chunks(app, "/v1/chat/completions", [request],
                          {"authorization": f"Bearer {key}", "content-type": "application/json"})
    assert b"chat.completion.chunk" not in gone.raw  # it left before any chunk was sent
    assert app.state.engine.admission.in_flight == 0
    answer = client(served, key).chat.completions.create(model="platform", messages=QUESTION, max_tokens=4)
    assert answer.model == "platform@1" and answer.choices[0].message.content


def test_the_readme_client_against_a_tacit_serve_process(tmp_path: Path, write_config: Callable[..., Path],
                                                         default_teams: str, tacit: Callable[..., Any],
                                                         tacit_serve: Callable[[Path, int], Any]) -> None:
    """`tacit keys create` and `tacit serve` as commands, and the README's lines of `openai` client
    code against them: an answer from the team's adapter, the same answer streamed, the
    conversation recorded; a wrong key refused."""
    port = free_port()
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'tacit.db'}", f"[api]\nport = {port}\n\n" + default_teams)
    ctx = Context.load(config)
    add_version(ctx, "platform", 1, seed=1)
    key = tacit("keys", "create", "platform", config=config, check=True).stdout.strip()
    tacit_serve(config, port)

    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key)  # the key printed above
    answer = client.chat.completions.create(
        model="platform", messages=[{"role": "user", "content": "When does the deploy freeze start?"}],
        max_tokens=64, temperature=0)
    assert answer.model == "platform@1"  # the version that answered
    text = answer.choices[0].message.content
    assert text and answer.usage.completion_tokens > 0

    stream = client.chat.completions.create(
        model="platform", messages=[{"role": "user", "content": "When does the deploy freeze start?"}],
        max_tokens=64, temperature=0, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text  # greedy: the same
    assert {c.model for c in chunks} == {"platform@1"}
    assert chunks[-1].usage.completion_tokens == answer.usage.completion_tokens

    with ctx.session() as session:
        chats = list(session.scalars(select(models.Interaction).where(models.Interaction.kind == "chat")
                                     .order_by(models.Interaction.id)))
    assert [(c.meta["completion_id"], c.meta["adapter_version"]) for c in chats] == [(answer.id, 1), (chunks[0].id, 1)]
    with pytest.raises(openai.AuthenticationError):
        OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="tk-not-a-key", max_retries=0).models.list()
