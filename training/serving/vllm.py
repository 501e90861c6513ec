"""The vLLM backend: a vLLM server with `--enable-lora` answers, Tacit keeps its adapters current.

vLLM routes used (https://docs.vllm.ai/en/latest/features/lora/, "Dynamically serving LoRA
Adapters", needs `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`; added in vllm-project/vllm#6566):
- `POST /v1/load_lora_adapter` `{"lora_name", "lora_path"}` → 200 (plain-text success), 400 when
  the name is already loaded or the path is not an adapter;
- `POST /v1/unload_lora_adapter` `{"lora_name"}` → 200, 400/404 when it is not loaded;
- `GET /v1/models`: the base model and each loaded adapter (adapters have `parent` = the base);
- `POST /v1/chat/completions` with `model` = an adapter's `lora_name`, the OpenAI shapes
  (https://docs.vllm.ai/en/latest/serving/openai_compatible_server/), streaming as SSE.

Each version is loaded under the name `team@version`; a promotion or rollback loads the new
active version and unloads the team's others (`sync_team`), and a request for a version that is
not loaded (promoted by another process, or a pinned `team@version`) loads it first.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from db import models
from tacit.config import InferenceConfig
from training.registry import active_version
from training.serving.engine import Admission
from training.serving.protocol import ChatRequest, Generation, ServingError, Target

log = logging.getLogger(__name__)


class VllmError(ServingError):
    def __init__(self, message: str, status: int = 502) -> None:
        super().__init__(status, message, type="server_error", code="inference_backend")


class VllmClient:
    """The vLLM routes Tacit uses, over HTTP."""

    def __init__(self, cfg: InferenceConfig, transport: httpx.BaseTransport | None = None) -> None:
        headers = {"Authorization": f"Bearer {cfg.api_key.get_secret_value()}"} if cfg.api_key else {}
        self.http = httpx.Client(base_url=cfg.url.rstrip("/"), headers=headers, timeout=cfg.timeout_s,
                                 transport=transport)

    def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        try:
            return self.http.post(path, json=body)
        except httpx.HTTPError as exc:
            raise VllmError(f"the inference server at {self.http.base_url} did not answer: {type(exc).__name__}",
                            503) from None

    def loaded(self) -> set[str]:
        """Names of the adapters loaded now (models with a parent)."""
        try:
            response = self.http.get("/v1/models")
        except httpx.HTTPError as exc:
            raise VllmError(f"the inference server did not answer: {type(exc).__name__}", 503) from None
        if response.status_code != 200:
            raise VllmError(f"GET /v1/models answered {response.status_code}")
        return {m["id"] for m in response.json().get("data", []) if m.get("parent")}

    def load(self, name: str, path: str) -> None:
        response = self._post("/v1/load_lora_adapter", {"lora_name": name, "lora_path": path})
        if response.status_code != 200 and "already" not in response.text:
            raise VllmError(f"loading adapter {name} from {path} failed ({response.status_code}): "
                            f"{response.text[:300]}")

    def unload(self, name: str) -> None:
        response = self._post("/v1/unload_lora_adapter", {"lora_name": name})
        if response.status_code not in (200, 404) and "not" not in response.text:
            raise VllmError(f"unloading adapter {name} failed ({response.status_code}): {response.text[:300]}")

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        response = self._post("/v1/chat/completions", body)
        if response.status_code != 200:
            raise _relay_error(response)
        return response.json()

    def chat_stream(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The chunks of a streamed answer (the `data:` lines, parsed, up to `[DONE]`)."""
        try:
            with self.http.stream("POST", "/v1/chat/completions", json=body) as response:
                if response.status_code != 200:
                    response.read()
                    raise _relay_error(response)
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    yield json.loads(data)
        except httpx.HTTPError as exc:
            raise VllmError(f"the inference server broke off the stream: {type(exc).__name__}", 503) from None


class NotLoaded(ServingError):
    """vLLM does not serve the model named (unloaded since we last looked, e.g. by another process)."""


def _relay_error(response: httpx.Response) -> ServingError:
    """vLLM's own error for a request it refused (a bad parameter: a 4xx the caller should see)."""
    try:
        error = response.json().get("error") or response.json()
        message = str(error.get("message") or error)
    except (ValueError, AttributeError):
        message = response.text[:300]
    if response.status_code == 404:
        return NotLoaded(404, f"the inference server does not serve it: {message}", code="model_not_found")
    if 400 <= response.status_code < 500:
        return ServingError(400, f"the inference server refused the request: {message}")
    return VllmError(f"the inference server failed ({response.status_code}): {message}")


def lora_path(ctx: Any, target: Target) -> str:
    """Where vLLM reads the version: under `[inference] adapters_path` (its mount of the
    adapters volume) when set, else the path Tacit wrote it to."""
    cfg = ctx.config.inference
    if cfg.adapters_path and target.team is not None and target.version is not None:
        return f"{cfg.adapters_path.rstrip('/')}/{target.team}/{target.version}"
    return str(Path(target.path or "").resolve())


