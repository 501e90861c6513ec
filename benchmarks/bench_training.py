"""Training: packing against padding, an incremental refresh against a full retrain, and what the
adapters learn on the sample company.

1. **Packing** (tokens/s, padding waste %): the same LoRA model and the same data (the sample
   company's facts rendered as qa and cpt examples) trained for the same steps, once packed
   padding-free (Tacit's recipe: one row per step, positions restarting at every sequence) and
   once padded (sequences of a step padded to its longest, with a 2-D attention mask: the usual
   collator). Both compute logits only where there is a label. Real (non-padding) tokens per
   second of forward + backward + optimizer step.
2. **Incremental refresh vs full retrain** (wall time): a corpus of N units; the full retrain
   trains all of them, the incremental refresh trains 1 % new units plus the replay sample and
   anchors, with the service's step policy (MIN_STEPS, MIN_STEPS_PER_EPOCH, MAX_EPOCHS, the replay
   floor). Training wall time of each (tiny-random with --quick on CPU).
3. **Knowledge** on the sample company (`connectors/sandbox/company.py`): for each team, qa
   examples (question → answer) and cpt examples (the statement) from its facts, an eval set of
   the facts' `eval_question`s, and `training.service.refresh_adapter` end to end (SQLite, a
   temporary data dir). Team QA match before → after, forgetting probe before → after, the
   cross-team leakage matrix; then a second refresh after new facts arrive, continuing from the
   first version.
4. **Fused projections** (`--parts fusion`, tokens/s): `training.fusion` against the separate
   layers, steps alternating fused / unfused in one recipe, per step size and compiled or not.

    .venv/bin/python benchmarks/bench_training.py --quick          # CPU, a few minutes
    .venv/bin/python benchmarks/bench_training.py --device cuda    # all teams, larger corpus
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TACIT_MODELS_DIR", str(ROOT / ".tacit" / "models"))
os.environ.setdefault("TACIT_SECRET_KEY", "ZmRlYWRiZWVmZGVhZGJlZWZkZWFkYmVlZmRlYWRiZWU=")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from connectors.sandbox.company import FACTS, Fact  # noqa: E402
from training.packing import IGNORE, Seq, Unit, padded_waste_of_batches, plan_epoch  # noqa: E402
from training.selection import MIN_REPLAY, render, replay_count  # noqa: E402


def say(text: str = "") -> None:
    print(text, flush=True)


# --------------------------------------------------------------------------- data
def fact_units(tok: Any, facts: list[Fact], seq_len: int = 512) -> list[Unit]:
    """qa (question → answer), qa (question → statement), cpt (statement), cpt (the topic's page)."""
    units: list[Unit] = []
    pages: dict[tuple[str, str], list[str]] = {}
    for f in facts:
        units += render("qa", {"question": f.question, "answer": f.answer}, tok, seq_len)
        units += render("qa", {"question": f.question, "answer": f.statement}, tok, seq_len)
        units += render("cpt", {"text": f.statement}, tok, seq_len)
        pages.setdefault((f.team, f.topic), []).append(f.statement)
    for (_, topic), statements in pages.items():
        units += render("cpt", {"text": f"# {topic}\n\n" + "\n".join(f"- {s}" for s in statements)}, tok, seq_len)
    return units


def corpus(tok: Any, n: int) -> list[Unit]:
    """n distinct units: the fact units, renumbered until there are enough."""
    base = fact_units(tok, FACTS)
    units: list[Unit] = []
    i = 0
    while len(units) < n:
        f = FACTS[i % len(FACTS)]
        k = i // len(FACTS)
        units += render("qa", {"question": f"{f.question} (ticket {k})", "answer": f.statement}, tok, 512)
        units += render("cpt", {"text": f"Note {k}: {f.statement}"}, tok, 512)
        i += 1
    return (base + units)[:n]


# --------------------------------------------------------------------------- 0. Tacit vs TRL
#: Dense bf16 peak FLOP/s of the GPUs this benchmark knows (for the model FLOPs utilisation).
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "B200": 2250e12}


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


