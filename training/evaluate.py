"""Evaluation of a candidate adapter and the promotion gate.

Four measurements, each on the base model (adapter disabled) and the candidate:

* team QA: the team's eval set (`TeamConfig.eval_set`, JSONL of {"question", "answer", "answers"};
  else held-out `qa` examples; else, with too few to hold out, the team's own `qa` examples as a
  recall check). Metrics: answer match and mean token-F1 (`training.matching`: any acceptable
  answer contained in the greedy reply, or its core, or F1 >= 0.8) and the mean per-token
  log-likelihood of the expected answer after the chat-template prompt. Beside them the
  prompt-stuffing baseline (`training.retrieval`): the base model and the candidate with the
  team's best BM25 chunks in the prompt (`qa_rag`, `qa_adapter_rag`), when the suite has chunks.
* held-out loss: mean per-token NLL on the team's held-out `cpt` examples (recent documents
  never trained on), when the team has enough to hold some out.
* forgetting probe: `training/probes/general.jsonl`, general-knowledge QA and short texts shipped
  with Tacit. forgetting = the larger of
  - the relative increase of the probe's NLL (its texts, and its questions with their answers,
    as plain text): a perplexity measure, stable from run to run; and
  - the significant part of the drop in probe answers: questions the base model answered and
    the candidate does not (lost) against the reverse (gained), paired, counting only what
    exceeds two standard errors of the paired difference, 2·sqrt(lost + gained), relative to
    the base model's right answers. With 40 questions a net loss of 2 or 3 answers is noise;
    a loss of a quarter of them is not.
* cross-team leakage: the candidate on every other team's eval set, against the base model.

Gate (`gate()`): promote only when
1. team QA improves over the base model: match rises, or the answer log-likelihood rises by at
   least `LL_MARGIN` nats/token while match does not drop; and
2. it does not regress against the active version: match lower by at most one answer (or 10 %
   of the set, if more), since on a small eval set one answer flips from run to run; and,
   unless match rose, the log-likelihood not lower by more than `LL_MARGIN` (more questions
   answered right is progress even when the expected wording got less likely); and
3. forgetting <= `TrainingConfig.forgetting_bound`; and
4. no other team's match rises by more than `LEAK_TOLERANCE` (knowledge of team A must not make
   the model better at team B's questions).
Otherwise the active version stays and the candidate is rejected with the failed condition.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, Field, ValidationError

from tacit.config import ConfigError
from training.matching import judge
from training.modeling import greedy_continuations, sequence_logprobs
from training.retrieval import BM25, stuffed_questions
from training.selection import render

PROBE = Path(__file__).parent / "probes" / "general.jsonl"
LL_MARGIN = 0.01  # nats per answer token: smaller changes are noise
LEAK_TOLERANCE = 0.125  # share of another team's questions the candidate may newly get right
MAX_NEW_TOKENS = 32
#: Questions generated for at once: greedy decoding of a small model reads every weight per new
#: token whatever the batch, so one batch of 64 costs about what one of 8 does (the 40 probe
#: questions: 2.2x faster than batches of 8, the same answers). Stuffed prompts are long, and
#: are batched by fewer.
EVAL_BATCH = 64
RAG_BATCH = 16


class EvalSetError(ConfigError):
    """An eval set file that cannot be read; the message names the file and line (exit 2 in the CLI)."""


class QAItem(BaseModel):
    question: str
    answer: str
    answers: list[str] = Field(default_factory=list)  # further acceptable answers; any one counts

    @property
    def aliases(self) -> list[str]:
        return list(dict.fromkeys([self.answer, *self.answers]))


# ---------------------------------------------------------------------------- answers
def answer_matches(generated: str, answer: str | list[str], question: str = "") -> bool:
    """Whether a reply carries an acceptable answer (`training.matching.judge`)."""
    return judge(generated, [answer] if isinstance(answer, str) else answer, question).match


def read_qa_jsonl(path: Path) -> list[QAItem]:
    items: list[QAItem] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise EvalSetError(f"{path}: cannot read the eval set: {exc.strerror or exc}") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            items.append(QAItem.model_validate(json.loads(line)))
        except (json.JSONDecodeError, ValidationError) as exc:
            raise EvalSetError(f"{path}:{n}: not a {{\"question\", \"answer\"}} object: "
                               f"{str(exc).splitlines()[0]}") from None
    return items


def read_probe(path: Path = PROBE) -> tuple[list[QAItem], list[str]]:
    qa: list[QAItem] = []
    texts: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            if "text" in row:
                texts.append(row["text"])
            else:
                qa.append(QAItem.model_validate(row))
    return qa, texts


def generate_answers(model: Any, tokenizer: Any, questions: list[str], device: torch.device,
                     max_new_tokens: int = MAX_NEW_TOKENS, batch_size: int = EVAL_BATCH) -> list[str]:
    """Greedy answers, batched with left padding."""
    continuations = greedy_continuations(model, tokenizer, questions, device, max_new_tokens=max_new_tokens,
                                         batch_size=batch_size)
    return [tokenizer.decode(generated, skip_special_tokens=True).strip() for generated in continuations]


def answer_logprobs(model: Any, tokenizer: Any, items: list[QAItem], device: torch.device,
                    seq_len: int = 512) -> list[float]:
    """Per item: mean log-probability per answer token (answer and end-of-turn) after the prompt."""
    seqs = []
    for item in items:
        units = render("qa", {"question": item.question, "answer": item.answer}, tokenizer, seq_len)
        seqs.append(units[0].seqs[0])
    return [s / n for s, n in sequence_logprobs(model, seqs, device)]


def judge_answers(items: list[QAItem], answers: list[str]) -> dict[str, Any]:
    """match (share right), mean F1 and the per-item verdicts of generated answers."""
    verdicts = [judge(a, i.aliases, i.question) for a, i in zip(answers, items, strict=True)]
    hits = [v.match for v in verdicts]
    return {"match": round(sum(hits) / len(hits), 5), "f1": round(sum(v.f1 for v in verdicts) / len(verdicts), 5),
            "answers": answers, "hits": hits}


def qa_metrics(model: Any, tokenizer: Any, items: list[QAItem], device: torch.device,
               generate: bool = True, answers: list[str] | None = None) -> dict[str, Any]:
    """Answer log-likelihood and, with `generate`, the match of greedy answers (`answers` when
    already generated, one per item)."""
    if not items:
        return {"n": 0, "match": None, "f1": None, "answer_logprob": None}
    lls = answer_logprobs(model, tokenizer, items, device)
    result: dict[str, Any] = {"n": len(items), "answer_logprob": round(sum(lls) / len(lls), 5)}
    if generate:
        if answers is None:
            answers = generate_answers(model, tokenizer, [i.question for i in items], device)
        result |= judge_answers(items, answers)
    return result


def qa_metrics_many(model: Any, tokenizer: Any, sets: list[list[QAItem]], device: torch.device) -> list[dict[str, Any]]:
    """`qa_metrics` of several question sets, their answers generated in shared batches."""
    answers = generate_answers(model, tokenizer, [i.question for items in sets for i in items], device)
    out, start = [], 0
    for items in sets:
        out.append(qa_metrics(model, tokenizer, items, device, answers=answers[start:start + len(items)]))
        start += len(items)
    return out


def rag_metrics(model: Any, tokenizer: Any, items: list[QAItem], index: BM25, device: torch.device) -> dict[str, Any]:
    """Match and F1 with the team's best chunks in the prompt (the prompt-stuffing baseline)."""
    if not items or not index.texts:
        return {"n": 0, "match": None, "f1": None}
    prompts = stuffed_questions(index, [i.question for i in items])
    return {"n": len(items)} | judge_answers(items, generate_answers(model, tokenizer, prompts, device,
                                                                     batch_size=RAG_BATCH))