class VllmBackend:
    """Same interface as `EmbeddedEngine` (`generate`, `stream`), answered by vLLM."""

    def __init__(self, ctx: Any, cfg: InferenceConfig | None = None, client: VllmClient | None = None) -> None:
        self.ctx = ctx
        self.cfg = cfg or ctx.config.inference
        self.client = client or VllmClient(self.cfg)
        self.admission = Admission(self.cfg.max_concurrency, self.cfg.max_queue)
        self._known: set[str] | None = None
        self._lock = threading.Lock()

    def ensure_loaded(self, target: Target) -> None:
        if target.team is None:
            return
        with self._lock:
            if self._known is None or target.model not in self._known:
                self._known = self.client.loaded()
            if target.model not in self._known:
                self.client.load(target.model, lora_path(self.ctx, target))
                self._known.add(target.model)

    def _body(self, target: Target, request: ChatRequest, stream: bool) -> dict[str, Any]:
        body = request.model_dump(exclude_none=True, exclude={"stream_options", "n", "max_completion_tokens"})
        body["model"] = target.model if target.team is not None else target.base_model
        body["max_tokens"] = request.max_completion_tokens or request.max_tokens or self.cfg.default_max_tokens
        if body["max_tokens"] > self.cfg.max_tokens:
            raise ServingError(400, f"max_tokens is at most {self.cfg.max_tokens}", param="max_tokens")
        body["messages"] = request.turns()
        body["stream"] = stream
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    def _retrying(self, target: Target, call: Any) -> Any:
        """`call()` with the target loaded; once more after reloading if vLLM has dropped it."""
        self.ensure_loaded(target)
        try:
            return call()
        except NotLoaded:
            if target.team is None:
                raise
            with self._lock:
                self._known = None
            self.ensure_loaded(target)
            return call()

    def generate(self, target: Target, request: ChatRequest) -> Generation:
        body = self._body(target, request, False)
        data = self._retrying(target, lambda: self.client.chat(body))
        choice = (data.get("choices") or [{}])[0]
        use = data.get("usage") or {}
        return Generation(str((choice.get("message") or {}).get("content") or ""), int(use.get("prompt_tokens", 0)),
                          int(use.get("completion_tokens", 0)), str(choice.get("finish_reason") or "stop"))

    def stream(self, target: Target, request: ChatRequest,
               cancel: threading.Event | None = None) -> Iterator[str | Generation]:
        """Text deltas as vLLM sends them, then the finished `Generation`; once `cancel` is set
        (the client went away) the upstream stream is closed at its next chunk."""
        body = self._body(target, request, True)
        chunks = self._retrying(target, lambda: _started(self.client.chat_stream(body)))
        text, finish, use = "", "stop", {}
        for chunk in chunks:
            if cancel is not None and cancel.is_set():
                break
            use = chunk.get("usage") or use
            for choice in chunk.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content") or ""
                if piece:
                    text += piece
                    yield piece
                finish = choice.get("finish_reason") or finish
        yield Generation(text, int(use.get("prompt_tokens", 0)), int(use.get("completion_tokens", 0)), finish)


def _started(chunks: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The stream with its first chunk already read, so that a refusal is raised here."""
    try:
        first = next(chunks)
    except StopIteration:
        return iter(())
    return itertools.chain([first], chunks)


def sync_team(ctx: Any, team: str, client: VllmClient | None = None) -> str | None:
    """With `[inference] backend = "vllm"`: load the team's active version into vLLM and unload
    the team's other versions. Returns what was done, or None for the embedded backend (which
    picks up the active version on its next request)."""
    cfg = ctx.config.inference
    if cfg.backend != "vllm":
        return None
    client = client or VllmClient(cfg)
    with ctx.session() as session:
        team_row = session.scalar(select(models.Team).where(models.Team.name == team))
        active = active_version(session, team_row.id) if team_row is not None else None
        target = (Target(model=f"{team}@{active.version}", base_model=active.base_model, team=team,
                         version=active.version, path=active.path) if active is not None and active.path else None)
    loaded = client.loaded()
    if target is not None and target.model not in loaded:
        client.load(target.model, lora_path(ctx, target))
    gone = sorted(n for n in loaded if n.startswith(f"{team}@") and (target is None or n != target.model))
    for name in gone:
        client.unload(name)
    now = target.model if target is not None else "nothing"
    return f"{team}: {now} loaded in vLLM" + (f", unloaded {', '.join(gone)}" if gone else "")


def sync_team_quietly(ctx: Any, team: str) -> str | None:
    """`sync_team` for a promotion that already happened: a vLLM that does not answer is logged,
    not raised (the next request for the team loads the version anyway)."""
    try:
        return sync_team(ctx, team)
    except ServingError as exc:
        log.warning("could not update vLLM for team %s: %s", team, exc.message)
        return None
