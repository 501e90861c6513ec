"""The embedded inference engine: one base model in memory, several teams' LoRA adapters loaded
on it and switched per request, with a bounded queue in front.

Which adapter answers is read from the registry on every request (one small query), so a
promotion or a rollback is served by the next request without a restart: the new version is
loaded on first use and the least recently used adapters are dropped beyond `max_adapters`.
Generation runs one request at a time on the shared model (switching adapters under a running
`generate` would mix them); `[inference] max_queue` requests may wait, and more are refused
with 429 and `Retry-After` rather than piling up.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from sqlalchemy import select

from db import models
from tacit.config import InferenceConfig
from training import base_models
from training.recipe import resolve_device
from training.registry import active_version
from training.selection import chat_prompt_ids
from training.serving.protocol import ChatRequest, Generation, QueueFull, ServingError, Target

_MODEL_ID = re.compile(r"^(?P<team>[^@]+)(?:@(?P<version>\d{1,9}))?$")


# ---------------------------------------------------------------------------- targets
def resolve_target(ctx: Any, model: str) -> Target:
    """The adapter version (or base model) a request's `model` names: `team` (its active
    version), `team@version` (a trained version, pinned), or a team's base model name."""
    m = _MODEL_ID.match(model)
    teams = {t.name: t for t in ctx.config.teams}
    if m is None or m["team"] not in teams:
        bases = {t.base_model for t in ctx.config.teams}
        if model in bases:
            return Target(model=model, base_model=model)
        raise ServingError(404, f"The model {model!r} does not exist: use a team name, team@version, "
                                "or a base model listed by GET /v1/models", param="model", code="model_not_found")
    team = teams[m["team"]]
    with ctx.session() as session:
        team_row = ctx.team_row(session, team.name)
        if m["version"] is None:
            row = active_version(session, team_row.id)
            if row is None or not row.path:
                raise ServingError(404, f"team {team.name} has no active adapter yet (train it, or use the base "
                                        f"model {team.base_model})", param="model", code="model_not_found")
        else:
            row = session.scalar(select(models.Adapter).where(models.Adapter.team_id == team_row.id,
                                                              models.Adapter.version == int(m["version"])))
            if row is None or not row.path or row.status in ("training", "failed"):
                raise ServingError(404, f"team {team.name} has no servable version {m['version']}", param="model",
                                   code="model_not_found")
        return Target(model=f"{team.name}@{row.version}", base_model=row.base_model, team=team.name,
                      version=row.version, path=row.path)


def served_models(ctx: Any) -> list[dict[str, Any]]:
    """`GET /v1/models`: each team with an active adapter (id = team name), then the base models."""
    out: list[dict[str, Any]] = []
    with ctx.session() as session:
        for team in ctx.config.teams:
            row = session.scalar(select(models.Team).where(models.Team.name == team.name))
            active = active_version(session, row.id) if row is not None else None
            if active is not None and active.path:
                created = int((active.promoted_at or active.created_at).timestamp())
                out.append({"id": team.name, "object": "model", "created": created, "owned_by": team.name,
                            "root": f"{team.name}@{active.version}", "parent": active.base_model})
    for base in dict.fromkeys(t.base_model for t in ctx.config.teams):
        out.append({"id": base, "object": "model", "created": 0, "owned_by": "tacit", "root": base, "parent": None})
    return out


# ---------------------------------------------------------------------------- admission
class Ticket:
    """One admitted request's place: given back once, by whichever of its ends comes first."""

    def __init__(self, admission: Admission) -> None:
        self._admission: Admission | None = admission
        self._lock = threading.Lock()

    def leave(self) -> None:
        with self._lock:
            admission, self._admission = self._admission, None
        if admission is not None:
            admission.leave()


