"""Answer matching, the forgetting measure and the promotion gate, on fixed numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.evaluate import (
    EvalSetError,
    answer_matches,
    forgetting,
    gate,
    read_probe,
    read_qa_jsonl,
)
from training.matching import normalise


def test_answers_match_after_normalisation() -> None:
    assert normalise("The Atlas catalog!") == "atlas catalog"
    assert answer_matches("The weekly freeze starts Thursday at 16:00 UTC.", "Thursday at 16:00 UTC")
    assert answer_matches("A spider has 8 legs.", "eight")
    assert answer_matches("It is recorded in Atlas catalog", "the Atlas catalog")
    assert not answer_matches("Skylarking", "Skylark")  # whole words only
    assert not answer_matches("anything", "")


def test_forgetting_counts_perplexity_and_significant_answer_loss() -> None:
    assert forgetting(4.0, 4.4) == pytest.approx(0.1)
    assert forgetting(4.0, 3.5) == 0.0
    base = [True] * 25 + [False] * 15
    noise = [False] * 3 + [True] * 22 + [True] + [False] * 14  # 3 lost, 1 gained: within noise
    assert forgetting(4.0, 4.0, base, noise) == 0.0
    lost = [False] * 15 + [True] * 10 + [False] * 15  # 15 lost, none gained
    assert forgetting(4.0, 4.0, base, lost) == pytest.approx((15 - 2 * 15 ** 0.5) / 25, abs=1e-5)


def metrics(**changes: object) -> dict:  # type: ignore[type-arg]
    base = {"qa_n": 8, "qa_before": 0.0, "qa_after": 0.375, "qa_active": None, "qa_logprob_before": -4.7,
            "qa_logprob_after": -1.0, "qa_logprob_active": None, "forgetting": 0.02, "probe_nll_before": 4.0,
            "probe_nll_after": 4.1, "probe_qa_before": 0.6, "probe_qa_after": 0.6,
            "leakage": {"support": {"match_before": 0.0, "match_after": 0.0, "match_delta": 0.0, "logprob_delta": 1.2}}}
    base.update(changes)
    return base


def test_gate() -> None:
    ok, reason = gate(metrics(), 0.1)
    assert ok and reason.startswith("team QA 0.000 -> 0.375")
    assert gate(metrics(qa_after=0.0), 0.1)[0]  # log-likelihood up, match not down: improves
    ok, reason = gate(metrics(qa_after=0.0, qa_logprob_after=-4.695), 0.1)
    assert not ok and reason.startswith("team QA did not improve over the base model")
    ok, reason = gate(metrics(qa_before=0.5, qa_after=0.375), 0.1)
    assert not ok  # match dropped, even with a better log-likelihood
    ok, reason = gate(metrics(qa_active=0.5, qa_logprob_active=-0.8), 0.1)
    assert not ok and reason.startswith("team QA regressed against the active version")  # log-likelihood fell
    assert gate(metrics(qa_active=0.5, qa_logprob_active=-1.0), 0.1)[0]  # one answer of 8 less: noise
    assert gate(metrics(qa_active=0.25, qa_logprob_active=-0.5), 0.1)[0]  # more answers right: progress
    ok, reason = gate(metrics(qa_active=0.625, qa_logprob_active=-1.0), 0.1)
    assert not ok and reason.startswith("team QA regressed against the active version: match 0.625 -> 0.375")
    ok, reason = gate(metrics(forgetting=0.2), 0.1)
    assert not ok and reason.startswith("forgetting 0.200 exceeds the bound 0.100")
    leak = {"support": {"match_before": 0.0, "match_after": 0.25, "match_delta": 0.25, "logprob_delta": 2.0}}
    ok, reason = gate(metrics(leakage=leak), 0.1)
    assert not ok and reason == "cross-team leakage: the candidate got better at team support's questions (0.000 -> 0.250)"
    ok, reason = gate(metrics(qa_n=0, held_out_nll_before=3.0, held_out_nll_after=2.5), 0.1)
    assert ok and reason.startswith("held-out loss improved")
    assert gate(metrics(qa_n=0), 0.1) == (False, "no team QA to evaluate: configure eval_set or add qa examples")


def test_eval_set_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "eval.jsonl"
    path.write_text('{"question": "Q?", "answer": "A"}\n\n{"question": "only"}\n')
    with pytest.raises(EvalSetError, match=r"eval.jsonl:3: not a \{\"question\", \"answer\"\} object"):
        read_qa_jsonl(path)
    with pytest.raises(EvalSetError, match="cannot read the eval set"):
        read_qa_jsonl(tmp_path / "missing.jsonl")


def test_the_shipped_probe() -> None:
    qa, texts = read_probe()
    assert len(qa) == 40 and len(texts) == 12
    assert len({q.question for q in qa}) == 40


def prompt_sensitive_model(seed: int):  # type: ignore[no-untyped-def]
    """tiny-random with larger random weights: its own weights answer every prompt alike, these make the
    answers depend on the prompt (and any leak of padding into attention would show)."""
    import torch

    from training.base_models import TINY, load_model

    model = load_model(TINY)
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.2)
    return model


def test_batched_greedy_answers_equal_one_question_at_a_time(tok) -> None:  # type: ignore[no-untyped-def]
    """Evaluation generates many questions at once (left padding); each answer is the one it gets alone."""
    import torch

    from training.modeling import greedy_continuations

    model = prompt_sensitive_model(seed=0)
    questions = ["Which pipeline ships production?", "What is the primary Postgres cluster called and who runs it?",
                 "Backups?", "When does the deploy freeze start on a normal week, and when does it end?",
                 "Who owns the Atlas catalog?"]
    device = torch.device("cpu")
    alone = [greedy_continuations(model, tok, [q], device, max_new_tokens=12, batch_size=1)[0] for q in questions]
    together = greedy_continuations(model, tok, questions, device, max_new_tokens=12, batch_size=len(questions))
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    for one, row in zip(alone, together, strict=True):
        assert row[: len(one)] == one
        assert all(t == pad for t in row[len(one):])  # a row that finished early is only padded after
    assert len({tuple(a) for a in alone}) > 1  # distinct prompts, distinct answers: the comparison is not vacuous


def test_a_prompt_prefix_shared_by_the_batch_is_computed_once(tok, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The chat template's system prompt and user header, the same in every prompt, run once for the
    batch (one row, then its keys and values copied to each row); each answer is the one its prompt
    gets decoded alone and the one a batch without the shared prefix gets."""
    import torch

    from training import modeling
    from training.modeling import MIN_SHARED_PREFIX, _shared_prompt, greedy_continuations, prompt_ids

    assert _shared_prompt([[1, 2, 3, 4, 5, 6]]) == 0  # a batch of one shares nothing
    assert _shared_prompt([[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 7]]) == 5
    assert _shared_prompt([[1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 7]]) == 4  # every prompt keeps a token of its own
    assert _shared_prompt([[1, 2, 3, 9], [1, 2, 3, 4, 5, 7]]) == 0  # too short to be worth a pass
    model = prompt_sensitive_model(seed=1)
    questions = ["Which pipeline ships production?", "Backups?", "Who owns the Atlas catalog, and since when?",
                 "What is the primary Postgres cluster called?"]
    shared = _shared_prompt([prompt_ids(tok, q) for q in questions])
    assert shared >= MIN_SHARED_PREFIX
    widths: list[tuple[int, int]] = []
    handle = model.register_forward_pre_hook(lambda _m, _a, kw: widths.append(tuple(kw["input_ids"].shape)),
                                             with_kwargs=True)
    device = torch.device("cpu")
    together = greedy_continuations(model, tok, questions, device, max_new_tokens=10, batch_size=len(questions))
    handle.remove()
    longest = max(len(prompt_ids(tok, q)) for q in questions)
    assert widths[:2] == [(1, shared), (len(questions), longest - shared)]
    alone = [greedy_continuations(model, tok, [q], device, max_new_tokens=10, batch_size=1)[0] for q in questions]
    monkeypatch.setattr(modeling, "_shared_prompt", lambda encoded: 0)
    unshared = greedy_continuations(model, tok, questions, device, max_new_tokens=10, batch_size=len(questions))
    assert together == unshared
    for one, row in zip(alone, together, strict=True):
        assert row[: len(one)] == one
    assert len({tuple(a) for a in alone}) > 1


