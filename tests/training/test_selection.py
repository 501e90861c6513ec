"""Rendering (chat template, answer-only labels) and example selection (new, replay, retired)."""

from __future__ import annotations

from sqlalchemy import select

from db import models
from db.base import utcnow
from tests.training.helpers import add_example, add_qa
from training.packing import IGNORE, Seq
from training.selection import MIN_REPLAY, chat_segments, render, replay_count, select_examples


def trained_text(tok, seq: Seq) -> str:  # type: ignore[no-untyped-def]
    return tok.decode([t for t in seq.labels if t != IGNORE])


def test_qa_trains_on_the_answer_only(tok) -> None:  # type: ignore[no-untyped-def]
    (unit,) = render("qa", {"question": "Which pipeline?", "answer": "Skylark"}, tok, 512)
    (seq,) = unit.seqs
    prompt = tok.apply_chat_template([{"role": "user", "content": "Which pipeline?"}], tokenize=False,
                                     add_generation_prompt=True)
    n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
    # Every label before the last prompt token is masked; the answer and the end of turn are trained.
    assert all(label == IGNORE for label in seq.labels[: n_prompt - 1])
    assert trained_text(tok, seq) == "Skylark<|im_end|>\n"
    assert seq.input_ids[:n_prompt] == tok(prompt, add_special_tokens=False)["input_ids"]


def test_chat_trains_every_assistant_turn_and_nothing_else(tok) -> None:  # type: ignore[no-untyped-def]
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                {"role": "other", "content": "Where are backups?"}, {"role": "assistant", "content": "In Quarry"}]
    (unit,) = render("chat", {"messages": messages}, tok, 512)
    assert trained_text(tok, unit.seqs[0]) == "Hello<|im_end|>\nIn Quarry<|im_end|>\n"
    segments = chat_segments(tok, messages)
    assert [trained for _, trained in segments] == [False, True, False, True]
    assert "user\nWhere are backups?" in segments[2][0]  # an unknown role speaks as the user


def test_cpt_trains_every_token_and_splits_long_texts(tok) -> None:  # type: ignore[no-untyped-def]
    (unit,) = render("cpt", {"text": "Backups are kept for 35 days."}, tok, 512)
    seq = unit.seqs[0]
    assert seq.labels[:-1] == seq.input_ids[1:]
    assert seq.labels[-1] == IGNORE and seq.input_ids[-1] == tok.eos_token_id
    long = render("cpt", {"text": " ".join(["word"] * 100)}, tok, 32)
    assert [len(u.seqs[0]) for u in long] == [32, 32, 32, 5]


def test_preference_is_a_pair_with_the_prompt_masked(tok) -> None:  # type: ignore[no-untyped-def]
    (unit,) = render("preference", {"prompt": "Backups?", "chosen": "35 days", "rejected": "7 days"}, tok, 512)
    assert [s.role for s in unit.seqs] == ["chosen", "rejected"]
    assert trained_text(tok, unit.seqs[0]) == "35 days<|im_end|>\n"
    assert trained_text(tok, unit.seqs[1]) == "7 days<|im_end|>\n"
    assert render("preference", {"prompt": "x", "chosen": "", "rejected": "y"}, tok, 512) == []


def activate_v1(ctx, team_name: str, example_ids: list[int]) -> None:  # type: ignore[no-untyped-def]
    """An active version 1 of the team whose lineage holds `example_ids`."""
    with ctx.session() as session:
        team = ctx.team_row(session, team_name)
        v1 = models.Adapter(team_id=team.id, version=1, status="active", base_model="tiny-random")
        session.add(v1)
        session.flush()
        session.add_all([models.AdapterLineage(adapter_id=v1.id, example_id=i) for i in example_ids])


def test_replay_count_is_the_share_of_the_mix() -> None:
    assert replay_count(85, 0.15) == 15
    assert replay_count(0, 0.15) == 0
    assert replay_count(3, 0.0) == 0


def test_selection_new_replay_and_retired(ctx) -> None:  # type: ignore[no-untyped-def]
    old = add_qa(ctx, "platform", [(f"old question {i}?", f"answer {i}") for i in range(30)])
    retired = add_example(ctx, "platform", "qa", {"question": "gone?", "answer": "yes"}, retired=True)
    activate_v1(ctx, "platform", old + [retired])
    new = add_qa(ctx, "platform", [(f"new question {i}?", f"new answer {i}") for i in range(36)])
    add_qa(ctx, "support", [("Which helpdesk?", "Harbor")])
    with ctx.session() as session:
        team = ctx.team_row(session, "platform")
        parent = session.scalar(select(models.Adapter).where(models.Adapter.team_id == team.id))
        sel = select_examples(session, team.id, parent, replay_ratio=0.25, seed=0, has_eval_set=True)
        assert [e.id for e in sel.new] == new
        assert len(sel.replay) == 12 and {e.id for e in sel.replay} <= set(old)  # 25 % of the mix
        again = select_examples(session, team.id, parent, replay_ratio=0.25, seed=0, has_eval_set=True)
        assert [e.id for e in again.replay] == [e.id for e in sel.replay]  # seeded
        assert sel.retired_excluded == 1
        clean = select_examples(session, team.id, parent, replay_ratio=0.25, seed=0, has_eval_set=True, clean=True)
        assert sorted(e.id for e in clean.new) == sorted(old + new) and clean.replay == []
        for example_id in new[2:]:
            session.get(models.Example, example_id).retired_at = utcnow()
        session.flush()
        few = select_examples(session, team.id, parent, replay_ratio=0.25, seed=0, has_eval_set=True)
        assert [e.id for e in few.new] == new[:2] and len(few.replay) == MIN_REPLAY == 8  # the floor


def test_a_tiny_increment_replays_a_share_of_everything_learned(ctx) -> None:  # type: ignore[no-untyped-def]
    from training.selection import MIN_REPLAY_SHARE

    old = add_qa(ctx, "platform", [(f"old question {i}?", f"answer {i}") for i in range(200)])
    activate_v1(ctx, "platform", old)
    add_qa(ctx, "platform", [("new question?", "new answer")])
    with ctx.session() as session:
        team = ctx.team_row(session, "platform")
        parent = session.scalar(select(models.Adapter).where(models.Adapter.team_id == team.id))
        sel = select_examples(session, team.id, parent, replay_ratio=0.15, seed=0, has_eval_set=True)
        assert len(sel.new) == 1 and len(sel.replay) == round(MIN_REPLAY_SHARE * 200) == 30
