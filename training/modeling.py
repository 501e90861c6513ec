"""Forward passes and greedy generation over a causal LM: the helpers training, anchors and evaluation share.

Everything here works on a model already loaded (`training.base_models`), with or without a LoRA
adapter, on packed rows from `training.packing`; nothing here trains or writes.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


#: A row computes the prefix its sequences share once (the chat template's system prompt and user
#: header, before any trained token) when it is at least this long: every sequence of the row
#: attends to that one copy, at the positions it would have had alone, so the logits and their
#: gradients are those of separate copies, without computing the copies.
MIN_SHARED_PREFIX = 4


def _lead(seq: Seq) -> int:
    """How many leading positions of `seq` a row may share: none of them labelled, one left at least."""
    for i, label in enumerate(seq.labels):
        if label != IGNORE:
            return i
    return max(0, len(seq) - 1)


def _common(a: Sequence[int], b: Sequence[int], limit: int) -> int:
    n = 0
    while n < limit and a[n] == b[n]:
        n += 1
    return n


@dataclass
class _Group:
    """Sequences of a row that share an unlabelled prefix of `shared` tokens, computed once."""

    members: list[int]
    tokens: int  # the members' own lengths, summed
    shared: int

    def width(self, shared: int | None = None, extra: int = 0, more: int = 0) -> int:
        """Computed tokens, with `more` members of `extra` tokens added and `shared` as the prefix."""
        n = len(self.members) + more
        return self.tokens + extra - (n - 1) * _effective(self.shared if shared is None else shared, n)

    @property
    def prefix(self) -> int:
        """The prefix the group computes once: 0 for a single sequence or a prefix too short."""
        return _effective(self.shared, len(self.members))


def _effective(shared: int, members: int) -> int:
    return shared if members > 1 and shared >= MIN_SHARED_PREFIX else 0


def row_groups(seqs: Sequence[Seq], row_tokens: int, share: bool = False) -> list[list[tuple[list[int], int]]]:
    """The packed rows of `seqs`, each at most `row_tokens` computed tokens: per row, its groups of
    sequence indices and the prefix each group computes once (0: none; without `share`, every
    sequence is a group of its own). First fit, longest first; within a row, a sequence joins the
    group where it adds the fewest tokens. A longer sequence gets a row of its own. Deterministic."""
    order = sorted(range(len(seqs)), key=lambda i: (-len(seqs[i]), i))
    rows: list[list[_Group]] = []
    for i in order:
        n, lead = len(seqs[i]), _lead(seqs[i]) if share else 0
        for row in rows:
            width = sum(g.width() for g in row)
            best: tuple[int, int, int] | None = None  # (added tokens, group, its shared prefix)
            for gi, group in enumerate(row if share else []):
                k = _common(seqs[group.members[0]].input_ids, seqs[i].input_ids, min(group.shared, lead))
                added = group.width(k, extra=n, more=1) - group.width()
                if best is None or added < best[0]:
                    best = (added, gi, k)
            if best is not None and best[0] < n and width + best[0] <= row_tokens:
                group = row[best[1]]
                group.members.append(i)
                group.tokens += n
                group.shared = best[2]
                break
            if width + n <= row_tokens:
                row.append(_Group([i], n, lead))
                break
        else:
            rows.append([_Group([i], n, lead)])
    return [sorted((sorted(g.members), g.prefix) for g in row) for row in rows]


def _row_layout(seqs: Sequence[Seq], groups: list[tuple[list[int], int]]
                ) -> tuple[list[int], list[int], list[int], list[int], list[int], list[int]]:
    """(ids, positions, labels, sequence index, segment, prefix segment) of one row: per group its
    shared prefix once (index -1), then each member without it, positions continuing after it.
    Every member and every prefix is a segment of its own; a token attends within its segment and
    to its group's prefix segment (-1: none)."""
    ids: list[int] = []
    pos: list[int] = []
    labels: list[int] = []
    index: list[int] = []
    segment: list[int] = []
    prefix: list[int] = []
    segments = 0
    for members, shared in groups:
        own = -1
        if shared:
            own, segments = segments, segments + 1
            ids += seqs[members[0]].input_ids[:shared]
            pos += range(shared)
            labels += [IGNORE] * shared
            index += [-1] * shared
            segment += [own] * shared
            prefix += [own] * shared
        for m in members:
            seq, seg, segments = seqs[m], segments, segments + 1
            ids += seq.input_ids[shared:]
            pos += range(shared, len(seq))
            labels += seq.labels[shared:]
            index += [m] * (len(seq) - shared)
            segment += [seg] * (len(seq) - shared)
            prefix += [own] * (len(seq) - shared)
    return ids, pos, labels, index, segment, prefix


