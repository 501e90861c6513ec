"""Fused projections for training steps.

In a Llama block the q, k and v projections read the same input, as do gate and up. With a LoRA
adapter each of the seven projections is three matrix products (the frozen weight, A, B) plus a
scale and an add: 21 products a block, most of them small (A and B have rank r). `fused_projections`
computes each group that shares an input with one product of the frozen weights concatenated and
one of the A matrices concatenated, then each projection's own B: 15 products a block, and one
pass over the input instead of several.

The arithmetic is that of the separate projections, up to the order of float additions; the A and
B weights stay the adapter's own parameters (their gradients flow through the concatenation), and
parameter names, the adapter format and checkpoints are unchanged. It applies to blocks of
transformers' Llama classes (SmolLM2 among them) with one LoRA adapter active, not merged, without
dropout (dropout draws a separate mask per projection); any other block keeps its own forward. A
forward with a key/value cache or a disabled adapter takes the block's own path.

Measured on SmolLM2-135M, 2 CPU cores, bf16 autocast, steps interleaved with unfused ones in one
process: on the demo's platform and support data, 256-token eager steps x1.06-1.09 tokens/s,
1024-token steps x1.00, compiled blocks (`torch.compile`) x0.99-1.01; on the benchmark's short
question-answer facts (`bench_training.py --parts fusion`) x1.11, x1.07 and x1.07-1.08. The recipe
fuses the steps it does not compile (compiled ones keep their code and the demo its rounding). A
block-diagonal B (one product for the group's B's as well) measured no better eager (x1.06) and
slower compiled (x0.98).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from training.modeling import _unwrapped

_CACHE_KEYS = ("cache", "past_key_values", "past_key_value")


@dataclass
class _Lora:
    """One LoRA linear layer's parts (peft `lora.Linear`): the frozen layer, A, B and the scale."""

    layer: Any  # the peft layer (its flags say whether the adapter is disabled or merged)
    base: torch.nn.Linear
    a: torch.nn.Parameter
    b: torch.nn.Parameter
    scale: float

    def active(self) -> bool:
        return not (self.layer.disable_adapters or self.layer.merged)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """base(x) + B(A(x)) × scale, as peft computes it without dropout."""
        return F.linear(x, self.base.weight, self.base.bias) + F.linear(F.linear(x, self.a), self.b) * self.scale


def _lora(layer: Any) -> _Lora | None:
    """The parts of `layer` when it is a peft LoRA linear with exactly one adapter, active, not
    merged, plain (no DoRA or other variant) and without dropout; else None."""
    names = list(getattr(layer, "active_adapters", None) or [])
    if len(names) != 1 or getattr(layer, "merged", True) or getattr(layer, "disable_adapters", True):
        return None
    name = names[0]
    if set(layer.lora_A) != {name} or name in getattr(layer, "lora_variant", {}):
        return None
    if not isinstance(layer.lora_dropout[name], torch.nn.Identity) or not isinstance(layer.base_layer, torch.nn.Linear):
        return None
    return _Lora(layer, layer.base_layer, layer.lora_A[name].weight, layer.lora_B[name].weight,
                 float(layer.scaling[name]))


class _Group:
    """Projections that read the same input: one product of their frozen weights, one of their A's."""

    def __init__(self, parts: list[_Lora], dtype: torch.dtype | None) -> None:
        self.parts = parts
        self.sizes = [p.base.out_features for p in parts]
        self.ranks = [p.a.shape[0] for p in parts]
        weights = [p.base.weight.detach() for p in parts]
        own = weights[0].dtype
        self.weight = torch.cat(weights).to(dtype or own)
        self.copied = self.weight.dtype != own
        if not self.copied:  # the layers' weights become views of the one tensor: no copy kept
            for part, view in zip(parts, self.weight.split(self.sizes), strict=True):
                part.base.weight.data = view
        biases = [p.base.bias for p in parts]
        self.bias = None if all(b is None for b in biases) else torch.cat(
            [b.detach() if b is not None else weights[0].new_zeros(n) for b, n in zip(biases, self.sizes, strict=True)]
        ).to(self.weight.dtype)

    def active(self) -> bool:
        return all(p.active() for p in self.parts)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Each projection's base(x) + B(A(x)) × scale, as peft computes it without dropout."""
        base = F.linear(x, self.weight, self.bias).split(self.sizes, dim=-1)
        low = F.linear(x, torch.cat([p.a for p in self.parts])).split(self.ranks, dim=-1)
        return tuple(y + F.linear(z, p.b) * p.scale for y, z, p in zip(base, low, self.parts, strict=True))