class Admission:
    """At most `slots + queue` requests admitted at once; the rest are refused at the door."""

    def __init__(self, slots: int, queue: int, retry_after: int = 2) -> None:
        self.limit = slots + queue
        self.retry_after = retry_after
        self._count = 0
        self._lock = threading.Lock()

    @property
    def in_flight(self) -> int:
        return self._count

    def enter(self) -> Ticket:
        with self._lock:
            if self._count >= self.limit:
                raise QueueFull(f"the model server is busy ({self._count} requests running or waiting); "
                                "retry later", self.retry_after)
            self._count += 1
        return Ticket(self)

    def leave(self) -> None:
        with self._lock:
            self._count -= 1

    @contextmanager
    def ticket(self) -> Iterator[None]:
        ticket = self.enter()
        try:
            yield
        finally:
            ticket.leave()


# ---------------------------------------------------------------------------- generation
class _StopOnText:
    """Stops generation once the decoded answer contains one of the stop strings."""

    def __init__(self, tokenizer: Any, start: int, stops: list[str]) -> None:
        self.tokenizer, self.start, self.stops = tokenizer, start, stops

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        text = self.tokenizer.decode(input_ids[0, self.start:], skip_special_tokens=True)
        hit = any(s in text for s in self.stops)
        return torch.full((input_ids.shape[0],), hit, dtype=torch.bool, device=input_ids.device)