def _unwrapped(model: Any) -> Any:
    """The transformers model under a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def forward_packed(model: Any, seqs: Sequence[Seq], device: torch.device, bf16: bool = False,
                   row_tokens: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """`forward_logits` over several packed rows of at most `row_tokens` tokens at once (one row
    when None): (float logits, target ids, index into `seqs`, flat positions) at the labelled
    positions, in the same order as one row of `seqs` would give them.

    Each row restarts its position ids at every sequence, so attention stays within a sequence;
    a row shorter than the widest is filled with padding that is a block of its own (positions
    from 0, never labelled). Short rows bound the cost of attention, which over one long packed
    row is computed for every pair of positions and only then masked by most kernels. With sdpa
    or eager attention, which take an explicit mask, a row computes the unlabelled prefix its
    sequences share once (`MIN_SHARED_PREFIX`).
    """
    inner = _unwrapped(model)
    share = getattr(inner.config, "_attn_implementation", None) in ("sdpa", "eager")
    width_limit = row_tokens or sum(len(s) for s in seqs)
    if not share and sum(len(s) for s in seqs) <= width_limit:
        return forward_logits(model, pack(seqs), device, bf16)
    layouts = [_row_layout(seqs, groups) for groups in row_groups(seqs, width_limit, share)]
    width = max(len(layout[0]) for layout in layouts)
    ids, pos, labels, index, segment, prefix = [], [], [], [], [], []
    for row_ids, row_pos, row_labels, row_index, row_segment, row_prefix in layouts:
        fill = width - len(row_ids)
        ids.append(row_ids + [row_ids[-1]] * fill)
        pos.append(row_pos + list(range(fill)))
        labels += row_labels + [IGNORE] * fill
        index += row_index + [-1] * fill
        segment.append(row_segment + [max(row_segment) + 1] * fill)
        prefix.append(row_prefix + [-1] * fill)
    label_t = torch.tensor(labels, dtype=torch.long, device=device)
    index_t = torch.tensor(index, dtype=torch.long, device=device)
    keep = (label_t != IGNORE).nonzero().squeeze(-1)
    # Labelled positions in the order of `seqs` (as in one row), which per-sequence targets rely on.
    keep = keep[torch.sort(index_t[keep], stable=True).indices]
    mask = None
    if share:
        seg = torch.tensor(segment, dtype=torch.long, device=device)
        pre = torch.tensor(prefix, dtype=torch.long, device=device)
        causal = torch.ones(width, width, dtype=torch.bool, device=device).tril()
        mask = (causal & ((seg[:, :, None] == seg[:, None, :]) | (pre[:, :, None] == seg[:, None, :])))[:, None]
        if inner.config._attn_implementation == "eager":
            mask = torch.zeros(mask.shape, device=device).masked_fill(~mask, torch.finfo(torch.float32).min)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        hidden = inner.get_decoder()(input_ids=torch.tensor(ids, device=device), attention_mask=mask,
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

    The same tokens as `model.generate(do_sample=False)` (plain greedy: the logits' argmax, no
    logits processors), whose rows run until the batch's longest answer ends: here a row leaves the
    batch (and the key/value cache) once it has produced the end token, so later steps compute only
    the answers still running. A row that ended early is padded after its end token to the batch's
    longest continuation, as `generate` pads it.

    The prompts of a batch that start with the same tokens (the chat template's system prompt and
    user header, which every question carries) compute that prefix once: its keys and values are
    computed for one row and copied to every row, and each row's padding sits between the prefix
    and its own tokens, with its positions counting its own tokens only (`_shared_prompt`).

    The model is put in eval mode for the call and given back in the mode it was in.
    """
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    continuations: list[list[int]] = []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(prompts), batch_size):
            encoded = [encode(tokenizer, p) for p in prompts[start:start + batch_size]]
            shared = _shared_prompt(encoded)
            width = max(len(e) for e in encoded)
            ids = torch.tensor([e[:shared] + [pad] * (width - len(e)) + e[shared:] for e in encoded], device=device)
            mask = torch.tensor([[1] * shared + [0] * (width - len(e)) + [1] * (len(e) - shared) for e in encoded],
                                device=device)
            with torch.no_grad():
                rows = _greedy_batch(model, ids, mask, max_new_tokens, tokenizer.eos_token_id, shared)
            longest = max(len(r) for r in rows)
            continuations += [r + [pad] * (longest - len(r)) for r in rows]
    finally:
        if was_training:
            model.train()
    return continuations