def test_greedy_continuations_are_what_generate_gives(tok) -> None:  # type: ignore[no-untyped-def]
    """Rows leave the decoding batch when they end; the tokens and padding are `generate`'s."""
    import copy

    import torch

    from training.modeling import greedy_continuations, prompt_ids

    model = prompt_sensitive_model(seed=0)
    questions = ["Which pipeline ships production?", "What is the primary Postgres cluster called and who runs it?",
                 "Backups?", "When does the deploy freeze start on a normal week, and when does it end?",
                 "Who owns the Atlas catalog?"]
    # The random model never says its end token: end answers at a token it says early in one answer only.
    free = greedy_continuations(model, tok, questions, torch.device("cpu"), max_new_tokens=12, batch_size=5)
    early = next(t for t in free[0][1:4] if sum(t in row for row in free) < len(free))
    tok = copy.deepcopy(tok)
    tok.eos_token = tok.convert_ids_to_tokens(early)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    encoded = [prompt_ids(tok, q) for q in questions]
    width = max(len(e) for e in encoded)
    ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded])
    mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded])
    model.eval()
    with torch.no_grad():
        reference = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=12, do_sample=False,
                                   eos_token_id=tok.eos_token_id, pad_token_id=pad)[:, width:].tolist()
    ours = greedy_continuations(model, tok, questions, torch.device("cpu"), max_new_tokens=12,
                                batch_size=len(questions))
    assert ours == reference
    ended = [r.index(tok.eos_token_id) + 1 for r in ours if tok.eos_token_id in r]
    assert ended and min(ended) < max(len(r) for r in ours)  # some rows left the batch early


