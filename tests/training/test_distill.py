"""Context distillation on tiny-random: the student/teacher pairing, the top-k KL (exact value,
zero when the student is the teacher), the recipe's term and its cached teacher targets."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from training.base_models import TINY, load_model
from training.distill import (
    distill_loss,
    distill_pair,
    distill_units,
    own_sample_units,
    teacher_question,
    topk_kl,
)
from training.modeling import forward_logits
from training.packing import IGNORE, pack
from training.recipe import LoRARecipe, RecipeConfig

PASSAGE = "Backups of the Basalt cluster are kept for 35 days in the Oslo region."


def test_student_and_teacher_label_the_same_answer_tokens(tok) -> None:  # type: ignore[no-untyped-def]
    unit = distill_pair("How long are backups kept?", "35 days.", PASSAGE, tok, 512, example_id=4)
    assert unit is not None and unit.kind == "distill" and unit.example_id == 4
    student = unit.seqs[0]
    assert student.role == "distill" and student.teacher is not None
    answer = [t for t in student.labels if t != IGNORE]
    assert answer == [t for t in student.teacher.labels if t != IGNORE] and answer
    text = tok.decode(student.teacher.input_ids)
    assert PASSAGE in text and PASSAGE not in tok.decode(student.input_ids)
    assert teacher_question(PASSAGE, "How long are backups kept?") in text


def test_distill_units_take_study_questions_with_a_passage_only(tok) -> None:  # type: ignore[no-untyped-def]
    rows = [SimpleNamespace(id=1, kind="qa", payload={"question": "How long?", "answer": "35 days.",
                                                      "study": "question:how_long", "passage": PASSAGE}),
            SimpleNamespace(id=2, kind="qa", payload={"question": "Owner?", "answer": "Ada."}),
            SimpleNamespace(id=3, kind="qa", payload={"question": "Fill in: ____", "answer": "35 days",
                                                      "study": "cloze", "passage": PASSAGE}),
            SimpleNamespace(id=4, kind="cpt", payload={"text": PASSAGE, "study": "restatement"})]
    units = distill_units(rows, tok, 512, seed=0)
    assert [u.example_id for u in units] == [1]
    many = [SimpleNamespace(id=i, kind="qa", payload={**rows[0].payload, "question": f"Q{i}?"}) for i in range(10)]
    picked = [u.example_id for u in distill_units(many, tok, 512, seed=0, limit=4)]
    assert len(picked) == 4 and picked == [u.example_id for u in distill_units(many, tok, 512, seed=0, limit=4)]


def test_topk_kl_exact_value_and_zero_when_the_student_is_the_teacher() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0], [0.5, 0.5, 3.0, 0.0]])
    teacher = torch.softmax(torch.tensor([[1.0, 2.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]), -1)
    probs, ids = teacher.topk(2, dim=-1)
    q = torch.softmax(logits, -1)
    expected = []
    for row in range(2):
        p_top, q_top = probs[row], q[row, ids[row]]
        p_rest, q_rest = 1 - p_top.sum(), 1 - q_top.sum()
        expected.append(float((p_top * (p_top / q_top).log()).sum() + p_rest * (p_rest / q_rest).log()))
    assert topk_kl(logits, ids, probs).tolist() == pytest.approx(expected, rel=1e-5)
    own, own_ids = q.topk(2, dim=-1)
    assert topk_kl(logits, own_ids, own).abs().max() < 1e-6


def test_recipe_term_is_zero_when_the_adapter_reads_like_the_teacher(tok, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A fresh LoRA (B = 0) equals the base model; with the teacher's input being the student's
    own (no passage), the distillation term is exactly zero, and the targets are cached."""
    unit = distill_pair("How long are backups kept?", "35 days.", PASSAGE, tok, 512)
    assert unit is not None
    seq = unit.seqs[0]
    seq.teacher = None  # the teacher reads what the student reads
    cache = tmp_path / "cache"
    cfg = RecipeConfig(base_model=TINY, output_dir=tmp_path / "a", max_steps=1, checkpoint_every=0, anchor_cache=cache,
                       base_hash="h", distill_topk=8)
    recipe = LoRARecipe(cfg)
    recipe.setup([unit], base=load_model(TINY))
    assert len(list(cache.glob("distill-targets-*.pt"))) == 1
    with torch.no_grad():
        logits, _, index, _ = forward_logits(recipe.model, pack([seq]), recipe.device)
        assert float(distill_loss([seq], logits, index)) == pytest.approx(0.0, abs=1e-5)
    assert recipe._step_loss([seq]) == pytest.approx(0.0, abs=1e-5)