class _StopOnEvent:
    """Stops generation once `event` is set: nobody reads the answer any more."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """The text up to the first stop string (which is not returned, as OpenAI does)."""
    cuts = [i for i in (text.find(s) for s in stops) if i >= 0]
    return (text[:min(cuts)], True) if cuts else (text, False)


class EmbeddedEngine:
    """transformers + peft in this process. Thread-safe: generation is serialised on the model."""

    def __init__(self, ctx: Any, cfg: InferenceConfig | None = None) -> None:
        self.ctx = ctx
        self.cfg = cfg or ctx.config.inference
        self.admission = Admission(1, self.cfg.max_queue)
        self.device = resolve_device("auto")
        self._model_lock = threading.Lock()
        self._bases: dict[str, tuple[Any, Any]] = {}  # base model name -> (model, tokenizer)
        self._loaded: OrderedDict[tuple[str, str], None] = OrderedDict()  # (base, adapter name), LRU order
        self.loads = 0  # adapters loaded since start (the benchmark reads it)

    # -- models
    def _base(self, name: str) -> tuple[Any, Any]:
        if name not in self._bases:
            tokenizer = base_models.load_tokenizer(name, self.ctx.data_dir)
            model = base_models.load_model(name, self.ctx.data_dir, device=str(self.device))
            model.eval()
            self._bases[name] = (model, tokenizer)
        return self._bases[name]

    @contextmanager
    def _selected(self, target: Target) -> Iterator[tuple[Any, Any]]:
        """The model with the target's adapter switched on, or with adapters off for a base
        model (the caller holds the model lock). The first adapter wraps the base model in a
        PeftModel; later ones are added to it, and the least recently used go beyond
        `max_adapters` (after the new one is in, so the wrapper always keeps one)."""
        from peft import PeftModel

        model, tokenizer = self._base(target.base_model)
        if target.team is None:
            if isinstance(model, PeftModel):
                with model.disable_adapter():
                    yield model, tokenizer
            else:
                yield model, tokenizer
            return
        key = (target.base_model, target.model)
        if key not in self._loaded:
            if isinstance(model, PeftModel):
                model.load_adapter(target.path, adapter_name=target.model)
            else:
                model = PeftModel.from_pretrained(model, target.path, adapter_name=target.model)
                model.eval()
                self._bases[target.base_model] = (model, tokenizer)
            self.loads += 1
            self._loaded[key] = None
            model.set_adapter(target.model)  # before evicting, so the active one is never deleted
            while len(self._loaded) > self.cfg.max_adapters:
                (base, old), _ = self._loaded.popitem(last=False)
                self._bases[base][0].delete_adapter(old)
        self._loaded.move_to_end(key)
        model.set_adapter(target.model)
        yield model, tokenizer

    def loaded_adapters(self) -> list[str]:
        return [name for _, name in self._loaded]

    def count_tokens(self, target: Target, text: str) -> int:
        return len(self._base(target.base_model)[1](text, add_special_tokens=False)["input_ids"])

    # -- requests
    def _inputs(self, tokenizer: Any, request: ChatRequest) -> tuple[torch.Tensor, dict[str, Any]]:
        ids = chat_prompt_ids(tokenizer, request.turns())
        max_new = request.max_completion_tokens or request.max_tokens or self.cfg.default_max_tokens
        if max_new > self.cfg.max_tokens:
            raise ServingError(400, f"max_tokens is at most {self.cfg.max_tokens}", param="max_tokens")
        temperature = 1.0 if request.temperature is None else request.temperature
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        kwargs: dict[str, Any] = {"max_new_tokens": max_new, "eos_token_id": tokenizer.eos_token_id,
                                  "pad_token_id": pad}
        if temperature == 0:
            kwargs["do_sample"] = False
        else:
            kwargs.update(do_sample=True, temperature=temperature, top_p=request.top_p or 1.0, top_k=0)
        return torch.tensor([ids], device=self.device), kwargs

    def generate(self, target: Target, request: ChatRequest) -> Generation:
        """One whole answer (blocking)."""
        with self._model_lock, self._selected(target) as (model, tokenizer):
            input_ids, kwargs = self._inputs(tokenizer, request)
            stops = request.stops()
            if stops:
                kwargs["stopping_criteria"] = [_StopOnText(tokenizer, input_ids.shape[1], stops)]
            if request.seed is not None:
                torch.manual_seed(request.seed)
            with torch.no_grad():
                out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **kwargs)
        new = out[0, input_ids.shape[1]:].tolist()
        text, stopped = cut_at_stop(tokenizer.decode(new, skip_special_tokens=True), stops)
        ended = bool(new) and new[-1] == tokenizer.eos_token_id
        finish = "stop" if stopped or ended or len(new) < kwargs["max_new_tokens"] else "length"
        return Generation(text, input_ids.shape[1], len(new), finish)

    def stream(self, target: Target, request: ChatRequest,
               cancel: threading.Event | None = None) -> Iterator[str | Generation]:
        """Text deltas as they are generated, then the finished `Generation`. The model lock is
        held until the stream is consumed or closed; setting `cancel` ends the generation at its
        next token (the client went away)."""
        from transformers import TextIteratorStreamer

        with self._model_lock, self._selected(target) as (model, tokenizer):
            input_ids, kwargs = self._inputs(tokenizer, request)
            stops = request.stops()
            streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True,
                                            timeout=self.cfg.timeout_s)
            criteria: list[Any] = [_StopOnEvent(cancel)] if cancel is not None else []
            if stops:
                criteria.append(_StopOnText(tokenizer, input_ids.shape[1], stops))
            if criteria:
                kwargs["stopping_criteria"] = criteria
            if request.seed is not None:
                torch.manual_seed(request.seed)
            result: dict[str, Any] = {}

            def run() -> None:
                with torch.no_grad():
                    result["out"] = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                                   streamer=streamer, **kwargs)

            worker = threading.Thread(target=run, daemon=True)
            worker.start()
            text, sent, stopped = "", 0, False
            hold = max((len(s) for s in stops), default=1) - 1  # a stop string may still be forming
            try:
                for piece in streamer:
                    text += piece
                    cut, stopped = cut_at_stop(text, stops)
                    safe = len(cut) if stopped else max(sent, len(cut) - hold)
                    if safe > sent:
                        yield cut[sent:safe]
                        sent = safe
                    if stopped:
                        break
                if stopped:
                    for _ in streamer:  # let generation finish (the stopping criteria end it soon)
                        pass
            finally:
                worker.join()
            if not stopped and len(text) > sent:
                yield text[sent:]
            new = result["out"][0, input_ids.shape[1]:].tolist() if "out" in result else []
        ended = bool(new) and new[-1] == tokenizer.eos_token_id
        finish = "stop" if stopped or ended or len(new) < kwargs["max_new_tokens"] else "length"
        yield Generation(cut_at_stop(text, stops)[0], input_ids.shape[1], len(new), finish)