def text_nll(model: Any, tokenizer: Any, texts: list[str], device: torch.device, seq_len: int = 512) -> float | None:
    """Token-mean negative log-likelihood of plain texts (every token but the first of each window)."""
    seqs = [s for t in texts for u in render("cpt", {"text": t}, tokenizer, seq_len) for s in u.seqs]
    if not seqs:
        return None
    scores = sequence_logprobs(model, seqs, device)
    return round(-sum(s for s, _ in scores) / sum(n for _, n in scores), 5)


# ---------------------------------------------------------------------------- suites
@dataclass
class EvalSuite:
    team: str
    team_qa: list[QAItem]
    team_qa_source: str  # eval_set | held-out | training-qa | none
    held_out_texts: list[str] = field(default_factory=list)
    probe_qa: list[QAItem] = field(default_factory=list)
    probe_texts: list[str] = field(default_factory=list)
    other_teams: dict[str, list[QAItem]] = field(default_factory=dict)
    chunks: list[str] = field(default_factory=list)  # the team's retrieval corpus (prompt-stuffing baseline)


CACHE_FORMAT = 3  # 3: F1 and answer aliases


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps([CACHE_FORMAT, *parts], sort_keys=True, default=str).encode()).hexdigest()[:32]


class BaseCache:
    """Base-model measurements, cached on disk by (base weights, data): they never change."""

    def __init__(self, folder: Path | None, weight_hash: str) -> None:
        self.folder = folder
        self.weight_hash = weight_hash

    def get(self, kind: str, data: Any, compute: Any) -> Any:
        if self.folder is None:
            return compute()
        path = self.folder / f"{kind}-{_key(self.weight_hash, kind, data)}.json"
        if path.exists():
            return json.loads(path.read_text())
        value = compute()
        self.folder.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
        return value


