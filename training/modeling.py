"""Forward passes and greedy generation over a causal LM: the helpers training, anchors and evaluation share.

Everything here works on a model already loaded (`training.base_models`), with or without a LoRA
adapter, on packed rows from `training.packing`; nothing here trains or writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from training.packing import IGNORE, Batch, Seq, pack, split_micro
from training.selection import prompt_ids


def forward_logits(model: Any, batch: Batch, device: torch.device, bf16: bool = False
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(float logits, target ids, sequence index, positions) at the labelled positions of a packed row."""
    t = batch.tensors(device)
    labels = t["labels"][0]
    keep = (labels != IGNORE).nonzero().squeeze(-1)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        out = model(input_ids=t["input_ids"], position_ids=t["position_ids"], use_cache=False, logits_to_keep=keep)
    return out.logits[0].float(), labels[keep], t["seq_index"][keep], keep


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
                      bf16: bool = False) -> list[tuple[float, int]]:
    """(sum of log-probabilities, trained tokens) per sequence, without gradients."""
    results: list[tuple[float, int]] = []
    with torch.no_grad():
        for group in split_micro(list(seqs), micro_tokens):
            batch = pack(group)
            logp, index, _ = forward_logprobs(model, batch, device, bf16)
            sums = torch.zeros(len(group), dtype=torch.float64, device=logp.device)
            sums.index_add_(0, index, logp.double())
            results += [(float(sums[i]), group[i].targets) for i in range(len(group))]
    return results


def greedy_continuations(model: Any, tokenizer: Any, prompts: Sequence[str], device: torch.device, *,
                         max_new_tokens: int, batch_size: int) -> list[list[int]]:
    """The greedy continuation (token ids, padding included) of each prompt, batched with left padding.

    The model is put in eval mode for the call and given back in the mode it was in.
    """
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    continuations: list[list[int]] = []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(prompts), batch_size):
            encoded = [prompt_ids(tokenizer, p) for p in prompts[start:start + batch_size]]
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
