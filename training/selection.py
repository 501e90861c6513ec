"""Training data selection: which examples a refresh uses, and how each becomes token sequences.

* Selection: the examples new since the last promoted version (not in the lineage of the
  weights it continues), plus a replay sample of earlier ones, so knowledge accumulates
  without the adapter drifting away from what it already knew. Retired examples never train.
* Rendering: `qa` and `chat` go through the tokenizer's chat template with the loss on the
  assistant's tokens only; `cpt` trains on every token; `preference` becomes a (chosen,
  rejected) pair of sequences for the DPO loss.

How the sequences are packed into rows and optimizer steps: `training.packing`.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db import models
from training.packing import Seq, Unit, shifted

#: Share of a team's `cpt` examples held out of training to measure held-out loss (by content hash).
CPT_HOLDOUT_PERCENT = 5
#: Share of `qa` examples held out as the team's QA eval set when no `eval_set` is configured.
QA_HOLDOUT_PERCENT = 10
#: Fewer examples than this of a kind: nothing of that kind is held out (it would be too noisy).
MIN_FOR_HOLDOUT = 20
#: Replay at least this many earlier examples (when there are): a tiny increment would otherwise
#: replay one or two, too few to keep what the adapter knew.
MIN_REPLAY = 8
#: ... and at least this share of everything learned before: a refresh on a handful of new
#: examples still runs its minimum number of steps, and with too few old examples beside them it
#: repeats them many times over and drifts (on the sample company, one edited page continued with
#: 8 replayed examples lost 0.5 nats/token on the team's eval answers).
MIN_REPLAY_SHARE = 0.15
#: Chat-template roles; anything else (e.g. "other" from a thread) speaks as the user.
ROLES = {"system", "user", "assistant"}


class TemplateError(ValueError):
    """The tokenizer's chat template does not render conversations prefix-consistently."""