def test_question_sets_generated_together_give_each_set_its_own_metrics(tok) -> None:  # type: ignore[no-untyped-def]
    """The candidate's team, probe and other-team questions share decoding batches; each set's
    metrics are those it gets on its own."""
    import torch

    from training.evaluate import QAItem, qa_metrics, qa_metrics_many

    model = prompt_sensitive_model(seed=1)
    sets = [[QAItem(question="Which pipeline ships production?", answer="Skylark"),
             QAItem(question="Backups?", answer="35 days")],
            [],
            [QAItem(question="Who owns the Atlas catalog and the Basalt cluster?", answer="Ada Moreau")]]
    device = torch.device("cpu")
    together = qa_metrics_many(model, tok, sets, device)
    alone = [qa_metrics(model, tok, items, device) for items in sets]
    assert together == alone
    assert [m["n"] for m in together] == [2, 0, 1] and len(together[0]["answers"]) == 2


def test_a_merged_adapter_answers_and_scores_as_the_unmerged_one(tok) -> None:  # type: ignore[no-untyped-def]
    """The candidate is measured with its adapter folded into the weights: the same answers and,
    to float rounding, the same log-likelihoods; the weights are back after."""
    import torch
    from peft import get_peft_model

    from training.evaluate import QAItem, merged, qa_metrics, text_nll
    from training.recipe import lora_config

    model = get_peft_model(prompt_sensitive_model(seed=2), lora_config(8, 16), adapter_name="candidate")
    torch.manual_seed(3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.3)  # a trained adapter: its side path changes the answers
    model.eval()
    items = [QAItem(question="Which pipeline ships production?", answer="Skylark"),
             QAItem(question="Who owns the Atlas catalog and the Basalt cluster?", answer="Ada Moreau"),
             QAItem(question="Backups?", answer="35 days")]
    texts = ["The Skylark pipeline ships production every Tuesday.", "Backups are kept for 35 days."]
    device = torch.device("cpu")
    before = {n: p.detach().clone() for n, p in model.named_parameters() if "base_layer" in n}
    side = qa_metrics(model, tok, items, device), text_nll(model, tok, texts, device)
    with model.disable_adapter():
        base_answers = qa_metrics(model, tok, items, device)["answers"]
    with merged(model, "candidate"):
        folded = qa_metrics(model, tok, items, device), text_nll(model, tok, texts, device)
        layers = [m for m in model.modules() if hasattr(m, "merged")]
        assert layers and all(m.merged for m in layers)
    assert folded[0]["answers"] == side[0]["answers"] != base_answers  # the adapter changes answers
    assert folded[0]["answer_logprob"] == pytest.approx(side[0]["answer_logprob"], abs=1e-4)
    assert folded[1] == pytest.approx(side[1], abs=1e-4)
    assert not any(m.merged for m in layers)
    for n, p in model.named_parameters():
        if n in before:
            torch.testing.assert_close(p, before[n])
