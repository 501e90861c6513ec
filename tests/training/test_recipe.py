"""The recipe on tiny-random: exact losses, packing, DPO, determinism, resume, continuation, OOM retry."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from training.base_models import TINY, load_model
from training.modeling import forward_logprobs
from training.packing import IGNORE, Seq, Unit, pack
from training.recipe import (
    LoRARecipe,
    RecipeConfig,
    TrainingError,
    assert_only_lora_trainable,
)
from training.selection import render

QA = [("When does the deploy freeze start?", "Thursday at 16:00 UTC"), ("Which pipeline?", "Skylark"),
      ("What is the Postgres cluster called?", "Basalt"), ("How long are backups kept?", "35 days")]
TEXTS = ["The on-call handoff happens every Monday at 09:30.", "Service ownership is recorded in the Atlas catalog."]


def units_for(tok) -> list[Unit]:  # type: ignore[no-untyped-def]
    units = [u for q, a in QA for u in render("qa", {"question": q, "answer": a}, tok, 512)]
    return units + [u for t in TEXTS for u in render("cpt", {"text": t}, tok, 512)]


def config(tmp_path: Path, **kwargs) -> RecipeConfig:  # type: ignore[no-untyped-def]
    values = {"base_model": TINY, "output_dir": tmp_path / "adapter", "learning_rate": 5e-3, "epochs": 2,
              "step_tokens": 160, "seed": 7, "checkpoint_every": 0}
    values.update(kwargs)
    return RecipeConfig(**values)


def manual_loss(model, seqs: list[tuple[list[int], list[bool]]]) -> float:  # type: ignore[no-untyped-def]
    """Token-mean cross entropy over trained tokens, one unpacked forward per sequence, shifting here."""
    total, count = 0.0, 0
    with torch.no_grad():
        for tokens, trained in seqs:
            ids = torch.tensor([tokens])
            logits = model(input_ids=ids, use_cache=False).logits[0, :-1].double()
            targets = ids[0, 1:]
            mask = torch.tensor(trained[1:])
            nll = F.cross_entropy(logits, targets, reduction="none")
            total += float(nll[mask].sum())
            count += int(mask.sum())
    return total / count


def as_trained(seq: Seq) -> tuple[list[int], list[bool]]:
    """Recover (tokens, trained mask) from shifted labels, independently of the packing code."""
    trained = [False] + [label != IGNORE for label in seq.labels[:-1]]
    return seq.input_ids, trained


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_packed_loss_equals_unpacked_per_sequence_losses(tok, attention: str) -> None:  # type: ignore[no-untyped-def]
    model = load_model(TINY)
    model.config._attn_implementation = attention
    seqs = [s for u in units_for(tok) for s in u.seqs]
    batch = pack(seqs)
    with torch.no_grad():
        logp, index, _ = forward_logprobs(model, batch, torch.device("cpu"))
    packed = -float(logp.double().sum()) / len(logp)
    assert packed == pytest.approx(manual_loss(model, [as_trained(s) for s in seqs]), abs=1e-5)
    # Per sequence too: each sequence's summed log-probability is the unpacked one.
    for i, seq in enumerate(seqs):
        alone = manual_loss(model, [as_trained(seq)]) * seq.targets
        assert -float(logp[index == i].double().sum()) == pytest.approx(alone, abs=1e-4)
    # Without restarting positions, attention crosses sequences and the loss differs.
    flat = batch.__class__(batch.input_ids, list(range(len(batch.input_ids))), batch.labels, batch.seq_index, batch.seqs)
    with torch.no_grad():
        crossing = forward_logprobs(model, flat, torch.device("cpu"))[0]
    assert abs(float(crossing.sum()) - float(logp.sum())) > 1e-2


def test_first_step_loss_is_the_exact_base_loss(tok, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    units = units_for(tok)
    recipe = LoRARecipe(config(tmp_path, max_steps=1))
    recipe.setup(units)
    step = [s for i in recipe.plan[0] for s in units[i].seqs]
    # A fresh LoRA starts with B = 0, so the first loss is the base model's loss on the step's data.
    expected = manual_loss(load_model(TINY), [as_trained(s) for s in step])
    recipe.train()
    assert recipe.losses[0] == pytest.approx(expected, abs=1e-5)


def test_training_is_deterministic_and_lowers_the_loss(tok, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    runs = []
    for name in ("a", "b"):
        recipe = LoRARecipe(config(tmp_path, output_dir=tmp_path / name, epochs=4))
        recipe.setup(units_for(tok))
        recipe.train()
        runs.append((recipe.losses, {n: p.detach().clone() for n, p in recipe.model.named_parameters() if p.requires_grad}))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(runs[0][1][n], runs[1][1][n]) for n in runs[0][1])
    assert runs[0][0][-1] < runs[0][0][0]


def test_dpo_loss_is_log_two_at_init(tok, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pairs = [u for p, c, r in [("Backups?", "35 days", "7 days"), ("Pipeline?", "Skylark", "Jenkins")]
             for u in render("preference", {"prompt": p, "chosen": c, "rejected": r}, tok, 512)]
    recipe = LoRARecipe(config(tmp_path, step_tokens=4096, epochs=6, learning_rate=2e-2))
    recipe.setup(pairs)
    recipe.train()
    # Policy == reference at init (B = 0): every margin is 0 and -log sigmoid(0) = log 2.
    assert recipe.losses[0] == pytest.approx(math.log(2), abs=1e-6)
    assert recipe.losses[-1] < math.log(2)  # and training prefers the chosen answers


def test_narrow_rows_give_the_losses_of_one_row(tok, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A step packed as several rows (positions restarting per sequence, padding a block of its own)
    trains exactly as the same step in one row."""
    runs = []
    for name, rows in (("one", 4096), ("narrow", 48)):
        recipe = LoRARecipe(config(tmp_path, output_dir=tmp_path / name, max_steps=4, row_tokens=rows))
        recipe.setup(units_for(tok))
        recipe.train()
        runs.append(recipe.losses)
    assert runs[1] == pytest.approx(runs[0], abs=1e-5)


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_a_shared_prompt_prefix_is_computed_once_with_the_same_logits_and_gradients(tok, attention: str) -> None:  # type: ignore[no-untyped-def]
    from peft import get_peft_model

    from training.modeling import MIN_SHARED_PREFIX, forward_logits, forward_packed, row_groups
    from training.recipe import lora_config

    torch.manual_seed(0)
    model = get_peft_model(load_model(TINY), lora_config(8, 16, 0.0))
    model.base_model.model.config._attn_implementation = attention
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.05)  # a trained adapter: LoRA changes the prefix too
    units = units_for(tok)
    seqs = [s for u in units for s in u.seqs]
    rows = row_groups(seqs, 4096, share=True)
    # The qa sequences share the chat template's prompt up to the question; the cpt texts share nothing.
    assert len(rows) == 1 and sorted(k for _, k in rows[0])[-1] >= MIN_SHARED_PREFIX
    saved = sum((len(members) - 1) * k for members, k in rows[0])
    assert all(k == 0 for _, k in row_groups(seqs, 4096)[0])
    grads = []
    for shared in (True, False):
        model.zero_grad()
        if shared:
            logits, targets, index, keep = forward_packed(model, seqs, torch.device("cpu"), row_tokens=4096)
            assert int(keep.max()) < sum(len(s) for s in seqs) - saved  # the row is that much shorter
        else:
            logits, targets, index, _ = forward_logits(model, pack(seqs), torch.device("cpu"))
        loss = F.cross_entropy(logits, targets)
        loss.backward()
        grads.append((logits.detach(), targets, index, {n: p.grad.clone() for n, p in model.named_parameters()
                                                         if p.requires_grad}))
    (l1, t1, i1, g1), (l2, t2, i2, g2) = grads
    assert torch.equal(t1, t2) and torch.equal(i1, i2)
    assert torch.allclose(l1, l2, atol=1e-4)
    assert all(torch.allclose(g1[n], g2[n], atol=1e-5, rtol=1e-4) for n in g1)
    assert any(float(g.abs().sum()) > 0 for g in g1.values())