def test_recipe_term_matches_the_teacher_with_the_passage(tok, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """With the passage in the teacher's prompt the term is the mean top-k KL between the base
    model's distributions with and without it, computed here from two plain forwards."""
    unit = distill_pair("How long are backups kept?", "35 days.", PASSAGE, tok, 512)
    assert unit is not None
    seq = unit.seqs[0]
    cfg = RecipeConfig(base_model=TINY, output_dir=tmp_path / "a", max_steps=1, checkpoint_every=0,
                       distill_topk=8, distill_weight=0.5)
    recipe = LoRARecipe(cfg)
    recipe.setup([unit], base=load_model(TINY))
    base = load_model(TINY)

    def positions(s):  # type: ignore[no-untyped-def]
        with torch.no_grad():
            out = base(input_ids=torch.tensor([s.input_ids]), use_cache=False).logits[0]
        return out[torch.tensor([t != IGNORE for t in s.labels])]

    student, teacher = positions(seq), positions(seq.teacher)
    probs, ids = torch.softmax(teacher, -1).topk(8, dim=-1)
    expected = 0.5 * float(topk_kl(student, ids, probs).mean())
    assert expected > 0
    assert recipe._step_loss([seq]) == pytest.approx(expected, rel=1e-4)


def test_own_samples_are_the_students_greedy_answers_read_by_the_teacher(tok, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """With distill_own_share, the student's own greedy answer (no passage) to a distilled
    question becomes a second distilled sequence: its prompt is the question's, its trained
    tokens are what the model itself generates, and its teacher reads the same tokens after the
    passage."""
    units = [u for u in (distill_pair(q, "35 days.", PASSAGE, tok, 512, example_id=i) for i, q in
                         enumerate(["How long are backups kept?", "Where is Basalt?"])) if u is not None]
    model = load_model(TINY)
    own = own_sample_units(model, tok, units, torch.device("cpu"), share=1.0, seed=0)
    assert own and all(u.kind == "distill" for u in own)
    for unit in own:
        mine, source = unit.seqs[0], next(u for u in units if u.example_id == unit.example_id).seqs[0]
        prompt = [t for t, lab in zip(source.input_ids, source.labels, strict=True) if lab == IGNORE]
        answer = mine.input_ids[len(mine.input_ids) - sum(1 for t in mine.labels if t != IGNORE):]
        start = len(mine.input_ids) - len(answer)
        expected = model.generate(input_ids=torch.tensor([mine.input_ids[:start]]), max_new_tokens=len(answer),
                                  do_sample=False, pad_token_id=tok.eos_token_id)[0, start:].tolist()
        assert answer == expected  # the student's own greedy tokens
        assert mine.input_ids[:start] == source.input_ids[:start] and len(prompt) >= start - 1
        assert mine.teacher is not None and mine.teacher.input_ids[-len(answer):] == answer
        assert PASSAGE in tok.decode(mine.teacher.input_ids) and PASSAGE not in tok.decode(mine.input_ids)
        assert [t for t in mine.labels if t != IGNORE] == [t for t in mine.teacher.labels if t != IGNORE]
    assert own_sample_units(model, tok, units, torch.device("cpu"), share=0.0, seed=0) == []
    # the recipe adds them and computes their teacher targets like any distilled sequence
    cfg = RecipeConfig(base_model=TINY, output_dir=tmp_path / "a", max_steps=1, checkpoint_every=0,
                       distill_topk=8, distill_own_share=1.0)
    recipe = LoRARecipe(cfg)
    recipe.setup(units, base=load_model(TINY), tokenizer=tok)
    added = [u for u in recipe.units if u.kind == "distill"][len(units):]
    assert len(added) == len(own) and all(u.seqs[0].ref_topk is not None for u in added)
