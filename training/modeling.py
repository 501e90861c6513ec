"""Forward passes and greedy generation over a causal LM: the helpers training, anchors and evaluation share.

Everything here works on a model already loaded (`training.base_models`), with or without a LoRA
adapter, on packed rows from `training.packing`; nothing here trains or writes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from training.packing import IGNORE, Batch, Seq, pack, split_micro
from training.selection import prompt_ids

#: Packed rows no wider than this where no step shape says otherwise (evaluation, reference
#: targets): attention over a packed row costs its width squared, masked or not.
DEFAULT_ROW_TOKENS = 256


def forward_logits(model: Any, batch: Batch, device: torch.device, bf16: bool = False
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(float logits, target ids, sequence index, positions) at the labelled positions of a packed row."""
    t = batch.tensors(device)
    labels = t["labels"][0]
    keep = (labels != IGNORE).nonzero().squeeze(-1)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        out = model(input_ids=t["input_ids"], position_ids=t["position_ids"], use_cache=False, logits_to_keep=keep)
    return out.logits[0].float(), labels[keep], t["seq_index"][keep], keep


def row_groups(seqs: Sequence[Seq], row_tokens: int) -> list[list[int]]:
    """Sequence indices per packed row of at most `row_tokens` tokens (first fit, longest first; a
    longer sequence gets a row of its own). Deterministic: the same sequences give the same rows."""
    order = sorted(range(len(seqs)), key=lambda i: (-len(seqs[i]), i))
    rows: list[list[int]] = []
    sizes: list[int] = []
    for i in order:
        n = len(seqs[i])
        for r, size in enumerate(sizes):
            if size + n <= row_tokens:
                rows[r].append(i)
                sizes[r] += n
                break
        else:
            rows.append([i])
            sizes.append(n)
    return [sorted(row) for row in rows]


def forward_packed(model: Any, seqs: Sequence[Seq], device: torch.device, bf16: bool = False,
                   row_tokens: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """`forward_logits` over several packed rows of at most `row_tokens` tokens at once (one row
    when None): (float logits, target ids, index into `seqs`, flat positions) at the labelled
    positions, in the same order as one row of `seqs` would give them.

    Each row restarts its position ids at every sequence, so attention stays within a sequence;
    a row shorter than the widest is filled with padding that is a block of its own (positions
    from 0, never labelled). Short rows bound the cost of attention, which over one long packed
    row is computed for every pair of positions and only then masked by most kernels.
    """
    if row_tokens is None or sum(len(s) for s in seqs) <= row_tokens:
        return forward_logits(model, pack(seqs), device, bf16)
    owner = row_groups(seqs, row_tokens)
    rows = [pack([seqs[i] for i in row]) for row in owner]
    width = max(len(b.input_ids) for b in rows)
    ids, pos, labels, index = [], [], [], []
    for batch, members in zip(rows, owner, strict=True):
        fill = width - len(batch.input_ids)
        ids.append(batch.input_ids + [batch.input_ids[-1]] * fill)
        pos.append(batch.position_ids + list(range(fill)))
        labels += batch.labels + [IGNORE] * fill
        index += [members[k] for k in batch.seq_index] + [-1] * fill
    label_t = torch.tensor(labels, dtype=torch.long, device=device)
    index_t = torch.tensor(index, dtype=torch.long, device=device)
    keep = (label_t != IGNORE).nonzero().squeeze(-1)
    # Labelled positions in the order of `seqs` (as in one row), which per-sequence targets rely on.
    keep = keep[torch.sort(index_t[keep], stable=True).indices]
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        hidden = inner.get_decoder()(input_ids=torch.tensor(ids, device=device),
                                     position_ids=torch.tensor(pos, device=device), use_cache=False).last_hidden_state
        logits = inner.get_output_embeddings()(hidden.reshape(-1, hidden.shape[-1])[keep])
    return logits.float(), label_t[keep], index_t[keep], keep


def forward_logprobs(model: Any, batch: Batch, device: torch.device, bf16: bool = False
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Log-probabilities of the labelled tokens of a packed row.

    Returns (logp per labelled token, sequence index per labelled token, labelled positions).
    Logits are only computed at labelled positions (`logits_to_keep`), which skips the vocabulary
    projection for prompt tokens.
    """
    logits, targets, index, keep = forward_logits(model, batch, device, bf16)
    logp = -F.cross_entropy(logits, targets, reduction="none")
    return logp, index, keep


def sequence_logprobs(model: Any, seqs: Sequence[Seq], device: torch.device, micro_tokens: int = 2048,
                      bf16: bool = False, row_tokens: int | None = DEFAULT_ROW_TOKENS) -> list[tuple[float, int]]:
    """(sum of log-probabilities, trained tokens) per sequence, without gradients."""
    results: list[tuple[float, int]] = []
    with torch.no_grad():
        for group in split_micro(list(seqs), micro_tokens):
            logits, targets, index, _ = forward_packed(model, group, device, bf16, row_tokens)
            logp = -F.cross_entropy(logits, targets, reduction="none")
            sums = torch.zeros(len(group), dtype=torch.float64, device=logp.device)
            sums.index_add_(0, index, logp.double())
            results += [(float(sums[i]), group[i].targets) for i in range(len(group))]
    return results


def greedy_continuations(model: Any, tokenizer: Any, prompts: Sequence[str], device: torch.device, *,
                         max_new_tokens: int, batch_size: int,
                         encode: Callable[[Any, str], list[int]] = prompt_ids) -> list[list[int]]:
    """The greedy continuation (token ids, padding included) of each prompt, batched with left padding;
    `encode` turns a prompt into token ids (default: a user question in the chat template).

    The model is put in eval mode for the call and given back in the mode it was in.
    """
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    continuations: list[list[int]] = []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(prompts), batch_size):
            encoded = [encode(tokenizer, p) for p in prompts[start:start + batch_size]]
            width = max(len(e) for e in encoded)
            ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded], device=device)
            mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded], device=device)
            with torch.no_grad():
                out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                     do_sample=False, eos_token_id=tokenizer.eos_token_id, pad_token_id=pad)
            continuations += [row[width:].tolist() for row in out]
    finally:
        if was_training:
            model.train()
    return continuations
