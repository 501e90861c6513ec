"""Anchor replay: the base model's own answers to general prompts, mixed into every refresh.

A team's data is narrow (a few dozen facts, short answers); trained on it alone for enough steps
to remember it, a small model drifts: it starts answering everything tersely and loses general
knowledge (measured by the forgetting probe). Replaying earlier team data does not help with
that, since it is just as narrow. So each run also trains on a sample of general prompts
(`probes/anchor_prompts.jsonl`, disjoint from the forgetting probe) with the base model's
greedy answers as targets: a self-distillation anchor that keeps the adapter close to the base
model outside the team's domain. The answers are generated once per base model and cached.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from training.modeling import DEFAULT_ROW_TOKENS, forward_packed, greedy_continuations
from training.packing import Seq, Unit, split_micro
from training.selection import render

ANCHOR_PROMPTS = Path(__file__).parent / "probes" / "anchor_prompts.jsonl"
ANCHOR_MAX_NEW_TOKENS = 80
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


def read_prompts(path: Path = ANCHOR_PROMPTS) -> list[str]:
    return [json.loads(line)["prompt"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _trim(text: str, finished: bool) -> str | None:
    """A whole answer, or a truncated one cut back to its last full sentence (None if none)."""
    text = text.strip()
    if finished:
        return text or None
    ends = list(_SENTENCE_END.finditer(text))
    return text[: ends[-1].end()] if ends else None


def generate_anchor_answers(model: Any, tokenizer: Any, prompts: list[str], device: torch.device,
                            batch_size: int = 16) -> list[dict[str, str]]:
    """Greedy base-model answers (call with the adapter disabled)."""
    rows: list[dict[str, str]] = []
    continuations = greedy_continuations(model, tokenizer, prompts, device, max_new_tokens=ANCHOR_MAX_NEW_TOKENS,
                                         batch_size=batch_size)
    for prompt, generated in zip(prompts, continuations, strict=True):
        finished = tokenizer.eos_token_id in generated
        answer = _trim(tokenizer.decode(generated, skip_special_tokens=True), finished)
        if answer:
            rows.append({"prompt": prompt, "answer": answer})
    return rows


def anchor_answers(model: Any, tokenizer: Any, device: torch.device, weight_hash: str,
                   cache_dir: Path | None, prompts_path: Path = ANCHOR_PROMPTS) -> list[dict[str, str]]:
    """The base model's anchor answers, from the cache or generated now (adapter disabled)."""
    prompts = read_prompts(prompts_path)
    key = hashlib.sha256(json.dumps([weight_hash, prompts, ANCHOR_MAX_NEW_TOKENS]).encode()).hexdigest()[:24]
    path = cache_dir / f"anchors-{key}.jsonl" if cache_dir else None
    if path is not None and path.exists():
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    disable = getattr(model, "disable_adapter", None)
    if disable is not None:
        with disable():
            rows = generate_anchor_answers(model, tokenizer, prompts, device)
    else:
        rows = generate_anchor_answers(model, tokenizer, prompts, device)
    if path is not None:
        _write_atomically(path, lambda tmp: tmp.write_text("".join(json.dumps(r) + "\n" for r in rows),
                                                           encoding="utf-8"))
    return rows


def _write_atomically(path: Path, write: Callable[[Path], Any]) -> None:
    """`write` to a temporary file beside `path`, then rename it into place: a reader (another
    worker) sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    write(tmp)
    tmp.replace(path)


def anchor_targets(model: Any, anchors: list[Seq], device: torch.device, *, topk: int, micro_tokens: int,
                   bf16: bool, weight_hash: str, cache_dir: Path | None) -> None:
    """Set `ref_topk` on each anchor: the base model's top-k next-token ids and probabilities
    (renormalised) at its answer positions, which the adapter is distilled towards."""
    reference_topk(model, anchors, device, topk=topk, micro_tokens=micro_tokens, bf16=bf16,
                   weight_hash=weight_hash, cache_dir=cache_dir)


def _input_key(seq: Seq) -> str:
    return hashlib.sha256(json.dumps(seq.input_ids).encode()).hexdigest()


def reference_topk(model: Any, seqs: list[Seq], device: torch.device, *, topk: int, micro_tokens: int,
                   bf16: bool, weight_hash: str, cache_dir: Path | None, name: str = "anchor-targets",
                   renormalise: bool = True) -> None:
    """Set `ref_topk` on each sequence: the base model's (adapter disabled) top-k next-token ids
    and probabilities at the labelled positions of the sequence's `teacher` input (a sequence
    with the same labelled tokens, e.g. with a passage in its prompt), or of the sequence itself.
    They depend on the base model only: computed once per distinct input and cached under
    `cache_dir` in one file per `name`, base model and settings. `renormalise`: the top-k
    probabilities rescaled to sum to 1 (anchors); else as they are, the rest of the mass implied."""

    cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    path = None
    if cache_dir is not None:
        settings = [weight_hash, topk, bf16] + ([] if renormalise else ["raw"])
        key = hashlib.sha256(json.dumps(settings).encode()).hexdigest()[:24]
        path = cache_dir / f"{name}-{key}.pt"
        if path.exists():
            cache = torch.load(path, weights_only=True)
    source = {id(s): s.teacher or s for s in seqs}
    keys = {id(s): _input_key(source[id(s)]) for s in seqs}
    missing = list({keys[id(s)]: source[id(s)] for s in seqs if keys[id(s)] not in cache}.items())
    if missing:
        was_training = model.training
        model.eval()
        with torch.no_grad(), model.disable_adapter():
            for group in split_micro([src for _, src in missing], micro_tokens):
                logits, _, index, _ = forward_packed(model, group, device, bf16, DEFAULT_ROW_TOKENS)
                probs, ids = torch.softmax(logits, dim=-1).topk(topk, dim=-1)
                if renormalise:
                    probs = probs / probs.sum(-1, keepdim=True)
                for i, src in enumerate(group):
                    mine = index == i
                    cache[_input_key(src)] = (ids[mine].cpu(), probs[mine].cpu())
        if was_training:
            model.train()
        if path is not None:
            _write_atomically(path, lambda tmp: torch.save(cache, tmp))
    for seq in seqs:
        seq.ref_topk = cache[keys[id(seq)]]


def anchor_units(rows: list[dict[str, str]], tokenizer: Any, seq_len: int, tokens: int, seed: int,
                 text: bool = False) -> list[Unit]:
    """Anchors of about `tokens` tokens in all: the rows in a seeded order, cycled when more are
    asked for than exist. A repeated row is the same `Seq` object, so its base-model targets
    are computed once. `text`: each row also as plain text (prompt and answer, every token
    distilled), since a team's raw-text examples move the model's plain-text distribution, which
    the chat-formatted anchors alone do not hold in place."""
    if not rows or tokens <= 0:
        return []
    order = list(rows)
    random.Random(f"anchors:{seed}").shuffle(order)
    rendered: list[list[Seq]] = []
    for row in order:
        units = render("qa", {"question": row["prompt"], "answer": row["answer"]}, tokenizer, seq_len)
        if text:
            units += render("cpt", {"text": f"{row['prompt']}\n{row['answer']}"}, tokenizer, seq_len)
        for unit in units:
            for seq in unit.seqs:
                seq.role = "anchor"
            rendered.append(unit.seqs)
    if not rendered:
        return []
    units: list[Unit] = []
    total = 0
    while total < tokens:
        seqs = rendered[len(units) % len(rendered)]
        units.append(Unit(seqs=seqs, kind="anchor"))
        total += sum(len(s) for s in seqs)
    return units