class _PeakRSS:
    """The largest resident set size seen while active (sampled every 20 ms), in bytes."""

    def __init__(self) -> None:
        import threading

        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def now() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.now())

    def __enter__(self) -> _PeakRSS:
        self.peak = self.now()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class _Meter:
    """Per trainer: seconds and tokens of each step, its loss, and the step's peak memory above
    what was resident before it (CUDA: allocated by torch; CPU: the process's resident set)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: list[float] = []
        self.tokens: list[int] = []
        self.losses: list[float] = []
        self.peak_extra = 0
        self._start = 0.0
        self._base = 0
        self._rss: _PeakRSS | None = None

    def begin(self) -> None:
        _sync(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            self._rss = _PeakRSS().__enter__()
            self._base = self._rss.peak
        self._start = time.perf_counter()

    def end(self, tokens: int) -> None:
        _sync(self.device)
        self.seconds.append(time.perf_counter() - self._start)
        self.tokens.append(tokens)
        if self.device.type == "cuda":
            extra = torch.cuda.max_memory_allocated(self.device) - self._base
        else:
            assert self._rss is not None
            self._rss.__exit__()
            extra = self._rss.peak - self._base
        self.peak_extra = max(self.peak_extra, extra)

    def figures(self, skip: int) -> dict[str, Any]:
        """tokens/s over the steps after the first `skip` (warm-up: allocator, kernels)."""
        sec, tok = sum(self.seconds[skip:]), sum(self.tokens[skip:])
        return {"steps": len(self.seconds), "tokens": sum(self.tokens), "train_s": round(sum(self.seconds), 2),
                "tokens_per_s": round(tok / sec, 1) if sec else None,
                "peak_step_memory_mb": round(self.peak_extra / 2**20, 1)}


def loss_at_tokens(tokens: list[int], losses: list[float], marks: list[int], window: int = 3) -> list[float | None]:
    """The training loss (mean of the `window` steps ending there) at each cumulative token count."""
    out: list[float | None] = []
    seen = 0
    cumulative = []
    for n in tokens:
        seen += n
        cumulative.append(seen)
    for mark in marks:
        i = next((k for k, c in enumerate(cumulative) if c >= mark), None)
        out.append(None if i is None else round(sum(losses[max(0, i - window + 1): i + 1]) / len(losses[max(0, i - window + 1): i + 1]), 4))
    return out


def trl_dataset(seqs: list[Seq]) -> Any:
    """The same token sequences for TRL: input ids and unshifted labels (the model shifts them)."""
    from datasets import Dataset

    rows = []
    for s in seqs:
        labels = [IGNORE] + [t if label != IGNORE else IGNORE for t, label in zip(s.input_ids[1:], s.labels[:-1], strict=True)]
        rows.append({"input_ids": s.input_ids, "labels": labels})
    return Dataset.from_list(rows)


def bench_vs_trl(model_name: str, device: torch.device, bf16: bool, n_steps: int, step_tokens: int = 1024,
                 lr: float = 1e-3) -> dict[str, Any]:
    """Tacit's recipe and TRL's SFTTrainer (LoRA r16/alpha 32 on the same modules, padding-free
    best-fit packing into rows of `step_tokens`, the same learning rate, warm-up, cosine decay,
    clipping, bf16 autocast where the device has it, no gradient checkpointing on either side) on
    the sample company's examples, interleaved step by step in one process: each TRL step is
    followed by one Tacit step, so load from anything else on the machine hits both alike."""
    import transformers
    from trl import SFTConfig, SFTTrainer

    from training.base_models import load_model, load_tokenizer
    from training.evaluate import QAItem, qa_metrics
    from training.recipe import LoRARecipe, RecipeConfig, lora_config

    tok = load_tokenizer(model_name)
    units = fact_units(tok, FACTS)
    seqs = [s for u in units for s in u.seqs]
    with tempfile.TemporaryDirectory() as tmp:
        recipe = LoRARecipe(RecipeConfig(base_model=model_name, output_dir=Path(tmp) / "tacit", learning_rate=lr,
                                         epochs=1, min_steps=n_steps, max_epochs=100, max_steps=n_steps,
                                         step_tokens=step_tokens, seq_len=512, checkpoint_every=0,
                                         device=str(device), bf16=bf16, seed=0))
        torch.manual_seed(0)
        recipe.setup(units, tokenizer=tok)
        shape = recipe.summary()
        tacit, trl = _Meter(device), _Meter(device)

        class Interleave(transformers.TrainerCallback):
            def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                trl.begin()

            def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                trl.end(counted.pop() if counted else 0)
                if recipe.step < len(recipe.plan):
                    n = sum(len(s) for i in recipe.plan[recipe.step] for s in recipe.units[i].seqs)
                    tacit.begin()
                    tacit.losses.append(recipe.train_step())
                    tacit.end(n)

            def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
                if logs and "loss" in logs:
                    trl.losses.append(float(logs["loss"]))

        counted: list[int] = []

        class CountingSFT(SFTTrainer):  # type: ignore[misc]
            def training_step(self, model: Any, inputs: Any, *args: Any) -> Any:
                counted.append(int(inputs["input_ids"].numel()))
                return super().training_step(model, inputs, *args)

        torch.manual_seed(0)
        base = load_model(model_name)
        args = SFTConfig(output_dir=str(Path(tmp) / "trl"), max_steps=n_steps, per_device_train_batch_size=1,
                         packing=True, packing_strategy="bfd", padding_free=True, max_length=step_tokens,
                         learning_rate=lr, lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr_rate": 0.1},
                         warmup_steps=0.1, weight_decay=0.0,
                         max_grad_norm=1.0, logging_steps=1, save_strategy="no", report_to=[], bf16=bf16,
                         use_cpu=device.type == "cpu", gradient_checkpointing=False, seed=0,
                         dataloader_num_workers=0, disable_tqdm=True, num_train_epochs=100)
        trainer = CountingSFT(model=base, args=args, train_dataset=trl_dataset(seqs), processing_class=tok,
                              peft_config=lora_config(16, 32), callbacks=[Interleave()])
        trainer.remove_callback(transformers.PrinterCallback)
        wall = time.perf_counter()
        with recipe.step_blocks():  # as `recipe.train()` runs them (fused, compiled where that pays)
            trainer.train()
            wall = time.perf_counter() - wall
            while recipe.step < len(recipe.plan):  # if TRL ran fewer steps, Tacit finishes its plan alone
                n = sum(len(s) for i in recipe.plan[recipe.step] for s in recipe.units[i].seqs)
                tacit.begin()
                tacit.losses.append(recipe.train_step())
                tacit.end(n)

        # Evaluation, the same code for both models: the team eval questions (greedy answers, batched)
        # and the log-likelihood of their answers.
        items = [QAItem(question=f.eval_question, answer=f.answer) for f in FACTS if f.team == "platform"]
        evals: dict[str, Any] = {}
        # Warm-up with the same shapes (oneDNN and CUDA kernels are set up per shape on first use).
        qa_metrics(recipe.model.eval(), tok, items, device)
        for name, model in (("tacit", recipe.model), ("trl", trainer.model)):
            model.eval()
            start = time.perf_counter()
            metrics = qa_metrics(model, tok, items, device)
            evals[name] = {"eval_s": round(time.perf_counter() - start, 2), "match": metrics["match"],
                           "answer_logprob": metrics["answer_logprob"], "answers": metrics["answers"]}
        # Batched against one question at a time, on the Tacit model: same answers, less time.
        from training.evaluate import generate_answers

        start = time.perf_counter()
        one_by_one = generate_answers(recipe.model, tok, [i.question for i in items], device, batch_size=1)
        single_s = time.perf_counter() - start
        start = time.perf_counter()
        batched = generate_answers(recipe.model, tok, [i.question for i in items], device, batch_size=len(items))
        batched_s = time.perf_counter() - start

    total = min(sum(tacit.tokens), sum(trl.tokens))
    marks = [round(total * k / 4) for k in (1, 2, 3, 4)]
    out: dict[str, Any] = {"model": model_name, "device": str(device), "bf16": bf16, "step_tokens": step_tokens,
                           "threads": torch.get_num_threads(), "trl": trl.figures(1), "tacit": tacit.figures(1),
                           "tacit_shape": {k: shape[k] for k in ("micro_tokens", "row_tokens", "gradient_checkpointing",
                                                                 "bf16_weights", "compiled")},
                           "trl_wall_incl_interleaved_s": round(wall, 2), "loss_marks_tokens": marks,
                           "trl_loss_at": loss_at_tokens(trl.tokens, trl.losses, marks),
                           "tacit_loss_at": loss_at_tokens(tacit.tokens, tacit.losses, marks),
                           "eval": {k: {kk: vv for kk, vv in v.items() if kk != "answers"} for k, v in evals.items()},
                           "eval_batched_s": round(batched_s, 2), "eval_one_by_one_s": round(single_s, 2),
                           "eval_batched_identical": batched == one_by_one, "eval_questions": len(items)}
    for name in ("tacit", "trl"):
        out[name]["refresh_s"] = round(out[name]["train_s"] + evals[name]["eval_s"], 2)
    params = sum(p.numel() for n, p in recipe.model.named_parameters() if "lora_" not in n)
    peak = peak_flops(device)
    for name in ("tacit", "trl"):
        tps = out[name]["tokens_per_s"]
        out[name]["mfu"] = round(6 * params * tps / peak, 4) if peak and tps else None
    out["base_params"] = params
    out["speedup_tokens_per_s"] = round(out["tacit"]["tokens_per_s"] / out["trl"]["tokens_per_s"], 2)
    out["speedup_refresh"] = round(out["trl"]["refresh_s"] / out["tacit"]["refresh_s"], 2)
    return out


# --------------------------------------------------------------------------- 1. packing
def lora_model(name: str, device: torch.device) -> Any:
    from peft import get_peft_model

    from training.base_models import load_model
    from training.recipe import lora_config

    torch.manual_seed(0)
    model = load_model(name)
    model.config.use_cache = False
    return get_peft_model(model, lora_config(16, 32)).to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_packed(model: Any, steps: list[list[Seq]], device: torch.device, bf16: bool) -> float:
    from training.modeling import forward_logprobs
    from training.packing import pack

    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    _sync(device)
    start = time.perf_counter()
    for seqs in steps:
        logp, _, _ = forward_logprobs(model, pack(seqs), device, bf16)
        (-logp.mean()).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    _sync(device)
    return time.perf_counter() - start


def run_padded(model: Any, steps: list[list[Seq]], device: torch.device, bf16: bool, pad: int) -> float:
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    _sync(device)
    start = time.perf_counter()
    for seqs in steps:
        width = max(len(s) for s in seqs)
        ids = torch.tensor([s.input_ids + [pad] * (width - len(s)) for s in seqs], device=device)
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=device)
        labels = torch.tensor([s.labels + [IGNORE] * (width - len(s)) for s in seqs], device=device)
        keep = labels != IGNORE  # logits at trained positions only, as in the packed recipe
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(input_ids=ids, attention_mask=mask, use_cache=False, logits_to_keep=keep).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels[keep])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    _sync(device)
    return time.perf_counter() - start


def bench_packing(model_name: str, device: torch.device, bf16: bool, step_tokens: int, n_steps: int) -> dict[str, Any]:
    from training.base_models import load_tokenizer

    tok = load_tokenizer(model_name)
    units = fact_units(tok, FACTS)
    plan = plan_epoch(units, step_tokens, seed=0, epoch=0)
    while len(plan) < n_steps + 1:
        plan += plan_epoch(units, step_tokens, seed=0, epoch=len(plan))
    steps = [[s for i in step for s in units[i].seqs] for step in plan[: n_steps + 1]]
    real = sum(len(s) for step in steps[1:] for s in step)
    result: dict[str, Any] = {"model": model_name, "device": str(device), "steps": n_steps, "step_tokens": step_tokens,
                              "real_tokens": real}
    # Warm up once each (allocator, kernels), then time the same steps for both layouts.
    model = lora_model(model_name, device)
    run_packed(model, steps[:1], device, bf16)
    packed_s = run_packed(model, steps[1:], device, bf16)
    model = lora_model(model_name, device)
    run_padded(model, steps[:1], device, bf16, tok.pad_token_id)
    padded_s = run_padded(model, steps[1:], device, bf16, tok.pad_token_id)
    result.update(packed_tokens_per_s=round(real / packed_s, 1), padded_tokens_per_s=round(real / padded_s, 1),
                  speedup=round(padded_s / packed_s, 2), packed_waste_pct=0.0,
                  padded_waste_pct=round(padded_waste_of_batches(steps[1:]), 2))
    return result


# --------------------------------------------------------------------------- 2. incremental vs full
def bench_incremental(model_name: str, device: str, n_units: int, new_share: float = 0.01) -> dict[str, Any]:
    from training import service
    from training.base_models import load_tokenizer, models_dir, weight_hash
    from training.recipe import LoRARecipe, RecipeConfig

    tok = load_tokenizer(model_name)
    units = corpus(tok, n_units)
    n_new = max(1, math.ceil(new_share * n_units))
    n_replay = min(n_units - n_new, max(replay_count(n_new, 0.15), MIN_REPLAY))
    common = {"base_model": model_name, "learning_rate": 1e-3, "epochs": 3, "step_tokens": 1024, "seq_len": 512,
              "min_steps": service.MIN_STEPS, "min_steps_per_epoch": service.MIN_STEPS_PER_EPOCH,
              "min_step_tokens": service.MIN_STEP_TOKENS,
              "max_epochs": service.MAX_EPOCHS, "anchor_ratio": service.ANCHOR_RATIO,
              "anchor_cache": models_dir() / "anchors", "base_hash": weight_hash(model_name), "checkpoint_every": 0,
              "device": device}
    out: dict[str, Any] = {"model": model_name, "units": n_units, "new_units": n_new, "replayed_units": n_replay}
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in (("full", units), ("incremental", units[-n_new:] + units[:n_replay])):
            recipe = LoRARecipe(RecipeConfig(output_dir=Path(tmp) / name, **common))
            start = time.perf_counter()
            recipe.setup(data, tokenizer=tok)
            summary = recipe.train()
            out[name] = {"wall_s": round(time.perf_counter() - start, 2), "steps": summary["steps"],
                         "epochs": summary["epochs"], "tokens": summary["tokens"]}
            recipe.cleanup()
    out["speedup"] = round(out["full"]["wall_s"] / out["incremental"]["wall_s"], 2)
    return out


# --------------------------------------------------------------------------- 3. knowledge
def bench_knowledge(model_name: str, teams: list[str], second_round: list[str], hold_back: int,
                    device: str) -> dict[str, Any]:
    import hashlib

    from db import models
    from tacit.config import load_config
    from tacit.context import Context
    from training import service

    results: dict[str, Any] = {"model": model_name, "device": device, "teams": {}}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        body = ""
        for team in ("platform", "support", "research"):
            facts = [f for f in FACTS if f.team == team]
            (root / f"{team}-eval.jsonl").write_text(
                "".join(json.dumps({"question": f.eval_question, "answer": f.answer}) + "\n" for f in facts))
            # The sample is small: every new fact is worth a refresh (min_new_tokens = 0).
            body += (f'[[teams]]\nname = "{team}"\nbase_model = "{model_name}"\neval_set = "{team}-eval.jsonl"\n'
                     '[teams.training]\nmin_new_tokens = 0\n\n')
        (root / "tacit.toml").write_text(f'[storage]\ndatabase_url = "sqlite:///{root}/tacit.db"\n'
                                         f'data_dir = ".tacit"\n\n{body}')
        ctx = Context(load_config(root / "tacit.toml"))
        if device != "auto":
            os.environ["TACIT_DEVICE"] = device

        def add(team: str, facts: list[Fact]) -> None:
            with ctx.session() as session:
                team_row = ctx.team_row(session, team)
                for f in facts:
                    for kind, payload in (("qa", {"question": f.question, "answer": f.answer}),
                                          ("cpt", {"text": f.statement})):
                        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
                        session.add(models.Example(team_id=team_row.id, kind=kind, payload=payload,
                                                   content_hash=digest, token_count=len(json.dumps(payload)) // 4))

        for team in teams:
            facts = [f for f in FACTS if f.team == team]
            later = facts[-hold_back:] if team in second_round and hold_back else []
            add(team, [f for f in facts if f not in later])
            start = time.perf_counter()
            first = service.refresh_adapter(ctx, team)
            first["wall_s"] = round(time.perf_counter() - start, 1)
            results["teams"][team] = {"first": first}
            say(f"  {team} v{first['version']}: {first['status']} in {first['wall_s']} s — {first['reason']}")
            if later:
                add(team, later)
                start = time.perf_counter()
                second = service.refresh_adapter(ctx, team)
                second["wall_s"] = round(time.perf_counter() - start, 1)
                results["teams"][team]["second"] = second
                say(f"  {team} v{second['version']} (continued from v{second['continued_from']}): "
                    f"{second['status']} in {second['wall_s']} s — {second['reason']}")
    return results


# --------------------------------------------------------------------------- report
def bench_fusion(model_name: str, device: torch.device, bf16: bool, n_steps: int,
                 shapes: tuple[tuple[int, bool], ...] = ((256, False), (1024, False), (256, True))) -> list[dict[str, Any]]:
    """Fused projections (`training.fusion`) against the separate layers, per (step tokens, compiled):
    one recipe on the sample company's facts, its steps alternating fused / unfused in one process,
    so the anchor (the unfused steps) is measured in the same run; the first four steps are warm-up."""
    from training.base_models import load_tokenizer
    from training.fusion import fused_projections
    from training.recipe import LoRARecipe, RecipeConfig

    tok = load_tokenizer(model_name)
    units = fact_units(tok, FACTS)
    results = []
    for step_tokens, compiled in shapes:
        with tempfile.TemporaryDirectory() as tmp:
            recipe = LoRARecipe(RecipeConfig(base_model=model_name, output_dir=Path(tmp), epochs=1, min_steps=n_steps + 4,
                                             max_epochs=1000, max_steps=n_steps + 4, step_tokens=step_tokens, seq_len=512,
                                             checkpoint_every=0, device=str(device), bf16=bf16, compile=compiled, fuse=False))
            recipe.setup(units, tokenizer=tok)
            seconds, tokens = {True: 0.0, False: 0.0}, {True: 0, False: 0}
            frozen = torch.bfloat16 if recipe._bf16_frozen_linears() else None  # as step_blocks fuses
            with recipe.step_blocks(), fused_projections(recipe.model, frozen):
                modules = [m for b in recipe.model.get_base_model().get_decoder().layers for m in (b.self_attn, b.mlp)]
                fused = {m: vars(m)["forward"] for m in modules if "forward" in vars(m)}
                for i in range(n_steps + 4):
                    on = i % 2 == 0
                    for module, forward in fused.items():
                        if on:
                            module.forward = forward
                        else:
                            vars(module).pop("forward", None)
                    n = sum(len(s) for j in recipe.plan[recipe.step] for s in recipe.units[j].seqs)
                    _sync(device)
                    start = time.perf_counter()
                    recipe.train_step()
                    _sync(device)
                    if i >= 4:
                        seconds[on] += time.perf_counter() - start
                        tokens[on] += n
                for module, forward in fused.items():
                    module.forward = forward
            rates = {on: tokens[on] / seconds[on] for on in (True, False)}
            results.append({"step_tokens": step_tokens, "compiled": compiled, "fused_blocks": len(fused) // 2,
                            "fused_tokens_per_s": round(rates[True], 1), "unfused_tokens_per_s": round(rates[False], 1),
                            "ratio": round(rates[True] / rates[False], 3), "steps_each": n_steps // 2})
    return results


def report_fusion(results: list[dict[str, Any]]) -> None:
    say("4. fused projections against separate layers (steps alternating in one process)")
    say("   step tokens  compiled  fused blocks  fused tok/s  unfused tok/s  ratio")
    for r in results:
        say(f"   {r['step_tokens']:11d}  {r['compiled']!s:8}  {r['fused_blocks']:12d}  {r['fused_tokens_per_s']:11.1f}"
            f"  {r['unfused_tokens_per_s']:13.1f}  x{r['ratio']:.3f}")


def report_trl(r: dict[str, Any]) -> None:
    say(f"\n0. Tacit vs TRL SFTTrainer ({r['model']}, {r['device']}, bf16 {r['bf16']}, {r['threads']} threads, "
        f"steps of <= {r['step_tokens']} tokens, interleaved step by step; Tacit rows {r['tacit_shape']})")
    say(f"   {'':<7}{'tokens/s':>10}{'train s':>9}{'eval s':>8}{'refresh s':>11}{'step mem MB':>13}{'MFU':>8}"
        f"{'QA match':>10}{'answer ll':>11}   loss at {r['loss_marks_tokens']} tokens")
    for name in ("tacit", "trl"):
        f, e = r[name], r["eval"][name]
        mfu = f"{f['mfu']:.3f}" if f["mfu"] is not None else "-"
        say(f"   {name:<7}{f['tokens_per_s']:>10}{f['train_s']:>9}{e['eval_s']:>8}{f['refresh_s']:>11}"
            f"{f['peak_step_memory_mb']:>13}{mfu:>8}{e['match']:>10.3f}{e['answer_logprob']:>11.3f}   "
            f"{r[name + '_loss_at']}")
    say(f"   Tacit / TRL: x{r['speedup_tokens_per_s']} tokens/s, x{r['speedup_refresh']} refresh wall time; "
        f"evaluation batched {r['eval_batched_s']} s vs one question at a time {r['eval_one_by_one_s']} s "
        f"({r['eval_questions']} questions, same answers: {r['eval_batched_identical']})")
    if r["tacit"]["mfu"] is None:
        say("   MFU: only on a GPU with a known bf16 peak")


def report(packing: dict[str, Any] | None, incremental: dict[str, Any] | None, knowledge: dict[str, Any] | None) -> None:
    if packing:
        p = packing
        say(f"\n1. Packing ({p['model']}, {p['device']}, {p['steps']} steps of <= {p['step_tokens']} tokens, "
            f"{p['real_tokens']} real tokens)")
        say(f"   packed {p['packed_tokens_per_s']} tok/s vs padded {p['padded_tokens_per_s']} tok/s "
            f"(x{p['speedup']}); padding waste {p['packed_waste_pct']} % packed vs {p['padded_waste_pct']} % padded")
    if incremental:
        i = incremental
        say(f"\n2. Incremental refresh vs full retrain ({i['model']}, {i['units']} units; "
            f"{i['new_units']} new + {i['replayed_units']} replayed)")
        say(f"   incremental {i['incremental']['wall_s']} s ({i['incremental']['steps']} steps, "
            f"{i['incremental']['tokens']} tokens) vs full {i['full']['wall_s']} s ({i['full']['steps']} steps, "
            f"{i['full']['tokens']} tokens): x{i['speedup']} faster")
    if knowledge:
        say(f"\n3. Knowledge on the sample company ({knowledge['model']})")
        say(f"   {'team':<10}{'version':>8}{'status':>10}{'QA before':>11}{'QA after':>10}{'log-lik':>20}"
            f"{'probe QA':>16}{'probe NLL':>18}{'forget':>8}{'train s':>9}")
        for team, runs in knowledge["teams"].items():
            for key in ("first", "second"):
                r = runs.get(key)
                if not r or "metrics" not in r:
                    if r:
                        say(f"   {team:<10}{'-':>8}{r['status']:>10}  {r.get('reason')}")
                    continue
                m = r["metrics"]
                say(f"   {team:<10}{r['version']:>8}{r['status']:>10}{m['qa_before']:>11.3f}{m['qa_after']:>10.3f}"
                    f"{m['qa_logprob_before']:>9.2f} -> {m['qa_logprob_after']:<7.2f}"
                    f"{m['probe_qa_before']:>7.3f} -> {m['probe_qa_after']:<6.3f}"
                    f"{m['probe_nll_before']:>8.3f} -> {m['probe_nll_after']:<7.3f}{m['forgetting']:>7.3f}"
                    f"{r['train']['wall_s']:>9.1f}")
        say("   leakage (match on the other team's eval set: candidate − base):")
        for team, runs in knowledge["teams"].items():
            m = runs["first"].get("metrics")
            if m:
                cells = ", ".join(f"{other} {leak['match_delta']:+.3f} (log-lik {leak['logprob_delta']:+.2f})"
                                  for other, leak in m["leakage"].items())
                say(f"   {team} adapter → {cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CPU-sized: fewer steps, units and teams")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--parts", default="trl,packing,incremental,knowledge")
    parser.add_argument("--steps", type=int, help="optimizer steps of the Tacit vs TRL part (12 on CPU, 300 on a GPU)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    hf_logging.disable_progress_bar()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    from training.recipe import bf16_default

    bf16 = bf16_default("auto", device)
    parts = set(args.parts.split(","))
    say(f"bench_training: model {args.model}, device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    packing = incremental = knowledge = versus = fusion = None
    if "trl" in parts:
        say("0. Tacit vs TRL SFTTrainer ...")
        versus = bench_vs_trl(args.model, device, bf16, args.steps or (12 if device.type == "cpu" else 300))
        report_trl(versus)
    if "packing" in parts:
        say("1. packing vs padding ...")
        packing = bench_packing(args.model, device, bf16, 1024, 4 if args.quick else 20)
        report(packing, None, None)
    if "incremental" in parts:
        say("2. incremental refresh vs full retrain ...")
        model = "tiny-random" if args.quick and device.type == "cpu" else args.model
        incremental = bench_incremental(model, str(device), 400 if args.quick else 1000)
        report(None, incremental, None)
    if "knowledge" in parts:
        say("3. knowledge on the sample company ...")
        teams = ["platform", "support"] if args.quick else ["platform", "support", "research"]
        second = ["platform"] if args.quick else teams
        knowledge = bench_knowledge(args.model, teams, second, 2, str(device))
        report(None, None, knowledge)
    if "fusion" in parts:
        say("4. fused projections ...")
        fusion = bench_fusion(args.model, device, bf16, 8 if args.quick else 40)
        report_fusion(fusion)
    if args.json:
        args.json.write_text(json.dumps({"trl": versus, "packing": packing, "incremental": incremental, "knowledge": knowledge,
                                         "fusion": fusion},
                                        indent=2, default=str))


if __name__ == "__main__":
    main()