def _shared_prompt(encoded: Sequence[Sequence[int]]) -> int:
    """How many leading tokens every prompt of a batch has in common and computes once (0: none),
    with a token of its own left to every prompt; by the rule packed rows share a prefix by
    (`_effective`: several prompts, at least MIN_SHARED_PREFIX tokens)."""
    shared = min(len(e) for e in encoded) - 1
    for e in encoded[1:]:
        shared = _common(encoded[0], e, shared)
    return _effective(shared, len(encoded))


def _greedy_batch(model: Any, ids: torch.Tensor, mask: torch.Tensor, max_new_tokens: int,
                  eos: int | None, shared: int = 0) -> list[list[int]]:
    """Greedy decoding of one padded batch with a key/value cache, each row's tokens up to and
    including its end token. Positions count a row's own tokens (padding excluded), as in `generate`.
    The first `shared` tokens are the same in every row (then padding, then the row's own tokens):
    they are computed for the first row only and their keys and values copied to the others."""
    inner = _unwrapped(model)
    accepts = inspect.signature(inner.forward).parameters
    # transformers 5 names the key/value cache `cache` (argument and output), earlier ones `past_key_values`.
    name = "cache" if "cache" in accepts else "past_key_values"
    last_only = {"logits_to_keep": 1} if "logits_to_keep" in accepts else {}  # the prompt's last logits only
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    past = {}
    if shared:
        prefix = getattr(model(input_ids=ids[:1, :shared], attention_mask=mask[:1, :shared],
                               position_ids=positions[:1, :shared], use_cache=True, **last_only), name)
        prefix.batch_repeat_interleave(len(ids))
        past = {name: prefix}
    out = model(input_ids=ids[:, shared:], attention_mask=mask, position_ids=positions[:, shared:], use_cache=True,
                **last_only, **past)
    cache, alive = getattr(out, name), torch.arange(len(ids), device=ids.device)
    following = positions[:, -1:] + 1
    rows: list[list[int]] = [[] for _ in range(len(ids))]
    last = max_new_tokens - 1
    for step in range(max_new_tokens):
        chosen = out.logits[:, -1].argmax(-1)
        for row, t in zip(alive.tolist(), chosen.tolist(), strict=True):
            rows[row].append(t)
        if step == last:
            break
        running = chosen != eos if eos is not None else torch.ones_like(chosen, dtype=torch.bool)
        if not bool(running.any()):
            break
        if not bool(running.all()):
            keep = running.nonzero().squeeze(-1)
            cache.batch_select_indices(keep)
            alive, chosen, mask, following = alive[keep], chosen[keep], mask[keep], following[keep]
        mask = torch.cat([mask, mask.new_ones(len(alive), 1)], dim=1)
        out = model(input_ids=chosen[:, None], attention_mask=mask, position_ids=following, use_cache=True,
                    **{name: cache})
        following = following + 1
    return rows
