"""Packing: positions restart per sequence, DPO pairs stay whole, seeded padding-free plans."""

from __future__ import annotations

from training.packing import (
    IGNORE,
    Seq,
    pack,
    padded_waste_of_batches,
    padding_waste,
    plan_epoch,
    shifted,
    split_micro,
)
from training.selection import render


def test_shifted_labels_predict_the_next_trained_token() -> None:
    assert shifted([10, 11, 12, 13], [False, False, True, True]) == [IGNORE, 12, 13, IGNORE]
    assert shifted([5], [True]) == [IGNORE]


def test_pack_restarts_positions_and_keeps_pairs_together() -> None:
    a = Seq([1, 2, 3], [2, 3, IGNORE])
    b = Seq([4, 5], [5, IGNORE], "chosen")
    c = Seq([6, 7], [7, IGNORE], "rejected")
    batch = pack([a, b, c])
    assert batch.position_ids == [0, 1, 2, 0, 1, 0, 1]
    assert batch.seq_index == [0, 0, 0, 1, 1, 2, 2]
    assert batch.labels == [2, 3, IGNORE, 5, IGNORE, 7, IGNORE]  # never across a boundary
    assert split_micro([a, b, c], 4) == [[a], [b, c]]


def test_plans_are_seeded_and_padding_free(tok) -> None:  # type: ignore[no-untyped-def]
    units = [u for i in range(30) for u in render("qa", {"question": f"Q{i} " * (i % 7 + 1), "answer": "A"}, tok, 512)]
    plan = plan_epoch(units, 256, seed=3, epoch=0)
    assert plan == plan_epoch(units, 256, seed=3, epoch=0)
    assert plan != plan_epoch(units, 256, seed=3, epoch=1)
    assert sorted(i for step in plan for i in step) == list(range(30))
    assert all(sum(units[i].tokens for i in step) <= 256 for step in plan)
    rows = [[s for i in step for s in units[i].seqs] for step in plan]
    assert padding_waste(rows) == 0.0
    # The usual alternative, padding each sequence to the longest of its batch, wastes a lot more.
    assert padded_waste_of_batches([[s for i in step for s in units[i].seqs] for step in plan]) > 2.0
