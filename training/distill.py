"""Context distillation: the base model reading the passage teaches the adapter that does not.

A small base model with a passage in its prompt answers questions about it well; the same model
without the passage cannot. Context distillation (Snell et al. 2022; on-policy distillation,
Thinking Machines 2025) trains the adapter, which sees only the question, to match the next-token
distributions of the base model (adapter disabled) that sees the passage and the question. The
targets are soft (the teacher's top-k probabilities and the rest of its mass), so the adapter
learns what the reader of the passage would say, and how sure it would be, rather than one
wording of the answer.

On the student's own samples as well (`own_sample_units`): for a share of the questions the
student (the adapter being trained, as it starts: the base model, or the active version it
continues) answers greedily without the passage, and the teacher's distributions are read at
every token of that answer. Where the student would invent, the teacher reading the passage puts
its mass elsewhere, so the adapter is corrected on the very mistakes it makes, not only shown
the right wording (on-policy distillation; here one round, sampled before training).

The questions are the study questions built from the team's documents (`ingestion.processing
.study`: their payload keeps the passage they were asked about), answered with their grounded
answers; the teacher's targets are computed once per distinct (passage, question, answer) and
cached beside the anchor targets (`training.anchors.reference_topk`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import torch

from training.modeling import greedy_continuations
from training.packing import IGNORE, Seq, Unit, shifted
from training.selection import render

#: Distilled sequences per refresh at most (a seeded sample of the study questions): each costs
#: one teacher forward (cached) and trains like one more qa example.
MAX_DISTILL_UNITS = 192
MAX_PASSAGE_TOKENS = 384
TEACHER_PROMPT = "Read this passage, then answer the question.\n\n{passage}\n\nQuestion: {question}"


def teacher_question(passage: str, question: str) -> str:
    return TEACHER_PROMPT.format(passage=passage.strip(), question=question.strip())


def _trim_passage(tokenizer: Any, passage: str) -> str:
    ids = tokenizer(passage, add_special_tokens=False)["input_ids"]
    return passage if len(ids) <= MAX_PASSAGE_TOKENS else tokenizer.decode(ids[:MAX_PASSAGE_TOKENS])


def distill_pair(question: str, answer: str, passage: str, tokenizer: Any, seq_len: int,
                 example_id: int | None = None) -> Unit | None:
    """A student sequence (question → answer) whose `teacher` is the same answer after the
    passage and the question; None when the two do not label the same answer tokens (a chat
    template that tokenizes the reply differently after another prompt, or truncation)."""
    student = render("qa", {"question": question, "answer": answer}, tokenizer, seq_len, example_id)
    teacher = render("qa", {"question": teacher_question(_trim_passage(tokenizer, passage), question),
                            "answer": answer}, tokenizer, seq_len, example_id)
    if not student or not teacher:
        return None
    s, t = student[0].seqs[0], teacher[0].seqs[0]
    if [x for x in s.labels if x >= 0] != [x for x in t.labels if x >= 0]:
        return None
    s.role, s.teacher = "distill", t
    return Unit([s], "distill", example_id)


def distill_units(examples: Sequence[Any], tokenizer: Any, seq_len: int, seed: int,
                  limit: int = MAX_DISTILL_UNITS) -> list[Unit]:
    """Distillation units from the study questions among `examples` (db rows or anything with
    `id`, `kind`, `payload`): a seeded sample of at most `limit`."""
    candidates = [e for e in examples if e.kind == "qa" and (e.payload or {}).get("passage")
                  and str((e.payload or {}).get("study", "")).startswith(("question", "link"))]
    rng = random.Random(f"distill:{seed}:{len(candidates)}")
    chosen = sorted(rng.sample(candidates, min(limit, len(candidates))), key=lambda e: e.id or 0)
    units = []
    for e in chosen:
        p = e.payload
        unit = distill_pair(str(p["question"]), str(p["answer"]), str(p["passage"]), tokenizer, seq_len, e.id)
        if unit is not None:
            units.append(unit)
    return units


#: Tokens of a student's own answer at most (a short answer plus its sentence).
OWN_SAMPLE_TOKENS = 48


def _prompt_len(seq: Seq) -> int:
    """Tokens before the first trained one: the prompt of a rendered question → answer."""
    return next(i for i, t in enumerate(seq.labels) if t != IGNORE) + 1


def own_sample_units(model: Any, tokenizer: Any, units: Sequence[Unit], device: torch.device, *, share: float,
                     seed: int, batch_size: int = 16) -> list[Unit]:
    """Distilled units on the student's own answers: for a seeded `share` of the distilled
    `units`, the model's greedy answer to the question (no passage) becomes the trained tokens of
    a new student/teacher pair (the teacher prompt still has the passage). Answers equal to the
    reference answer, or empty, add nothing."""
    chosen = [u for u in units if u.kind == "distill" and u.seqs[0].teacher is not None]
    rng = random.Random(f"own:{seed}:{len(chosen)}")
    chosen = sorted(rng.sample(chosen, round(share * len(chosen))), key=lambda u: (u.example_id or 0))
    if not chosen:
        return []
    prompts = [u.seqs[0].input_ids[:_prompt_len(u.seqs[0])] for u in chosen]
    answers = greedy_continuations(model, tokenizer, prompts, device, max_new_tokens=OWN_SAMPLE_TOKENS,
                                   batch_size=batch_size, encode=lambda _tok, ids: list(ids))
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    out = []
    for unit, prompt, answer in zip(chosen, prompts, answers, strict=True):
        if eos in answer:
            answer = answer[:answer.index(eos) + 1]
        answer = [t for t in answer if t != pad or t == eos]
        student, teacher = unit.seqs[0], unit.seqs[0].teacher
        reference = student.input_ids[len(prompt):]
        if not [t for t in answer if t != eos] or answer == reference[:len(answer)]:
            continue
        t_prompt = teacher.input_ids[:_prompt_len(teacher)]
        mine, theirs = prompt + answer, t_prompt + answer
        seq = Seq(mine, shifted(mine, [False] * len(prompt) + [True] * len(answer)), "distill", unit.example_id)
        seq.teacher = Seq(theirs, shifted(theirs, [False] * len(t_prompt) + [True] * len(answer)), "distill",
                          unit.example_id)
        out.append(Unit([seq], "distill", unit.example_id))
    return out


def topk_kl(logits: torch.Tensor, ids: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """KL(teacher ‖ student) per position over the teacher's top-k tokens plus one bucket for the
    rest of the vocabulary: `logits` the student's (positions × vocab), `ids`/`probs` the
    teacher's top-k ids and (unrenormalised) probabilities. Zero exactly where the student's
    distribution equals the teacher's."""
    logq = torch.log_softmax(logits.float(), dim=-1)
    q_top = logq.gather(-1, ids)
    p = probs.float().clamp_min(1e-12)
    p_rest = (1.0 - probs.float().sum(-1)).clamp_min(1e-12)
    q_rest = torch.log1p(-torch.logsumexp(q_top, dim=-1).exp().clamp(max=1.0 - 1e-7))
    return (p * (p.log() - q_top)).sum(-1) + p_rest * (p_rest.log() - q_rest)


def distill_loss(group: Sequence[Seq], logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Summed over the distilled positions of a micro-batch (logits at its labelled positions,
    `index` the sequence of each): the top-k KL against each sequence's teacher targets."""
    is_distill = torch.tensor([s.role == "distill" for s in group], device=logits.device)[index]
    if not bool(is_distill.any()):
        return logits.new_zeros(())
    ids = torch.cat([s.ref_topk[0] for s in group if s.role == "distill"]).to(logits.device)
    probs = torch.cat([s.ref_topk[1] for s in group if s.role == "distill"]).to(logits.device)
    return topk_kl(logits[is_distill], ids, probs).sum()
