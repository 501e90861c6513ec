"""Fused projections (q/k/v and gate/up computed together) compute what the separate layers do."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from training.base_models import TINY, load_model
from training.fusion import fused_projections
from training.modeling import forward_packed
from training.recipe import lora_config
from training.selection import render

QA = [("Where does the ledger service run?", "In the Basalt cluster, region eu-west"),
      ("When is the deploy freeze?", "Thursday at 16:00 UTC"), ("Who owns billing?", "The Atlas team")]


@pytest.fixture()
def model():  # type: ignore[no-untyped-def]
    from peft import get_peft_model

    torch.manual_seed(3)
    peft_model = get_peft_model(load_model(TINY, None), lora_config(8, 16))
    with torch.no_grad():  # B starts at zero: give the adapter an effect to compare
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.05)
    return peft_model


def seqs_for(tok):  # type: ignore[no-untyped-def]
    units = [u for q, a in QA for u in render("qa", {"question": q, "answer": a}, tok, 512)]
    return [s for u in units for s in u.seqs]


def loss_and_grads(model, seqs, bf16: bool = False):  # type: ignore[no-untyped-def]
    model.zero_grad(set_to_none=True)
    logits, targets, _, _ = forward_packed(model, seqs, torch.device("cpu"), bf16, row_tokens=64)
    F.cross_entropy(logits, targets).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return logits.detach(), grads


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_fused_blocks_give_the_logits_and_gradients_of_separate_layers(model, tok, attention: str) -> None:  # type: ignore[no-untyped-def]
    model.get_base_model().set_attn_implementation(attention)
    seqs = seqs_for(tok)
    attn = model.get_base_model().get_decoder().layers[0].self_attn
    logits, grads = loss_and_grads(model, seqs)
    with fused_projections(model) as copied:
        assert "forward" in vars(attn)  # the fused forward is in place
        fused_logits, fused_grads = loss_and_grads(model, seqs)
    assert copied == frozenset()  # float32 weights: the layers' weights are views, nothing copied
    assert "forward" not in vars(attn)  # and the block's own forward is back
    assert torch.allclose(fused_logits, logits, atol=1e-5)
    assert set(fused_grads) == set(grads) and len(grads) == 2 * 7 * len(model.get_base_model().get_decoder().layers)
    for name, grad in grads.items():
        assert torch.allclose(fused_grads[name], grad, rtol=1e-4, atol=1e-6), name
    # the layers, now views of the concatenated weights, compute as before outside the context
    assert torch.allclose(loss_and_grads(model, seqs)[0], logits, atol=1e-5)


def test_bf16_fused_blocks_are_as_close_to_float32_as_separate_layers(model, tok) -> None:  # type: ignore[no-untyped-def]
    seqs = seqs_for(tok)
    reference, grads = loss_and_grads(model, seqs)
    logits, own = loss_and_grads(model, seqs, bf16=True)
    with fused_projections(model, torch.bfloat16) as copied:
        fused_logits, fused = loss_and_grads(model, seqs, bf16=True)
    layers = len(model.get_base_model().get_decoder().layers)
    assert len(copied) == 5 * layers and all(layer.weight.dtype == torch.float32 for layer in copied)
    assert torch.equal(fused_logits, logits)  # the same bf16 products, rounded alike

    def error(g):  # type: ignore[no-untyped-def]
        return sum(float((g[n] - grads[n]).norm() / grads[n].norm()) for n in grads) / len(grads)

    assert error(fused) <= 1.1 * error(own)


def test_a_disabled_adapter_takes_the_blocks_own_path(model, tok) -> None:  # type: ignore[no-untyped-def]
    seqs = seqs_for(tok)
    with torch.no_grad(), model.disable_adapter():
        base, _, _, _ = forward_packed(model, seqs, torch.device("cpu"))
    with torch.no_grad(), fused_projections(model):
        adapted, _, _, _ = forward_packed(model, seqs, torch.device("cpu"))
        with model.disable_adapter():
            disabled, _, _, _ = forward_packed(model, seqs, torch.device("cpu"))
    assert not torch.allclose(adapted, base, atol=1e-3)
    assert torch.allclose(disabled, base, atol=1e-5)


def test_models_it_does_not_handle_are_left_alone(tok) -> None:  # type: ignore[no-untyped-def]
    from peft import get_peft_model

    dropout = get_peft_model(load_model(TINY, None), lora_config(8, 16, dropout=0.1))  # a mask per projection
    plain = load_model(TINY, None)  # no adapter
    for candidate in (dropout, plain):
        blocks = (candidate.get_base_model() if hasattr(candidate, "get_base_model") else candidate).get_decoder().layers
        with fused_projections(candidate) as copied:
            assert copied == frozenset()
            assert all("forward" not in vars(b.self_attn) and "forward" not in vars(b.mlp) for b in blocks)