# ---------------------------------------------------------------------------- rendering
def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _template(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def chat_segments(tokenizer: Any, messages: list[dict[str, str]]) -> list[tuple[str, bool]]:
    """Split a rendered conversation into (text, trained) pieces: assistant replies are trained.

    Each piece is tokenized on its own, exactly as at inference time, where the prompt is
    tokenized and the reply is generated token by token after it.
    """
    msgs = [{"role": m["role"] if m.get("role") in ROLES else "user", "content": str(m.get("content") or "")}
            for m in messages]
    segments: list[tuple[str, bool]] = []
    done = ""
    for i, message in enumerate(msgs):
        if message["role"] != "assistant" or i == 0 or not message["content"].strip():
            continue
        prompt = _template(tokenizer, msgs[:i], True)
        full = _template(tokenizer, msgs[: i + 1], False)
        if not prompt.startswith(done) or not full.startswith(prompt):
            raise TemplateError("the chat template does not render conversations prefix-consistently")
        segments.append((prompt[len(done):], False))
        segments.append((full[len(prompt):], True))
        done = full
    return segments


def prompt_ids(tokenizer: Any, question: str) -> list[int]:
    """The chat-template prompt for one user question, ready for generation."""
    return _encode(tokenizer, _template(tokenizer, [{"role": "user", "content": question}], True))


def chat_prompt_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """The chat-template prompt for a whole conversation, ready for the next assistant turn."""
    return _encode(tokenizer, _template(tokenizer, messages, True))


def _from_segments(tokenizer: Any, segments: list[tuple[str, bool]], seq_len: int, role: str,
                   example_id: int | None) -> Seq | None:
    tokens: list[int] = []
    trainable: list[bool] = []
    for text, trained in segments:
        ids = _encode(tokenizer, text)
        tokens += ids
        trainable += [trained] * len(ids)
    tokens, trainable = tokens[:seq_len], trainable[:seq_len]
    seq = Seq(tokens, shifted(tokens, trainable), role, example_id)
    return seq if seq.targets else None


def qa_messages(question: str, answer: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def render(kind: str, payload: dict[str, Any], tokenizer: Any, seq_len: int,
           example_id: int | None = None) -> list[Unit]:
    """An example as training units; an empty list when nothing in it can be trained."""
    if kind == "cpt":
        tokens = _encode(tokenizer, str(payload.get("text") or "")) + [tokenizer.eos_token_id]
        if len(tokens) < 2:
            return []
        units = []
        # A long text becomes several windows; each window trains on all its tokens.
        for start in range(0, len(tokens), seq_len):
            window = tokens[start:start + seq_len]
            if len(window) >= 2:
                units.append(Unit([Seq(window, shifted(window, [True] * len(window)), "sft", example_id)],
                                  kind, example_id))
        return units
    if kind == "qa":
        messages = qa_messages(str(payload.get("question") or ""), str(payload.get("answer") or ""))
    elif kind == "chat":
        messages = list(payload.get("messages") or [])
    elif kind == "preference":
        prompt = str(payload.get("prompt") or "")
        pair = []
        for role in ("chosen", "rejected"):
            seq = _from_segments(tokenizer, chat_segments(tokenizer, qa_messages(prompt, str(payload.get(role) or ""))),
                                 seq_len, role, example_id)
            if seq is None:
                return []
            pair.append(seq)
        return [Unit(pair, kind, example_id)]
    else:
        return []
    seq = _from_segments(tokenizer, chat_segments(tokenizer, messages), seq_len, "sft", example_id)
    return [Unit([seq], kind, example_id)] if seq is not None else []


# ---------------------------------------------------------------------------- selection
@dataclass
class Selection:
    """What one refresh trains on, and why."""

    new: list[models.Example] = field(default_factory=list)
    replay: list[models.Example] = field(default_factory=list)
    held_out_cpt: list[models.Example] = field(default_factory=list)
    held_out_qa: list[models.Example] = field(default_factory=list)
    retired_excluded: int = 0
    clean: bool = False

    @property
    def examples(self) -> list[models.Example]:
        return self.new + self.replay

    @property
    def new_tokens(self) -> int:
        return sum(e.token_count or 0 for e in self.new)


def _bucket(content_hash: str) -> int:
    return int(hashlib.sha256(content_hash.encode()).hexdigest()[:8], 16) % 100


def held_out(example: models.Example, counts: dict[str, int], has_eval_set: bool) -> bool:
    """Whether an example is kept out of training to measure the adapter (stable per content)."""
    if counts.get(example.kind, 0) < MIN_FOR_HOLDOUT:
        return False
    if example.kind == "cpt":
        return _bucket(example.content_hash) < CPT_HOLDOUT_PERCENT
    if example.kind == "qa" and not has_eval_set:
        return _bucket(example.content_hash) < QA_HOLDOUT_PERCENT
    return False


def lineage_chain(session: Session, adapter: models.Adapter | None) -> list[models.Adapter]:
    """The versions whose training lives on in `adapter`'s weights: itself and its parents up to
    the last clean retrain (a clean retrain starts from the base model, so its parents do not count)."""
    chain: list[models.Adapter] = []
    seen: set[int] = set()
    while adapter is not None and adapter.id not in seen:
        chain.append(adapter)
        seen.add(adapter.id)
        if adapter.clean_retrain or adapter.parent_id is None:
            break
        adapter = session.get(models.Adapter, adapter.parent_id)
    return chain


def knowledge_ids(session: Session, adapter: models.Adapter | None) -> set[int]:
    """Every example that trained the weights of `adapter` (replays included)."""
    ids = [a.id for a in lineage_chain(session, adapter)]
    if not ids:
        return set()
    rows = session.scalars(select(models.AdapterLineage.example_id).where(models.AdapterLineage.adapter_id.in_(ids)))
    return set(rows)


def replay_count(new: int, ratio: float) -> int:
    """Replayed examples so that they make up `ratio` of the training mix."""
    if new == 0 or ratio <= 0:
        return 0
    return math.ceil(new * ratio / (1.0 - ratio))


def team_examples(session: Session, team_id: int) -> list[models.Example]:
    return list(session.scalars(select(models.Example).where(models.Example.team_id == team_id)
                                .order_by(models.Example.id)))


def select_examples(session: Session, team_id: int, parent: models.Adapter | None, *, replay_ratio: float,
                    seed: int, has_eval_set: bool, clean: bool = False) -> Selection:
    """New examples since `parent` (all live ones on a clean retrain) plus a seeded replay sample."""
    everything = team_examples(session, team_id)
    live = [e for e in everything if e.retired_at is None]
    counts: dict[str, int] = {}
    for e in live:
        counts[e.kind] = counts.get(e.kind, 0) + 1
    selection = Selection(clean=clean)
    selection.held_out_cpt = [e for e in live if e.kind == "cpt" and held_out(e, counts, has_eval_set)]
    selection.held_out_qa = [e for e in live if e.kind == "qa" and held_out(e, counts, has_eval_set)]
    trainable = [e for e in live if not held_out(e, counts, has_eval_set)]
    known = set() if clean or parent is None else knowledge_ids(session, parent)
    selection.retired_excluded = sum(1 for e in everything if e.retired_at is not None and
                                     (clean or e.id in known or parent is None))
    selection.new = [e for e in trainable if e.id not in known]
    earlier = [e for e in trainable if e.id in known]
    wanted = replay_count(len(selection.new), replay_ratio)
    if selection.new and replay_ratio > 0:
        wanted = max(wanted, MIN_REPLAY, math.ceil(MIN_REPLAY_SHARE * len(earlier)))
    k = min(len(earlier), wanted)
    selection.replay = sorted(random.Random(f"replay:{seed}:{len(selection.new)}").sample(earlier, k),
                              key=lambda e: e.id)
    return selection


def render_selection(selection: Selection, tokenizer: Any, seq_len: int) -> list[Unit]:
    units: list[Unit] = []
    for example in selection.examples:
        units += render(example.kind, example.payload or {}, tokenizer, seq_len, example.id)
    return units