def _items(items: list[QAItem]) -> list[list[Any]]:
    return [[i.question, i.aliases] for i in items]


@contextlib.contextmanager
def merged(model: Any, adapter: str) -> Iterator[None]:
    """The adapter folded into the weights it adapts for the block, unfolded after (the weights come
    back equal up to float rounding: measure the base model before).

    Unmerged, every adapted layer runs two extra small matmuls, a scale and an add per forward pass
    (on 2 CPU cores, decoding the demo's batch of 64: about a tenth of the matmul time; the demo's
    evaluations took 2-2.2 s less merged). Merged, the model computes the same function (float32:
    results agree to rounding).
    """
    model.merge_adapter([adapter])
    try:
        yield
    finally:
        model.unmerge_adapter()


def evaluate_candidate(model: Any, tokenizer: Any, suite: EvalSuite, device: torch.device, *,
                       cache: BaseCache, active_adapter: str | None = None) -> dict[str, Any]:
    """Measure the base model, the active version (if any) and the candidate (the model's
    `candidate` adapter); returns the metrics that the gate and `adapters show` use."""
    def base(kind: str, data: Any, fn: Any) -> Any:
        def compute() -> Any:
            with model.disable_adapter():
                return fn()
        return cache.get(kind, data, compute)

    probe_all = suite.probe_texts + [f"{q.question} {q.answer}" for q in suite.probe_qa]
    b_team = base("team_qa", _items(suite.team_qa), lambda: qa_metrics(model, tokenizer, suite.team_qa, device))
    b_held = base("held_out", suite.held_out_texts, lambda: text_nll(model, tokenizer, suite.held_out_texts, device))
    b_probe_qa = base("probe_qa", _items(suite.probe_qa), lambda: qa_metrics(model, tokenizer, suite.probe_qa, device))
    b_probe_nll = base("probe_nll", probe_all, lambda: text_nll(model, tokenizer, probe_all, device))
    b_other = {t: base("team_qa", _items(items), lambda items=items: qa_metrics(model, tokenizer, items, device))
               for t, items in suite.other_teams.items()}
    index = BM25(suite.chunks)
    b_rag = base("team_rag", [_items(suite.team_qa), suite.chunks],
                 lambda: rag_metrics(model, tokenizer, suite.team_qa, index, device))

    a_team = None
    if active_adapter is not None:
        model.set_adapter(active_adapter)
        a_team = qa_metrics(model, tokenizer, suite.team_qa, device)
    model.set_adapter("candidate")
    others = list(suite.other_teams)
    with merged(model, "candidate"):
        c_team, c_probe_qa, *c_others = qa_metrics_many(
            model, tokenizer, [suite.team_qa, suite.probe_qa, *(suite.other_teams[t] for t in others)], device)
        c_held = text_nll(model, tokenizer, suite.held_out_texts, device)
        c_probe_nll = text_nll(model, tokenizer, probe_all, device)
        c_rag = rag_metrics(model, tokenizer, suite.team_qa, index, device)
    c_other = dict(zip(others, c_others, strict=True))
    return summarise(suite, b_team, a_team, c_team, b_held, c_held, b_probe_qa, c_probe_qa, b_probe_nll,
                     c_probe_nll, b_other, c_other, b_rag=b_rag, c_rag=c_rag)


