"""The request and answer shapes of the OpenAI chat completions API that Tacit serves, and the
targets a `model` field names.

Reference: https://platform.openai.com/docs/api-reference/chat/create (request, the
`chat.completion` object, and the `chat.completion.chunk` objects of a stream).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ServingError(Exception):
    """A request refused with an OpenAI-style error body: status, message, type, param, code."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class QueueFull(ServingError):
    """Every generation slot and queue place is taken: retry after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(429, message, type="rate_limit_error", code="queue_full",
                         headers={"Retry-After": str(retry_after)})


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text for p in self.content)
        return self.content or ""


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatRequest(BaseModel):
    """The fields Tacit honours; other OpenAI fields are accepted and ignored, except `n` > 1."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=200)
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=1)
    user: str | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> list[str] | None:
        stops = [value] if isinstance(value, str) else value
        if stops is not None and (len(stops) > 4 or any(not s for s in stops)):
            raise ValueError("stop takes up to 4 non-empty strings")
        return stops

    def stops(self) -> list[str]:
        return list(self.stop or [])  # type: ignore[arg-type]

    def turns(self) -> list[dict[str, str]]:
        """The conversation as chat-template messages (developer counts as system, tool as user)."""
        role = {"developer": "system", "tool": "user"}
        return [{"role": role.get(m.role, m.role), "content": m.text()} for m in self.messages]


class FeedbackRequest(BaseModel):
    """A rating and/or a correction for one answer of `/v1/chat/completions`."""

    model_config = ConfigDict(extra="forbid")

    completion_id: str = Field(min_length=1, max_length=64, description="The `id` of the chat completion")
    rating: float | None = Field(None, ge=-1, le=5,
                                 description="-1, 0 or 1 (thumbs), or 1..5 with 3 as neutral")
    correction: str | None = Field(None, min_length=1, max_length=20000,
                                   description="The answer the model should have given")
    comment: str | None = Field(None, max_length=4000)


@dataclass(frozen=True, slots=True)
class Target:
    """What a request's `model` names: a team's adapter version, or a base model (team None)."""

    model: str  # the id answered in `model`: team@version, or the base model's name
    base_model: str
    team: str | None = None
    version: int | None = None
    path: str | None = None


@dataclass(slots=True)
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # stop | length


def completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def completion_body(cid: str, model: str, gen: Generation, created: int | None = None) -> dict[str, Any]:
    return {"id": cid, "object": "chat.completion", "created": created or int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": gen.text},
                         "finish_reason": gen.finish_reason, "logprobs": None}],
            "usage": usage(gen.prompt_tokens, gen.completion_tokens)}


def chunk_body(cid: str, model: str, created: int, delta: dict[str, Any], finish_reason: str | None,
               use: dict[str, int] | None = None, *, choices: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason,
                                         "logprobs": None}] if choices else []}
    if use is not None:
        body["usage"] = use
    return body