def _fuse_block(block: Any, dtype: torch.dtype | None) -> tuple[list[tuple[Any, Any]], list[_Group]] | None:
    """Give `block`'s attention and MLP fused forwards; returns the (module, its own forward
    attribute) pairs to restore and the groups, or None when the block is not of a shape this handles."""
    attn, mlp = getattr(block, "self_attn", None), getattr(block, "mlp", None)
    helpers = sys.modules.get(type(attn).__module__)
    if (type(attn).__name__ != "LlamaAttention" or type(mlp).__name__ != "LlamaMLP" or helpers is None
            or not all(hasattr(helpers, n) for n in ("apply_rotary_pos_emb", "eager_attention_forward",
                                                      "ALL_ATTENTION_FUNCTIONS"))
            or not hasattr(helpers.ALL_ATTENTION_FUNCTIONS, "get_interface")):
        return None
    parts = {n: _lora(getattr(attn, n, None)) for n in ("q_proj", "k_proj", "v_proj", "o_proj")}
    parts |= {n: _lora(getattr(mlp, n, None)) for n in ("gate_proj", "up_proj", "down_proj")}
    if any(p is None for p in parts.values()):
        return None
    qkv = _Group([parts["q_proj"], parts["k_proj"], parts["v_proj"]], dtype)
    gate_up = _Group([parts["gate_proj"], parts["up_proj"]], dtype)
    o_proj, down = parts["o_proj"], parts["down_proj"]
    own_attn, own_mlp = attn.forward, mlp.forward
    interfaces = helpers.ALL_ATTENTION_FUNCTIONS

    def attention(hidden_states: torch.Tensor, position_embeddings: Any = None, attention_mask: Any = None,
                  **kwargs: Any) -> Any:
        if (position_embeddings is None or any(kwargs.get(k) is not None for k in _CACHE_KEYS)
                or not (qkv.active() and o_proj.active())):
            return own_attn(hidden_states, position_embeddings=position_embeddings,
                            attention_mask=attention_mask, **kwargs)
        for key in _CACHE_KEYS:
            kwargs.pop(key, None)
        shape = hidden_states.shape[:-1]
        heads = (*shape, -1, attn.head_dim)
        q, k, v = (t.view(heads).transpose(1, 2) for t in qkv(hidden_states))
        cos, sin = position_embeddings
        q, k = helpers.apply_rotary_pos_emb(q, k, cos, sin)
        interface = interfaces.get_interface(attn.config._attn_implementation, helpers.eager_attention_forward)
        out, weights = interface(attn, q, k, v, attention_mask,
                                 dropout=0.0 if not attn.training else attn.attention_dropout,
                                 scaling=attn.scaling, **kwargs)
        return o_proj(out.reshape(*shape, -1).contiguous()), weights

    def feed_forward(x: torch.Tensor) -> torch.Tensor:
        if not (gate_up.active() and down.active()):
            return own_mlp(x)
        gate, up = gate_up(x)
        return down(mlp.act_fn(gate) * up)

    restore = [(m, m.__dict__.get("forward")) for m in (attn, mlp)]
    attn.forward, mlp.forward = attention, feed_forward
    return restore, [qkv, gate_up]


@contextlib.contextmanager
def fused_projections(model: Any, dtype: torch.dtype | None = None) -> Iterator[frozenset[torch.nn.Module]]:
    """The blocks of `model` (a peft model or the transformers model under it) compute q/k/v and
    gate/up fused while the context lasts. `dtype`: the frozen weights' dtype in the fused products
    (e.g. bfloat16 under bf16 autocast on a CPU: the same values autocast would round them to), None
    for their own, in which case the layers' weights become views of the concatenated ones (no
    copy; a lasting change of storage, not of values). Yields the frozen layers whose products the
    fused forwards compute from a copy of their weights (empty when none is copied)."""
    inner = _unwrapped(model)
    decoder = inner.get_decoder() if hasattr(inner, "get_decoder") else None
    restores: list[tuple[Any, Any]] = []
    copied: set[torch.nn.Module] = set()
    for block in getattr(decoder, "layers", []):
        done = _fuse_block(block, dtype)
        if done is not None:
            restores += done[0]
            copied |= {p.base for g in done[1] if g.copied for p in g.parts}
    try:
        yield frozenset(copied)
    finally:
        for module, forward in restores:
            if forward is None:
                vars(module).pop("forward", None)
            else:
                module.forward = forward