def _delta(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else round(after - before, 5)


def forgetting(base_nll: float | None, cand_nll: float | None, base_hits: list[bool] | None = None,
               cand_hits: list[bool] | None = None) -> float:
    """max(relative increase of the probe NLL, significant relative loss of probe answers), >= 0."""
    parts = [0.0]
    if base_nll and cand_nll is not None:
        parts.append((cand_nll - base_nll) / base_nll)
    if base_hits and cand_hits and len(base_hits) == len(cand_hits) and any(base_hits):
        lost = sum(1 for b, c in zip(base_hits, cand_hits, strict=True) if b and not c)
        gained = sum(1 for b, c in zip(base_hits, cand_hits, strict=True) if c and not b)
        significant = max(0.0, lost - gained - 2 * math.sqrt(lost + gained))
        parts.append(significant / sum(base_hits))
    return round(max(parts), 5)


def _lost(before: list[bool] | None, after: list[bool] | None) -> int | None:
    if not before or not after or len(before) != len(after):
        return None
    return sum(1 for b, a in zip(before, after, strict=True) if b and not a)


def _or_none(values: list[Any] | None, items: list[Any]) -> list[Any]:
    return values if values is not None else [None] * len(items)


def summarise(suite: EvalSuite, b_team: dict[str, Any], a_team: dict[str, Any] | None, c_team: dict[str, Any],
              b_held: float | None, c_held: float | None, b_probe_qa: dict[str, Any], c_probe_qa: dict[str, Any],
              b_probe_nll: float | None, c_probe_nll: float | None, b_other: dict[str, dict[str, Any]],
              c_other: dict[str, dict[str, Any]], *, b_rag: dict[str, Any] | None = None,
              c_rag: dict[str, Any] | None = None) -> dict[str, Any]:
    leakage = {
        team: {"match_before": b_other[team]["match"], "match_after": c_other[team]["match"],
               "match_delta": _delta(c_other[team]["match"], b_other[team]["match"]),
               "logprob_delta": _delta(c_other[team]["answer_logprob"], b_other[team]["answer_logprob"])}
        for team in c_other
    }
    return {
        "eval_source": suite.team_qa_source,
        "qa_n": c_team["n"],
        "qa_before": b_team["match"],
        "qa_active": a_team["match"] if a_team else None,
        "qa_after": c_team["match"],
        "qa_logprob_before": b_team["answer_logprob"],
        "qa_logprob_active": a_team["answer_logprob"] if a_team else None,
        "qa_logprob_after": c_team["answer_logprob"],
        "qa_f1_before": b_team.get("f1"),
        "qa_f1_active": a_team.get("f1") if a_team else None,
        "qa_f1_after": c_team.get("f1"),
        "qa_rag": b_rag["match"] if b_rag else None,
        "qa_rag_f1": b_rag["f1"] if b_rag else None,
        "qa_adapter_rag": c_rag["match"] if c_rag else None,
        "qa_adapter_rag_f1": c_rag["f1"] if c_rag else None,
        "qa_answers": [{"question": i.question, "expected": i.answer, "answers": i.aliases, "base": b,
                        "candidate": c, "base_right": bh, "candidate_right": ch,
                        "rag": r, "rag_right": rh, "adapter_rag": ar, "adapter_rag_right": arh}
                       for i, b, c, bh, ch, r, rh, ar, arh in zip(
                           suite.team_qa, b_team.get("answers", []), c_team.get("answers", []),
                           b_team.get("hits", []), c_team.get("hits", []),
                           _or_none((b_rag or {}).get("answers"), suite.team_qa),
                           _or_none((b_rag or {}).get("hits"), suite.team_qa),
                           _or_none((c_rag or {}).get("answers"), suite.team_qa),
                           _or_none((c_rag or {}).get("hits"), suite.team_qa), strict=False)],
        "held_out_n": len(suite.held_out_texts),
        "held_out_nll_before": b_held,
        "held_out_nll_after": c_held,
        "probe_qa_before": b_probe_qa["match"],
        "probe_qa_after": c_probe_qa["match"],
        "probe_nll_before": b_probe_nll,
        "probe_nll_after": c_probe_nll,
        "probe_answers_lost": _lost(b_probe_qa.get("hits"), c_probe_qa.get("hits")),
        "probe_answers_gained": _lost(c_probe_qa.get("hits"), b_probe_qa.get("hits")),
        "forgetting": forgetting(b_probe_nll, c_probe_nll, b_probe_qa.get("hits"), c_probe_qa.get("hits")),
        "leakage": leakage,
    }


def gate(metrics: dict[str, Any], forgetting_bound: float) -> tuple[bool, str]:
    """The promotion decision and its reason (see the module docstring for the rule)."""
    before, after, active = metrics.get("qa_before"), metrics.get("qa_after"), metrics.get("qa_active")
    ll_before, ll_after = metrics.get("qa_logprob_before"), metrics.get("qa_logprob_after")
    ll_active = metrics.get("qa_logprob_active")
    if not metrics.get("qa_n"):
        held_b, held_a = metrics.get("held_out_nll_before"), metrics.get("held_out_nll_after")
        if held_b is None or held_a is None:
            return False, "no team QA to evaluate: configure eval_set or add qa examples"
        if held_a > held_b - LL_MARGIN:
            return False, f"no team QA; held-out loss did not improve ({held_b:.3f} -> {held_a:.3f})"
    else:
        improved = after > before or (ll_after >= ll_before + LL_MARGIN and after >= before)
        if not improved:
            return False, (f"team QA did not improve over the base model: match {before:.3f} -> {after:.3f}, "
                           f"answer log-likelihood {ll_before:.3f} -> {ll_after:.3f}")
        if active is not None:
            allowed = max(1.0, 0.1 * metrics["qa_n"]) / metrics["qa_n"]
            if after < active - allowed - 1e-9 or (after <= active and ll_after < ll_active - LL_MARGIN):
                return False, (f"team QA regressed against the active version: match {active:.3f} -> {after:.3f}, "
                               f"answer log-likelihood {ll_active:.3f} -> {ll_after:.3f}")
    if metrics["forgetting"] > forgetting_bound:
        return False, (f"forgetting {metrics['forgetting']:.3f} exceeds the bound {forgetting_bound:.3f} "
                       f"(probe NLL {metrics['probe_nll_before']} -> {metrics['probe_nll_after']}, "
                       f"probe answers {metrics['probe_qa_before']} -> {metrics['probe_qa_after']}: "
                       f"{metrics.get('probe_answers_lost')} lost, {metrics.get('probe_answers_gained')} gained)")
    for team, leak in (metrics.get("leakage") or {}).items():
        if leak["match_delta"] is not None and leak["match_delta"] > LEAK_TOLERANCE:
            return False, (f"cross-team leakage: the candidate got better at team {team}'s questions "
                           f"({leak['match_before']:.3f} -> {leak['match_after']:.3f})")
    if not metrics.get("qa_n"):
        return True, "held-out loss improved; forgetting within bound; no leakage"
    return True, (f"team QA {before:.3f} -> {after:.3f} (log-likelihood {ll_before:.3f} -> {ll_after:.3f}); "
                  f"forgetting {metrics['forgetting']:.3f} <= {forgetting_bound:.3f}; no leakage")
