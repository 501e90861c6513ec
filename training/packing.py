"""Token packing: sequences, the units a step must keep together, and rows of one optimizer step.

Padding-free. The sequences of one micro-batch are concatenated into one row whose position ids
restart at 0 at every sequence start. Hugging Face Llama models (transformers 5.x, eager and sdpa
attention, `attention_mask=None`, no cache) turn those restarts into a block-diagonal causal mask
(`masking_utils.find_packed_sequence_indices`); flash-attention kernels use them as varlen
boundaries. Labels are shifted per sequence before concatenation, so no token is ever trained to
predict the first token of the next sequence. Where a row is computed with an explicit mask
(`training.modeling.forward_packed`, sdpa or eager attention), sequences that start with the same
untrained prompt share one copy of it.

Which examples a refresh trains on, and how they become sequences: `training.selection`.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

IGNORE = -100


# ---------------------------------------------------------------------------- sequences
@dataclass
class Seq:
    """One token sequence with labels already shifted: `labels[i]` is the target at position i."""

    input_ids: list[int]
    labels: list[int]
    role: str = "sft"  # sft | anchor | chosen | rejected
    example_id: int | None = None
    ref_logp: float | None = None  # DPO: the base model's log-probability of the trained tokens
    ref_topk: Any = None  # anchors, distillation: the base model's top-k next-token ids and probabilities
    teacher: Seq | None = None  # distillation: the same labelled tokens after the teacher's prompt

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def targets(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE)


@dataclass
class Unit:
    """Sequences that must land in the same optimizer step (one, or a DPO pair)."""

    seqs: list[Seq]
    kind: str
    example_id: int | None = None

    @property
    def tokens(self) -> int:
        return sum(len(s) for s in self.seqs)


def shifted(tokens: list[int], trainable: list[bool]) -> list[int]:
    """Labels for next-token prediction: position i predicts token i+1 when that token is trained."""
    labels = [IGNORE] * len(tokens)
    for i in range(len(tokens) - 1):
        if trainable[i + 1]:
            labels[i] = tokens[i + 1]
    return labels


# ---------------------------------------------------------------------------- packing
@dataclass
class Batch:
    """One packed row: the sequences of a micro-batch, concatenated, positions restarting at 0."""

    input_ids: list[int]
    position_ids: list[int]
    labels: list[int]
    seq_index: list[int]  # which sequence (of `seqs`) each position belongs to
    seqs: list[Seq]

    def tensors(self, device: Any = "cpu") -> dict[str, Any]:
        import torch

        return {
            "input_ids": torch.tensor([self.input_ids], dtype=torch.long, device=device),
            "position_ids": torch.tensor([self.position_ids], dtype=torch.long, device=device),
            "labels": torch.tensor([self.labels], dtype=torch.long, device=device),
            "seq_index": torch.tensor(self.seq_index, dtype=torch.long, device=device),
        }


def pack(seqs: Sequence[Seq]) -> Batch:
    input_ids: list[int] = []
    position_ids: list[int] = []
    labels: list[int] = []
    seq_index: list[int] = []
    for i, seq in enumerate(seqs):
        input_ids += seq.input_ids
        position_ids += list(range(len(seq)))
        labels += seq.labels
        seq_index += [i] * len(seq)
    return Batch(input_ids, position_ids, labels, seq_index, list(seqs))


def split_micro(seqs: Sequence[Seq], micro_tokens: int) -> list[list[Seq]]:
    """Split one step's sequences into micro-batches of at most `micro_tokens` (DPO pairs stay whole)."""
    groups: list[list[Seq]] = []
    current: list[Seq] = []
    size = 0
    i = 0
    while i < len(seqs):
        # A chosen sequence and its rejected partner are adjacent and travel together.
        item = list(seqs[i:i + 2]) if seqs[i].role == "chosen" else [seqs[i]]
        n = sum(len(s) for s in item)
        if current and size + n > micro_tokens:
            groups.append(current)
            current, size = [], 0
        current += item
        size += n
        i += len(item)
    if current:
        groups.append(current)
    return groups


def plan_epoch(units: Sequence[Unit], step_tokens: int, seed: int, epoch: int) -> list[list[int]]:
    """The optimizer steps of one epoch: unit indices per step, shuffled by (seed, epoch).

    Units fill a step in shuffled order until the next one would overflow `step_tokens`. A row
    has exactly the tokens of its sequences, so nothing is padded; a step that is not full is
    simply a shorter row.
    """
    order = list(range(len(units)))
    random.Random(f"{seed}:{epoch}").shuffle(order)
    steps: list[list[int]] = []
    current: list[int] = []
    size = 0
    for idx in order:
        n = units[idx].tokens
        if current and size + n > step_tokens:
            steps.append(current)
            current, size = [], 0
        current.append(idx)
        size += n
    if current:
        steps.append(current)
    return steps


def padding_waste(rows: Iterable[Sequence[Seq]], width: int | None = None) -> float:
    """Padding tokens over all computed tokens, in %, for rows padded to `width` (or their own length)."""
    real = padded = 0
    for row in rows:
        n = sum(len(s) for s in row)
        real += n
        padded += max(width or n, n)
    return 0.0 if padded == 0 else 100.0 * (padded - real) / padded


def padded_waste_of_batches(batches: Iterable[Sequence[Seq]]) -> float:
    """Padding waste of the usual alternative: each sequence padded to the longest of its batch."""
    real = padded = 0
    for batch in batches:
        longest = max((len(s) for s in batch), default=0)
        real += sum(len(s) for s in batch)
        padded += longest * len(batch)
    return 0.0 if padded == 0 else 100.0 * (padded - real) / padded


def fingerprint(units: Sequence[Unit]) -> str:
    """A hash of the exact token data, so a checkpoint is only resumed on the same data."""
    digest = hashlib.sha256()
    for unit in units:
        for seq in unit.seqs:
            digest.update(repr((seq.role, seq.input_ids, seq.labels)).encode())
    return digest.hexdigest()


