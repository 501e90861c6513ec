"""The LoRA training recipe: a torchtune-shaped class (`setup / train / save_checkpoint / cleanup`)
around a plain torch loop, so every step of a refresh can be read top to bottom.

* LoRA (PEFT) on every linear layer of the blocks (q, k, v, o, gate, up, down), r from the team's
  config and alpha = 2r by default, no `modules_to_save`, no DoRA, no rsLoRA: the format that
  vLLM and LoRAX hot-swap, identical across a team's versions.
* Continuation: `PeftModel.from_pretrained(base, parent, is_trainable=True)`, then an assertion
  that exactly the LoRA weights require grad (a known PEFT bug can make the wrong adapter
  trainable: https://github.com/huggingface/peft/issues/3580).
* Loss: token-mean cross entropy over the trained tokens of a step (`qa`/`chat` answers, all of
  `cpt`), plus the DPO loss (Rafailov et al. 2023) for preference pairs with the base model,
  adapter disabled, as the reference; the anchor term (`training.anchors`) and the
  context-distillation term (`training.distill`) match the base model's top-k distributions. A step's loss is normalised by the step's totals, so
  splitting it into smaller micro-batches (after a CUDA out-of-memory error) changes nothing.
* AdamW (fused where the device has it), linear warmup then cosine decay, re-warmed on every
  refresh; gradient clipping.
* Step shape (`choose_step_shape`): the tokens of an optimizer step are the configuration's, the
  same on every device, so a run converges the same per token anywhere; the device decides how a
  step is computed: micro-batch tokens from the memory available, gradient checkpointing only
  where a sequence's activations would not fit otherwise, packed rows no wider than `row_tokens`
  (attention over a packed row costs its width squared), weights in bfloat16 where it computes
  natively, torch threads within the CPUs this process may use. Sequences of a row that start
  with the same untrained prompt (the chat template's system prompt and user header) attend to
  one copy of it (`training.modeling.row_groups`): the same logits and gradients for fewer tokens.
  Projections that read the same input (q/k/v, gate/up) are computed as one product each in the
  steps (`training.fusion`); a long run on a bf16 CPU runs its steps through compiled decoder
  blocks (`should_compile`).
* Checkpoint: a plain dict (trainable weights, optimizer, scheduler, RNG states, data position,
  losses) every `checkpoint_every` steps under the adapter's folder; `setup` resumes from it, and
  a resumed run ends with the same weights and losses as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict

from training.anchors import anchor_answers, anchor_targets, anchor_units, reference_topk
from training.distill import distill_loss, own_sample_units
from training.fusion import fused_projections
from training.modeling import DEFAULT_ROW_TOKENS, forward_packed, sequence_logprobs
from training.packing import Seq, Unit, fingerprint, plan_epoch, split_micro

TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = 1


class TrainingError(RuntimeError):
    """A refresh that cannot run (bad adapter, no data, out of memory at the smallest micro-batch)."""


class RecipeConfig(BaseModel):
    """Everything one training run depends on (recorded with the adapter version)."""

    model_config = ConfigDict(extra="forbid")

    base_model: str
    data_dir: Path | None = None  # where converted base models live (see base_models.models_dir)
    output_dir: Path
    parent_adapter: Path | None = None  # continue from this adapter; None trains a fresh LoRA
    rank: int = 16
    alpha: int | None = None  # 2 * rank when unset
    dropout: float = 0.0
    learning_rate: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    epochs: int = 3
    min_steps: int = 0  # more epochs (up to max_epochs) until the run has this many steps
    min_steps_per_epoch: int = 0  # small data: smaller steps (down to min_step_tokens) for more updates
    min_step_tokens: int = 256
    max_epochs: int = 30
    max_steps: int | None = None
    step_tokens: int = 1024  # tokens of one optimizer step (one packed row)
    micro_tokens: int | None = None  # tokens per forward/backward; None: from the memory available
    row_tokens: int | None = None  # width of a packed row; None: the device's choice (choose_step_shape)
    seq_len: int = 512
    seed: int = 0
    dpo_beta: float = 0.1
    anchor_ratio: float = 0.0  # anchor tokens per team token (see training.anchors)
    anchor_weight: float = 1.0  # the anchor term's weight beside the team term (each token-mean)
    anchor_text: bool = False  # anchors also as plain text (see training.anchors.anchor_units)
    anchor_topk: int = 32  # anchors match the base model's top-k next-token distribution (0: its greedy tokens)
    anchor_cache: Path | None = None
    distill_weight: float = 1.0  # the context-distillation term's weight (each token-mean; see training.distill)
    distill_topk: int = 32
    distill_own_share: float = 0.0  # share of distilled questions also trained on the student's own answer
    base_hash: str = ""
    checkpoint_every: int = 25  # steps; 0 = never
    device: str = "auto"
    gradient_checkpointing: bool | None = None  # None: only where memory needs it (choose_step_shape)
    bf16: bool | None = None  # autocast to bfloat16; None: on with CUDA (see bf16_default)
    compile: bool | None = None  # torch.compile the decoder blocks for the steps; None: where it pays (should_compile)
    fuse: bool | None = None  # q/k/v and gate/up fused in the steps (training.fusion); None: in steps not compiled

    @property
    def lora_alpha(self) -> int:
        return self.alpha or 2 * self.rank

    def resume_key(self) -> dict[str, Any]:
        """Settings a checkpoint must agree with to be resumed."""
        keys = ("base_model", "rank", "alpha", "dropout", "learning_rate", "min_lr_ratio", "warmup_ratio",
                "weight_decay", "grad_clip", "epochs", "min_steps", "min_steps_per_epoch", "min_step_tokens",
                "max_epochs", "max_steps", "step_tokens",
                "seq_len", "seed", "dpo_beta", "anchor_ratio", "anchor_weight", "anchor_text", "anchor_topk", "base_hash",
                "distill_weight", "distill_topk", "distill_own_share")
        data = self.model_dump(include=set(keys))
        data["parent_adapter"] = str(self.parent_adapter) if self.parent_adapter else None
        return data


def bf16_default(precision: str, device: torch.device) -> bool:
    """`precision` "bf16" | "fp32" | "auto": bf16 autocast where the hardware computes in it
    natively (a CUDA GPU with bf16, or a CPU with AVX512-BF16/AMX, where it halves the step time
    of SmolLM2-135M), float32 elsewhere."""
    if precision in ("bf16", "fp32"):
        return precision == "bf16"
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


@dataclass(frozen=True)
class StepShape:
    """How one optimizer step is computed on a device (its tokens are the configuration's)."""

    micro_tokens: int  # tokens of one forward/backward (a step is split into micro-batches of this)
    row_tokens: int  # width of one packed row (a micro-batch is several rows)
    gradient_checkpointing: bool
    bf16_weights: bool  # the frozen base weights stored in bfloat16 (LoRA weights stay float32)
    threads: int  # torch intra-op threads (CPU)


#: CPU rows: on SmolLM2-135M with bf16 autocast (one thread, CPU time per step, the sample
#: company's data), 1024-token steps packed as rows of 256 tokens ran about 1.3x faster than as
#: one 1024-token row, whose block-diagonal attention is computed in full and mostly masked.
CPU_ROW_TOKENS = DEFAULT_ROW_TOKENS
#: CPU base weights in bfloat16 under bf16 autocast: measured no faster than float32 weights (within
#: 3 %), so they stay float32 there (no rounding of the frozen weights).
CPU_BF16_WEIGHTS = False
#: ... but under bf16 autocast the frozen linear weights of the blocks are held in bfloat16 as
#: well during a step, beside their float32 originals: autocast would round them to exactly those
#: values on every forward, so the step computes the same, without re-casting 100M weights each
#: time (on SmolLM2-135M, 2 cores, interleaved runs: steps 1.02-1.16x faster). The output layer's
#: weight too (about 3 % of a step to re-cast), though it is usually the embeddings' as well: only
#: the layer's parameter is swapped, so embeddings and norms stay float32, as does the residual stream.
CPU_BF16_FROZEN_LINEARS = True
#: Activation memory per token without gradient checkpointing, in units of hidden size × layers
#: × bytes per value (a Llama block keeps about this many values per token for its backward pass).
ACTIVATIONS_PER_HIDDEN = 24
MEMORY_SHARE = 0.6  # of the free memory, for activations (the rest: weights, optimizer, allocator slack)
#: CPU training steps run the decoder blocks compiled (`torch.compile`, inductor, dynamic shapes:
#: the blocks share one graph whatever the rows' width), which fuses the LoRA branches, casts, norms
#: and activations around the matrix products. SmolLM2-135M, bf16, 2 cores, the sample company's
#: platform data, interleaved with eager steps: x1.42 tokens/s (with the attention below); in the
#: demo's refreshes 0.71-0.80 s a step against 0.89-0.98 s (eager steps are fused now, x1.06-1.09 at
#: 256-token steps: training.fusion). Compiling costs about 28-30 s the first time on a machine, about
#: 3 s once its code is cached (`compile-cache` beside the converted models; the first step's time),
#: and once per process (later teams reuse it), so a run compiles only when its planned work (6 x
#: parameters x tokens) is at least COMPILE_MIN_FLOP, about two minutes of uncompiled steps there.
#: On CUDA it stays off until measured there (`compile = "on"` in a team's training forces it).
COMPILE_MIN_FLOP = 3e13


def available_memory(device: torch.device) -> int:
    """Free bytes on `device`: the GPU's free memory, or the host's MemAvailable."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


def cpu_threads() -> int:
    """The CPUs this process may run on (a container's or taskset's share), at most torch's default."""
    try:
        allowed = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        allowed = os.cpu_count() or 1
    return max(1, min(allowed, torch.get_num_threads()))


def choose_step_shape(device: torch.device, model_config: Any, *, step_tokens: int, seq_len: int, bf16: bool,
                      free_bytes: int | None = None, row_tokens: int | None = None,
                      micro_tokens: int | None = None, gradient_checkpointing: bool | None = None) -> StepShape:
    """The step shape for `device` from the memory available (`free_bytes`, measured when None).

    A token's activations cost about ACTIVATIONS_PER_HIDDEN × hidden × layers values plus, where
    it is trained, its logits and their gradient (2 × vocabulary floats). The micro-batch is the
    whole step when that fits in MEMORY_SHARE of the free memory, else as many tokens as fit, and
    gradient checkpointing (which recomputes every block in the backward pass, about a third more
    work) comes on only when not even one longest sequence fits. Explicit arguments win.
    """
    cuda = device.type == "cuda"
    free = available_memory(device) if free_bytes is None else free_bytes
    value_bytes = 2 if bf16 else 4
    hidden = int(getattr(model_config, "hidden_size", 1024))
    layers = int(getattr(model_config, "num_hidden_layers", 24))
    vocab = int(getattr(model_config, "vocab_size", 32000))
    per_token = ACTIVATIONS_PER_HIDDEN * hidden * layers * value_bytes + 2 * vocab * 4
    fit = int(MEMORY_SHARE * free // per_token)
    ckpt = gradient_checkpointing if gradient_checkpointing is not None else fit < seq_len
    if ckpt:  # only the block inputs stay, plus one block's activations and the logits
        fit = int(MEMORY_SHARE * free // (hidden * layers * value_bytes + 2 * vocab * 4))
    micro = micro_tokens or max(seq_len, min(step_tokens, fit))
    row = row_tokens or (min(seq_len, CPU_ROW_TOKENS) if not cuda else seq_len)
    return StepShape(micro_tokens=micro, row_tokens=row, gradient_checkpointing=ckpt,
                     bf16_weights=bf16, threads=cpu_threads() if not cuda else torch.get_num_threads())


def should_compile(device: torch.device, *, bf16: bool, gradient_checkpointing: bool, params: int,
                   planned_tokens: int) -> bool:
    """Whether a run's steps compile the decoder blocks by default (see COMPILE_MIN_FLOP)."""
    return (device.type == "cpu" and bf16 and not gradient_checkpointing
            and 6 * params * planned_tokens >= COMPILE_MIN_FLOP)


def _compile_cache_beside(models: Path) -> None:
    """Keep compiled code in `models`/compile-cache, beside the converted base models (a volume that
    outlives a container's /tmp), so a later process (a restarted worker, the next refresh) loads it
    in seconds; a TORCHINDUCTOR_CACHE_DIR set to anything but torch's default is left alone. (torch
    writes its default into the environment the first time it looks, e.g. on importing peft.)"""
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    except ImportError:  # another torch layout: its own default stays
        return
    current = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if current is None or os.path.abspath(current) == os.path.abspath(default_cache_dir()):
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(models / "compile-cache")


def make_optimizer(params: list[torch.nn.Parameter], device: torch.device, **kwargs: Any) -> torch.optim.Optimizer:
    """AdamW, fused into one kernel where the device has it, else the multi-tensor (foreach) one."""
    try:
        return torch.optim.AdamW(params, fused=True, **kwargs)
    except (RuntimeError, ValueError):
        return torch.optim.AdamW(params, foreach=device.type in ("cuda", "cpu"), **kwargs)


def resolve_device(name: str) -> torch.device:
    """`auto`: $TACIT_DEVICE if set (e.g. to pin a worker to "cuda:1"), else CUDA when available."""
    if name == "auto":
        if os.environ.get("TACIT_DEVICE"):
            return torch.device(os.environ["TACIT_DEVICE"])
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def lora_config(rank: int, alpha: int, dropout: float = 0.0) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(TARGET_MODULES),
                      bias="none", task_type="CAUSAL_LM", use_dora=False, use_rslora=False)


def assert_only_lora_trainable(model: Any, adapter_name: str = "default") -> int:
    """Exactly the LoRA A/B weights of `adapter_name` require grad, all of them (peft #3580)."""
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    lora = {n for n, _ in model.named_parameters()
            if (".lora_A." in n or ".lora_B." in n) and n.endswith(f".{adapter_name}.weight")}
    if not lora:
        raise TrainingError("the adapter has no LoRA weights")
    if trainable != lora:
        extra = sorted(trainable - lora)[:3]
        frozen = sorted(lora - trainable)[:3]
        raise TrainingError(f"wrong trainable parameters after loading the adapter: extra {extra}, frozen {frozen}")
    return sum(p.numel() for n, p in model.named_parameters() if n in lora)


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class LoRARecipe:
    """One training run of one adapter version: `setup(units)`, `train()`, `save_adapter()`, `cleanup()`."""

    def __init__(self, cfg: RecipeConfig, *, progress: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.cfg = cfg
        self.progress = progress
        self.device = resolve_device(cfg.device)
        cuda = self.device.type == "cuda"
        self.bf16 = cfg.bf16 if cfg.bf16 is not None else (cuda and bf16_default("auto", self.device))
        self.grad_ckpt = bool(cfg.gradient_checkpointing)
        self.step_tokens = cfg.step_tokens
        self.micro_tokens = cfg.micro_tokens or cfg.step_tokens
        self.row_tokens: int | None = cfg.row_tokens
        self.shape: StepShape | None = None
        self.model: Any = None
        self.units: list[Unit] = []
        self.plan: list[list[int]] = []
        self.step = 0
        self.losses: list[float] = []
        self.tokens_seen = 0
        self.trainable_params = 0
        self.resumed_from: int | None = None
        self.wall = 0.0
        self.epochs_run = 0
        self._bf16_copies: list[tuple[torch.nn.Module, torch.nn.Parameter, torch.Tensor, torch.nn.Parameter]] | None = None
        self.compiled = False
        self.fused = False
        self.fused_layers: frozenset[torch.nn.Module] = frozenset()  # frozen layers computed fused (step_blocks)

    # ------------------------------------------------------------------ setup
    def setup(self, units: Sequence[Unit], base: Any = None, tokenizer: Any = None) -> None:
        """Load the model (or take `base`), attach the LoRA, plan the data and resume if possible."""
        from peft import PeftModel, get_peft_model

        from training import base_models

        cfg = self.cfg
        if not units:
            raise TrainingError("nothing to train on")
        self.units = list(units)
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        if base is None:
            config = base_models.load_model_config(cfg.base_model, cfg.data_dir)
            self.shape = self._step_shape(config)
            base = base_models.load_model(cfg.base_model, cfg.data_dir,
                                          dtype=torch.bfloat16 if self.shape.bf16_weights else torch.float32)
        else:
            self.shape = self._step_shape(base.config)
        if self.device.type == "cpu":
            torch.set_num_threads(self.shape.threads)
        self.grad_ckpt = self.shape.gradient_checkpointing
        self.row_tokens = self.shape.row_tokens
        base.config.use_cache = False
        if self.grad_ckpt:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if cfg.parent_adapter is not None:
            model = PeftModel.from_pretrained(base, str(cfg.parent_adapter), is_trainable=True)
            loaded = model.peft_config["default"]
            if (loaded.r, loaded.lora_alpha) != (cfg.rank, cfg.lora_alpha) or set(loaded.target_modules) != set(TARGET_MODULES):
                raise TrainingError(f"the previous adapter has r={loaded.r}, alpha={loaded.lora_alpha}; "
                                    f"the configuration asks for r={cfg.rank}, alpha={cfg.lora_alpha}: retrain clean")
        else:
            model = get_peft_model(base, lora_config(cfg.rank, cfg.lora_alpha, cfg.dropout))
        self.trainable_params = assert_only_lora_trainable(model)
        self.model = model.to(self.device)
        self.model.train()
        if cfg.anchor_ratio > 0:

            tokenizer = tokenizer or base_models.load_tokenizer(cfg.base_model, cfg.data_dir)
            rows = anchor_answers(self.model, tokenizer, self.device, cfg.base_hash or cfg.base_model, cfg.anchor_cache)
            # A small run still takes min_steps steps, repeating its few examples many times:
            # anchors are sized for the tokens it will train, not for its data alone, or a
            # handful of new examples pulls the whole model towards them unopposed.
            team_tokens = max(sum(u.tokens for u in units), cfg.min_steps * cfg.min_step_tokens)
            self.units += anchor_units(rows, tokenizer, cfg.seq_len, round(cfg.anchor_ratio * team_tokens), cfg.seed,
                                       text=cfg.anchor_text)
        if cfg.distill_own_share > 0 and any(u.kind == "distill" for u in self.units):
            tokenizer = tokenizer or base_models.load_tokenizer(cfg.base_model, cfg.data_dir)
            self.units += own_sample_units(self.model, tokenizer, self.units, self.device,
                                           share=cfg.distill_own_share, seed=cfg.seed)
        self._reference_logprobs()
        self._anchor_targets()
        self._distill_targets()

        epoch_tokens = sum(u.tokens for u in self.units)
        self.step_tokens = cfg.step_tokens
        if cfg.min_steps_per_epoch and epoch_tokens < cfg.step_tokens * cfg.min_steps_per_epoch:
            longest = max(u.tokens for u in self.units)
            self.step_tokens = max(longest, cfg.min_step_tokens, math.ceil(epoch_tokens / cfg.min_steps_per_epoch))
            self.step_tokens = min(self.step_tokens, cfg.step_tokens)
        self.micro_tokens = min(self.shape.micro_tokens, self.step_tokens)
        self.plan = []
        epoch = 0
        while epoch < cfg.epochs or (len(self.plan) < cfg.min_steps and epoch < max(cfg.max_epochs, cfg.epochs)):
            self.plan += plan_epoch(self.units, self.step_tokens, cfg.seed, epoch)
            epoch += 1
        if epoch > cfg.epochs:  # epochs added only to reach min_steps: stop once it is reached
            self.plan = self.plan[: cfg.min_steps]
        self.epochs_run = epoch
        self.plan = self.plan[: cfg.max_steps or None]
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(self.params, self.device, lr=cfg.learning_rate,
                                        weight_decay=cfg.weight_decay, betas=(0.9, 0.999), eps=1e-8)
        total = len(self.plan)
        warmup = max(1, round(cfg.warmup_ratio * total)) if total > 1 else 0

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            progress = (step - warmup) / max(1, total - warmup)
            return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        self.fingerprint = fingerprint(self.units)
        self._maybe_resume()
        planned = sum(len(s) for step in self.plan for i in step for s in self.units[i].seqs)  # the whole run's: a resumed run decides alike
        self.compiled = cfg.compile if cfg.compile is not None else should_compile(
            self.device, bf16=self.bf16, gradient_checkpointing=self.grad_ckpt,
            params=sum(p.numel() for p in self.model.parameters()), planned_tokens=planned)
        # Fused projections: eager steps; compiled ones gained nothing on the demo's data (training.fusion).
        self.fused = cfg.fuse if cfg.fuse is not None else not self.compiled

    def _step_shape(self, model_config: Any) -> StepShape:
        cfg = self.cfg
        bf16_weights = self.bf16 and (self.device.type == "cuda" or CPU_BF16_WEIGHTS)
        shape = choose_step_shape(self.device, model_config, step_tokens=cfg.step_tokens, seq_len=cfg.seq_len,
                                  bf16=bf16_weights, row_tokens=cfg.row_tokens, micro_tokens=cfg.micro_tokens,
                                  gradient_checkpointing=cfg.gradient_checkpointing)
        return StepShape(**(asdict(shape) | {"bf16_weights": bf16_weights}))

    def _reference_logprobs(self) -> None:
        """DPO reference: the base model (adapter disabled), computed once; it never changes."""
        pairs = [s for u in self.units for s in u.seqs if s.role in ("chosen", "rejected")]
        if not pairs:
            return
        self.model.eval()
        with self.model.disable_adapter():
            scores = sequence_logprobs(self.model, pairs, self.device, self.micro_tokens, self.bf16, self.row_tokens)
        for seq, (logp, _) in zip(pairs, scores, strict=True):
            seq.ref_logp = logp
        self.model.train()

    def _anchor_targets(self) -> None:
        """Anchors are distilled: at each answer position the adapter matches the base model's
        next-token distribution (its top-k, renormalised), not only its greedy token, which ties
        the adapter to the base model far more closely outside the team's domain."""

        anchors = list({id(s): s for u in self.units for s in u.seqs if s.role == "anchor"}.values())
        if anchors and self.cfg.anchor_topk > 0:
            anchor_targets(self.model, anchors, self.device, topk=self.cfg.anchor_topk, micro_tokens=self.micro_tokens,
                           bf16=self.bf16, weight_hash=self.cfg.base_hash or self.cfg.base_model,
                           cache_dir=self.cfg.anchor_cache)

    def _distill_targets(self) -> None:
        """Context distillation: the base model's top-k next-token distribution at each answer
        position of a distilled sequence, read with the passage in its prompt (`Seq.teacher`)."""
        seqs = list({id(s): s for u in self.units for s in u.seqs if s.role == "distill"}.values())
        if seqs:
            reference_topk(self.model, seqs, self.device, topk=self.cfg.distill_topk, micro_tokens=self.micro_tokens,
                           bf16=self.bf16, weight_hash=self.cfg.base_hash or self.cfg.base_model,
                           cache_dir=self.cfg.anchor_cache, name="distill-targets", renormalise=False)

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self) -> Path:
        return self.cfg.output_dir / CHECKPOINT

    def save_checkpoint(self) -> Path:
        """Write the resume state as one plain dict (atomically: temp file, then rename)."""
        state = {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "weights": {n: p.detach().cpu().clone() for n, p in self.model.named_parameters() if p.requires_grad},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": _rng_state(),
            "data": {"fingerprint": self.fingerprint, "plan": self.plan, "position": self.step},
            "losses": list(self.losses),
            "tokens_seen": self.tokens_seen,
            "micro_tokens": self.micro_tokens,
            "row_tokens": self.row_tokens,
            "config": self.cfg.resume_key(),
        }
        self.cfg.output_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.checkpoint_path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.checkpoint_path)
        return self.checkpoint_path

    def _maybe_resume(self) -> None:
        path = self.checkpoint_path
        if not path.exists():
            return
        state = torch.load(path, map_location="cpu", weights_only=False)
        if (state.get("format") != CHECKPOINT_FORMAT or state["config"] != self.cfg.resume_key()
                or state["data"]["fingerprint"] != self.fingerprint or state["data"]["plan"] != self.plan):
            path.unlink()  # a checkpoint of other data or settings: start over
            return
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, value in state["weights"].items():
                params[name].copy_(value.to(params[name].device))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        self.step = state["step"]
        self.losses = list(state["losses"])
        self.tokens_seen = state["tokens_seen"]
        self.micro_tokens = state["micro_tokens"]
        self.row_tokens = state.get("row_tokens", self.row_tokens)
        self.resumed_from = self.step

    # ------------------------------------------------------------------ training
    def _step_loss(self, seqs: list[Seq]) -> float:
        """Forward and backward of one optimizer step, micro-batch by micro-batch; returns its loss.

        loss = token-mean NLL of the team's sequences + anchor_weight × token-mean cross entropy
        of the anchor positions against the base model's top-k distribution + distill_weight ×
        token-mean top-k KL of the distilled answers against the base model reading the passage
        + mean DPO loss of the pairs, each normalised by the step's totals. The anchor term has its own mean so
        that long general answers do not drown the short answers that carry the team's facts.
        """
        n_sft = sum(s.targets for s in seqs if s.role == "sft")
        n_anchor = sum(s.targets for s in seqs if s.role == "anchor")
        n_distill = sum(s.targets for s in seqs if s.role == "distill")
        n_pairs = sum(1 for s in seqs if s.role == "chosen")
        total = 0.0
        for group in split_micro(seqs, self.micro_tokens):
            logits, targets, index, _ = forward_packed(self.model, group, self.device, self.bf16, self.row_tokens)
            logp = -F.cross_entropy(logits, targets, reduction="none")
            loss = logp.new_zeros(())
            roles = [s.role for s in group]
            if n_sft:
                mask = torch.tensor([r == "sft" for r in roles], device=logp.device)[index]
                loss = loss - (logp * mask).sum() / n_sft
            if n_anchor:
                loss = loss + self.cfg.anchor_weight * self._anchor_loss(group, logits, logp, index) / n_anchor
            if n_distill:
                loss = loss + self.cfg.distill_weight * distill_loss(group, logits, index) / n_distill
            if n_pairs:
                loss = loss + self._dpo(group, logp, index) / n_pairs
            loss.backward()
            total += float(loss.detach())
        return total

    def _anchor_loss(self, group: list[Seq], logits: torch.Tensor, logp: torch.Tensor,
                     index: torch.Tensor) -> torch.Tensor:
        """Summed over anchor positions: cross entropy against the base model's top-k distribution
        (or, without it, the NLL of the base model's greedy tokens)."""
        is_anchor = torch.tensor([s.role == "anchor" for s in group], device=logp.device)[index]
        if not bool(is_anchor.any()):
            return logp.new_zeros(())
        if self.cfg.anchor_topk <= 0:
            return -(logp * is_anchor).sum()
        ids = torch.cat([s.ref_topk[0] for s in group if s.role == "anchor"]).to(logits.device)
        probs = torch.cat([s.ref_topk[1] for s in group if s.role == "anchor"]).to(logits.device)
        own = torch.log_softmax(logits[is_anchor], dim=-1).gather(-1, ids)
        return -(probs * own).sum()

    def _dpo(self, group: list[Seq], logp: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        sums = logp.new_zeros(len(group)).index_add(0, index, logp)
        loss = logp.new_zeros(())
        for i, seq in enumerate(group):
            if seq.role != "chosen":
                continue
            rejected = group[i + 1]
            margin = (sums[i] - seq.ref_logp) - (sums[i + 1] - rejected.ref_logp)
            loss = loss - F.logsigmoid(self.cfg.dpo_beta * margin)
        return loss

    def train(self) -> dict[str, Any]:
        """Run the remaining steps; checkpoint every `checkpoint_every` steps."""
        start = time.perf_counter()
        self.model.train()
        with self.step_blocks():
            while self.step < len(self.plan):
                self.train_step()
        self.wall += time.perf_counter() - start
        return self.summary()

    @contextlib.contextmanager
    def step_blocks(self) -> Iterator[None]:
        """The decoder blocks set up for the steps, and as they were after, for generation and
        evaluation (parameter names and the checkpoint format are unchanged): projections that read
        the same input computed together (`training.fusion`) where `self.fused`, compiled where
        `self.compiled`. `train` runs its steps in it; a caller that runs `train_step` itself wraps
        its loop in it."""
        with contextlib.ExitStack() as stack:
            if self.fused:
                frozen = torch.bfloat16 if self._bf16_frozen_linears() else None
                self.fused_layers = stack.enter_context(fused_projections(self.model, frozen))
            stack.enter_context(self._compiled_blocks())
            yield

    @contextlib.contextmanager
    def _compiled_blocks(self) -> Iterator[None]:
        """The decoder blocks compiled in place (`self.compiled`), eager again after.

        Compiled blocks compute attention the plain way (`eager`: matmul, mask, softmax, matmul),
        which inductor fuses: over packed rows of 256 tokens that is faster than the CPU's sdpa
        kernel (SmolLM2-135M, 2 cores, interleaved steps: x1.15 over compiled blocks with sdpa).
        The first block stays eager: its input (the frozen embeddings) needs no gradient where every
        other block's does, so compiling it would cost a second graph for 1/layers of the work.

        Attention without dropout runs in eval mode there: the same computation, but the dropout
        probability is then a constant, where in training mode the layer's attribute reaches dynamo
        as a symbolic float, which it can only specialise by tracing the block a second time
        (SmolLM2-135M: 3.8 s of each process's compile, cached or not)."""
        if not self.compiled:
            yield
            return
        from training import base_models

        _compile_cache_beside(base_models.models_dir(self.cfg.data_dir))
        inner = self.model.get_base_model()
        attention = inner.config._attn_implementation
        blocks = list(inner.get_decoder().layers)[1:]
        inner.set_attn_implementation("eager")
        still = [b.self_attn for b in blocks if b.self_attn.training and not getattr(b.self_attn, "attention_dropout", 1)]
        for module in still:
            module.train(False)
        for block in blocks:
            block.compile(dynamic=True)
        try:
            yield
        finally:
            for block in blocks:
                block._compiled_call_impl = None
            for module in still:
                module.train(True)
            inner.set_attn_implementation(attention)

    def _bf16_frozen_linears(self) -> bool:
        return bool(self.bf16 and self.device.type == "cpu" and CPU_BF16_FROZEN_LINEARS)

    def _frozen_bf16_copies(self) -> list[tuple[torch.nn.Module, torch.nn.Parameter, torch.Tensor, torch.nn.Parameter]]:
        """(linear layer, its weight, the weight's float32 values, a bfloat16 copy) for the frozen
        linear layers, output layer included, made once when the step computes in bf16 autocast on a
        CPU (see CPU_BF16_FROZEN_LINEARS); not for the layers fused projections compute from their
        own bfloat16 copy (`step_blocks`)."""
        if self._bf16_copies is None:
            self._bf16_copies = []
            if self._bf16_frozen_linears():
                for module in self.model.modules():
                    weight = getattr(module, "weight", None)
                    if (isinstance(module, torch.nn.Linear) and isinstance(weight, torch.nn.Parameter)
                            and not weight.requires_grad and weight.dtype == torch.float32
                            and module not in self.fused_layers):
                        low = torch.nn.Parameter(weight.data.to(torch.bfloat16), requires_grad=False)
                        self._bf16_copies.append((module, weight, weight.data, low))
        return self._bf16_copies

    @contextlib.contextmanager
    def _bf16_frozen(self) -> Iterator[None]:
        """The bfloat16 copies in place of the frozen linear weights for one step. The blocks' weights
        swap their data; the output layer swaps its parameter, because its weight is usually the
        input embeddings' as well (tied), and the embeddings stay float32."""
        copies = self._frozen_bf16_copies()
        head = self.model.get_output_embeddings() if copies else None
        for module, weight, _, low in copies:
            if module is head:
                module.weight = low
            else:
                weight.data = low.data
        try:
            yield
        finally:
            for module, weight, original, _ in copies:
                if module is head:
                    module.weight = weight
                else:
                    weight.data = original

    def train_step(self) -> float:
        """The next optimizer step of the plan (a checkpoint when one is due); returns its loss."""
        seqs = [s for idx in self.plan[self.step] for s in self.units[idx].seqs]
        with self._bf16_frozen():
            loss = self._run_step(seqs)
        torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.losses.append(loss)
        self.tokens_seen += sum(len(s) for s in seqs)
        if self.cfg.checkpoint_every and self.step % self.cfg.checkpoint_every == 0 and self.step < len(self.plan):
            self.save_checkpoint()
        if self.progress:
            self.progress({"step": self.step, "total": len(self.plan), "loss": loss,
                           "lr": self.scheduler.get_last_lr()[0], "tokens": self.tokens_seen})
        return loss

    def _run_step(self, seqs: list[Seq]) -> float:
        """One step's forward/backward; a CUDA out-of-memory error halves the micro-batch and retries."""
        while True:
            try:
                return self._step_loss(seqs)
            except torch.OutOfMemoryError:
                self.optimizer.zero_grad(set_to_none=True)
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                longest = max(len(s) for s in seqs)
                if self.micro_tokens <= longest:
                    raise TrainingError(f"out of memory even with one sequence ({longest} tokens) per "
                                        "micro-batch: lower seq_len") from None
                self.micro_tokens = max(longest, self.micro_tokens // 2)

    def summary(self) -> dict[str, Any]:
        trained = sum(s.targets for u in self.units for s in u.seqs)
        return {
            "steps": self.step,
            "epochs": self.epochs_run,
            "units": len(self.units),
            "anchor_units": sum(1 for u in self.units if u.kind == "anchor"),
            "distill_units": sum(1 for u in self.units if u.kind == "distill"),
            "tokens": self.tokens_seen,
            "target_tokens_per_epoch": trained,
            "first_loss": self.losses[0] if self.losses else None,
            "final_loss": self.losses[-1] if self.losses else None,
            "loss_curve": [round(x, 4) for x in self.losses],
            "wall_s": round(self.wall, 3),
            "tokens_per_s": round(self.tokens_seen / self.wall, 1) if self.wall else None,
            "step_tokens": self.step_tokens,
            "micro_tokens": self.micro_tokens,
            "row_tokens": self.row_tokens,
            "threads": torch.get_num_threads() if self.device.type == "cpu" else None,
            "bf16_weights": bool(self.shape and self.shape.bf16_weights),
            "trainable_params": self.trainable_params,
            "resumed_from_step": self.resumed_from,
            "device": str(self.device),
            "bf16": self.bf16,
            "gradient_checkpointing": self.grad_ckpt,
            "compiled": self.compiled,
            "fused": self.fused,
        }

    def save_adapter(self, path: Path | None = None) -> Path:
        """Write the PEFT directory (adapter_config.json + adapter_model.safetensors)."""
        target = path or self.cfg.output_dir
        target.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(target), safe_serialization=True)
        return target

    def cleanup(self) -> None:
        """Drop the resume checkpoint (the run is complete) and free the model."""
        if self.checkpoint_path.exists():
            self.checkpoint_path.unlink()
        self.model = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