def test_bf16_copies_of_frozen_linears_compute_exactly_what_autocast_does(tok, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import training.recipe as recipe_module

    runs = []
    for copies in (False, True):
        monkeypatch.setattr(recipe_module, "CPU_BF16_FROZEN_LINEARS", copies)
        recipe = LoRARecipe(config(tmp_path, output_dir=tmp_path / str(copies), max_steps=4, bf16=True))
        recipe.setup(units_for(tok))
        recipe.train()
        weights = {n: p.detach().clone() for n, p in recipe.model.named_parameters() if p.requires_grad}
        frozen = [(p.dtype, p.data_ptr()) for p in recipe.model.parameters() if not p.requires_grad]
        head = recipe.model.get_output_embeddings()
        swapped = {id(module) for module, *_ in recipe._frozen_bf16_copies()}
        assert head.weight is recipe.model.get_input_embeddings().weight  # tied, as loaded
        runs.append((recipe.losses, weights, frozen, len(swapped), id(head) in swapped))
    (loss_a, w_a, _, n_a, _), (loss_b, w_b, frozen_b, n_b, head_swapped) = runs
    assert n_a == 0 and n_b > 0 and head_swapped  # the output layer too, though its weight is the embeddings'
    assert loss_a == loss_b  # bit for bit: autocast rounds the float32 weights to these very values
    assert all(torch.equal(w_a[n], w_b[n]) for n in w_a)
    assert all(dtype == torch.float32 for dtype, _ in frozen_b)  # the originals are back after each step


def test_step_shape_follows_the_memory_available() -> None:
    from types import SimpleNamespace

    from training.recipe import CPU_ROW_TOKENS, choose_step_shape

    smollm = SimpleNamespace(hidden_size=576, num_hidden_layers=30, vocab_size=49152)
    gpu, cpu = torch.device("cuda"), torch.device("cpu")
    roomy = choose_step_shape(gpu, smollm, step_tokens=16384, seq_len=512, bf16=True, free_bytes=70 << 30)
    assert (roomy.micro_tokens, roomy.gradient_checkpointing, roomy.row_tokens) == (16384, False, 512)
    # Less memory: smaller micro-batches first, gradient checkpointing only when a sequence does not fit.
    tight = choose_step_shape(gpu, smollm, step_tokens=16384, seq_len=512, bf16=True, free_bytes=2 << 30)
    assert 512 <= tight.micro_tokens < 16384 and not tight.gradient_checkpointing
    tiny = choose_step_shape(gpu, smollm, step_tokens=16384, seq_len=512, bf16=True, free_bytes=300 << 20)
    assert tiny.gradient_checkpointing
    on_cpu = choose_step_shape(cpu, smollm, step_tokens=1024, seq_len=512, bf16=True, free_bytes=8 << 30)
    assert (on_cpu.micro_tokens, on_cpu.row_tokens, on_cpu.gradient_checkpointing) == (1024, CPU_ROW_TOKENS, False)
    assert 1 <= on_cpu.threads <= torch.get_num_threads()


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("row_tokens", [None, 48])
def test_resume_after_interrupt_gives_identical_results(tok, tmp_path: Path, row_tokens: int | None) -> None:  # type: ignore[no-untyped-def]
    """With the device's step shape, and with steps packed as several narrow rows."""
    units = units_for(tok)
    base_cfg = {"epochs": 4, "dropout": 0.1, "checkpoint_every": 3, "row_tokens": row_tokens}
    straight = LoRARecipe(config(tmp_path, output_dir=tmp_path / "straight", **base_cfg))
    straight.setup(units)
    straight.train()
    total = len(straight.plan)
    assert total >= 7

    def crash(info: dict) -> None:  # type: ignore[type-arg]
        if info["step"] == 5:
            raise Interrupt

    cfg = config(tmp_path, output_dir=tmp_path / "interrupted", **base_cfg)
    first = LoRARecipe(cfg, progress=crash)
    first.setup(units)
    with pytest.raises(Interrupt):
        first.train()
    assert (tmp_path / "interrupted" / "checkpoint.pt").exists()
    del first
    torch.manual_seed(999)  # whatever happened to the RNG meanwhile is undone by the checkpoint
    second = LoRARecipe(cfg)
    second.setup(units)
    assert second.resumed_from == 3
    second.train()
    assert second.losses == straight.losses
    for (name, a), (_, b) in zip(straight.model.named_parameters(), second.model.named_parameters(), strict=True):
        if a.requires_grad:
            assert torch.equal(a, b), name
    second.cleanup()
    assert not (tmp_path / "interrupted" / "checkpoint.pt").exists()


def test_compiled_steps_resume_identically_and_train_like_eager_ones(tok, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Compiled blocks (the CPU's step shape for long runs): a run interrupted and resumed ends with
    the same tensors as one straight run, its losses are those of eager steps up to rounding, and
    after training the blocks are eager again with the attention they had (for evaluation)."""
    units = units_for(tok)
    base_cfg = {"epochs": 4, "checkpoint_every": 3, "bf16": True}
    runs = {}
    for name, compiled in (("eager", False), ("straight", True)):
        recipe = LoRARecipe(config(tmp_path, output_dir=tmp_path / name, compile=compiled, **base_cfg))
        recipe.setup(units)
        recipe.train()
        runs[name] = recipe
    straight = runs["straight"]
    assert straight.summary()["compiled"] and not runs["eager"].summary()["compiled"]
    assert not straight.summary()["fused"] and runs["eager"].summary()["fused"]  # fused only where not compiled
    assert straight.losses == pytest.approx(runs["eager"].losses, rel=2e-2)
    inner = straight.model.get_base_model()
    assert inner.config._attn_implementation == "sdpa"
    assert all(block._compiled_call_impl is None for block in inner.get_decoder().layers)
    assert all(block.self_attn.training for block in inner.get_decoder().layers)  # out of eval mode again

    def crash(info: dict) -> None:  # type: ignore[type-arg]
        if info["step"] == 5:
            raise Interrupt

    cfg = config(tmp_path, output_dir=tmp_path / "interrupted", compile=True, **base_cfg)
    first = LoRARecipe(cfg, progress=crash)
    first.setup(units)
    with pytest.raises(Interrupt):
        first.train()
    del first
    second = LoRARecipe(cfg)
    second.setup(units)
    assert second.resumed_from == 3 and second.compiled
    second.train()
    assert second.losses == straight.losses
    for (name, a), (_, b) in zip(straight.model.named_parameters(), second.model.named_parameters(), strict=True):
        if a.requires_grad:
            assert torch.equal(a, b), name


def test_the_recipe_fuses_its_eager_steps_and_trains_as_unfused_steps_do(tok, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    runs = {}
    for name, fuse in (("default", None), ("unfused", False)):
        recipe = LoRARecipe(config(tmp_path, output_dir=tmp_path / name, fuse=fuse, epochs=3))
        recipe.setup(units_for(tok))
        recipe.train()
        runs[name] = recipe
    assert runs["default"].summary()["fused"] and not runs["unfused"].summary()["fused"]
    assert len(runs["default"].losses) >= 6
    assert runs["default"].losses == pytest.approx(runs["unfused"].losses, rel=1e-4)
    unfused = dict(runs["unfused"].model.named_parameters())
    for name, param in runs["default"].model.named_parameters():
        if param.requires_grad:
            diff, scale = (param - unfused[name]).detach().norm(), unfused[name].detach().norm()
            assert float(diff) <= 1e-3 * float(scale), name
    blocks = runs["default"].model.get_base_model().get_decoder().layers
    assert all("forward" not in vars(b.self_attn) for b in blocks)  # evaluation after runs the blocks' own code


def test_runs_compile_where_compiling_pays() -> None:
    from training.recipe import should_compile

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    big = {"params": 135_000_000, "planned_tokens": 70_000}
    assert should_compile(cpu, bf16=True, gradient_checkpointing=False, **big)
    assert not should_compile(cpu, bf16=True, gradient_checkpointing=False, params=135_000_000, planned_tokens=2_000)
    assert not should_compile(cpu, bf16=True, gradient_checkpointing=False, params=2_000_000, planned_tokens=70_000)
    assert not should_compile(cpu, bf16=False, gradient_checkpointing=False, **big)
    assert not should_compile(cpu, bf16=True, gradient_checkpointing=True, **big)
    assert not should_compile(gpu, bf16=True, gradient_checkpointing=False, **big)  # not measured there yet


def test_compiled_code_is_cached_beside_the_models_unless_placed_elsewhere(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    from training.recipe import _compile_cache_beside

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())  # what torch writes on first look
    _compile_cache_beside(tmp_path / "models")
    assert Path(os.environ["TORCHINDUCTOR_CACHE_DIR"]) == tmp_path / "models" / "compile-cache"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "chosen"))
    _compile_cache_beside(tmp_path / "models")
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "chosen")


def test_continuation_loads_the_previous_adapter_trainable(tok, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    units = units_for(tok)
    first = LoRARecipe(config(tmp_path, output_dir=tmp_path / "v1"))
    first.setup(units)
    first.train()
    first.save_adapter()
    saved = {n: p.detach().clone() for n, p in first.model.named_parameters() if p.requires_grad}
    second = LoRARecipe(config(tmp_path, output_dir=tmp_path / "v2", parent_adapter=tmp_path / "v1", max_steps=1))
    second.setup(units)
    loaded = {n: p for n, p in second.model.named_parameters() if p.requires_grad}
    assert set(loaded) == set(saved) and second.trainable_params == sum(p.numel() for p in saved.values())
    assert all(torch.equal(loaded[n], saved[n]) for n in saved)
    second.train()
    assert any(not torch.equal(loaded[n], saved[n]) for n in saved)  # and it keeps learning
    with pytest.raises(TrainingError, match="r=16"):
        LoRARecipe(config(tmp_path, output_dir=tmp_path / "v3", parent_adapter=tmp_path / "v1", rank=8)).setup(units)


def test_assertion_catches_wrong_trainable_parameters(tok, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    recipe = LoRARecipe(config(tmp_path))
    recipe.setup(units_for(tok))
    model = recipe.model
    embed = next(p for n, p in model.named_parameters() if "embed_tokens" in n)
    embed.requires_grad_(True)
    with pytest.raises(TrainingError, match="extra"):
        assert_only_lora_trainable(model)
    embed.requires_grad_(False)
    lora = next(p for n, p in model.named_parameters() if "lora_B" in n)
    lora.requires_grad_(False)
    with pytest.raises(TrainingError, match="frozen"):
        assert_only_lora_trainable(model)


def test_out_of_memory_halves_the_micro_batch_with_the_same_result(tok, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    units = units_for(tok)
    plain = LoRARecipe(config(tmp_path, output_dir=tmp_path / "plain", max_steps=3))
    plain.setup(units)
    plain.train()
    tight = LoRARecipe(config(tmp_path, output_dir=tmp_path / "tight", max_steps=3))
    tight.setup(units)
    limit = 90

    def fail_when_large(module, args, kwargs):  # type: ignore[no-untyped-def]
        if kwargs["input_ids"].shape[1] > limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    handle = tight.model.get_base_model().get_decoder().register_forward_pre_hook(fail_when_large, with_kwargs=True)
    tight.train()
    handle.remove()
    assert tight.micro_tokens <= 90
    assert tight.losses == pytest.approx(plain.losses, abs=1e-5)


def test_anchor_loss_is_the_cross_entropy_to_the_base_models_top_k(tok, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from training.anchors import anchor_units

    rows = [{"prompt": "What is a map?", "answer": "A map is a drawing of a place."},
            {"prompt": "Name three vegetables.", "answer": "Carrots, peas and leeks."}]
    first = anchor_units(rows, tok, 512, 1, seed=0)  # anchors are asked for by tokens
    assert len(first) == 1
    units = anchor_units(rows, tok, 512, first[0].tokens + 1, seed=0)
    assert [s.role for u in units for s in u.seqs] == ["anchor", "anchor"]
    again = anchor_units(rows, tok, 512, 3 * sum(u.tokens for u in units), seed=0)
    assert len(again) == 6 and again[2].seqs[0] is again[0].seqs[0]  # cycled: the same sequences
    recipe = LoRARecipe(config(tmp_path, max_steps=1, step_tokens=4096, anchor_topk=8))
    recipe.setup(units)
    recipe.train()
    assert recipe.losses[0] == pytest.approx(base_topk_cross_entropy(units, 8), abs=1e-4)


def base_topk_cross_entropy(units: list, k: int) -> float:  # type: ignore[type-arg]
    """Token-mean cross entropy of the base model against its own renormalised top-k at every labelled position."""
    base = load_model(TINY)
    total, count = 0.0, 0
    with torch.no_grad():
        for unit in units:
            seq = unit.seqs[0]
            logits = base(input_ids=torch.tensor([seq.input_ids]), use_cache=False).logits[0].double()
            at = torch.tensor([i for i, label in enumerate(seq.labels) if label != IGNORE])
            probs, ids = torch.softmax(logits[at], -1).topk(k, -1)
            probs = probs / probs.sum(-1, keepdim=True)
            total += float(-(probs * torch.log_softmax(logits[at], -1).gather(-1, ids)).sum())
            count += len(at)
    return total / count


def test_plain_text_anchors_distil_every_token_of_prompt_and_answer(tok, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from training.anchors import anchor_units

    rows = [{"prompt": "What is a map?", "answer": "A map is a drawing of a place."}]
    chat = anchor_units(rows, tok, 512, 1, seed=0)
    units = anchor_units(rows, tok, 512, 10_000, seed=0, text=True)
    both = units[:2]
    assert both[0].seqs[0].input_ids == chat[0].seqs[0].input_ids  # the chat form, then the plain text
    plain = both[1].seqs[0]
    assert plain.role == "anchor" and tok.decode(plain.input_ids).startswith("What is a map?\nA map is a drawing")
    assert plain.targets == len(plain) - 1  # every next token, the prompt's too
    recipe = LoRARecipe(config(tmp_path, max_steps=1, step_tokens=4096, anchor_topk=8))
    recipe.setup(both)
    recipe.train()
    assert recipe.losses[0] == pytest.approx(base_topk_cross_entropy(both, 8), abs=1e-4)


def test_min_steps_adds_epochs_only_up_to_that_many_steps(tok, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    units = units_for(tok)
    one = LoRARecipe(config(tmp_path, epochs=1))
    one.setup(units)
    per_epoch = len(one.plan)
    wanted = per_epoch + max(1, per_epoch // 2)  # one and a half epochs
    more = LoRARecipe(config(tmp_path, epochs=1, min_steps=wanted))
    more.setup(units)
    assert len(more.plan) == wanted and more.epochs_run == 2
    enough = LoRARecipe(config(tmp_path, epochs=2, min_steps=2))
    enough.setup(units)
    assert len(enough.plan) == 2 * per_epoch  # min_steps never cuts the configured epochs


def test_anchor_targets_are_cached_on_disk_per_base_model(tok, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from training.anchors import anchor_units

    rows = [{"prompt": "What is a map?", "answer": "A map is a drawing of a place."},
            {"prompt": "Name three vegetables.", "answer": "Carrots, peas and leeks."}]
    cache = tmp_path / "anchors"
    first = LoRARecipe(config(tmp_path, max_steps=1, anchor_topk=8, anchor_cache=cache, base_hash="b1"))
    units = anchor_units(rows, tok, 512, 200, seed=0)
    first.setup(units)
    files = list(cache.glob("anchor-targets-*.pt"))
    assert len(files) == 1
    stored = torch.load(files[0], weights_only=True)
    assert len(stored) == 2  # one entry per distinct anchor, however often it repeats
    second = LoRARecipe(config(tmp_path, max_steps=1, anchor_topk=8, anchor_cache=cache, base_hash="b1"))
    again = anchor_units(rows, tok, 512, 200, seed=0)
    second.setup(again)
    for a, b in zip(units, again, strict=True):
        assert torch.equal(a.seqs[0].ref_topk[0], b.seqs[0].ref_topk[0])
        assert torch.allclose(a.seqs[0].ref_topk[1], b.seqs[0].ref_topk[1])
    other = LoRARecipe(config(tmp_path, max_steps=1, anchor_topk=8, anchor_cache=cache, base_hash="b2"))
    other.setup(anchor_units(rows, tok, 512, 200, seed=0))
    assert len(list(cache.glob("anchor-targets-*.pt"))) == 2  # another base model: its own targets
