"""Adapter versions of each team: status, metrics, lineage, promotion, rollback and export.

A version's files are a PEFT directory under `<data_dir>/adapters/<team>/<version>/`. Statuses:
training (a run in progress or interrupted) · candidate (trained, being evaluated) · active (the
one that answers) · rejected (failed the gate, or rolled back) · retired (was active, superseded)
· failed (the run broke; `reason` says why).
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db import models
from db.base import utcnow
from tacit.context import Context
from tacit.errors import AdapterStateError, NoAdapter, Refused
from training.export_readme import export_readme, peft_base_model
from training.selection import knowledge_ids, lineage_chain

STATUSES = ("training", "candidate", "active", "rejected", "retired", "failed")
#: LoRA ranks vLLM accepts (`--max-lora-rank` choices); LoRAX accepts these too.
SERVABLE_RANKS = {8, 16, 32, 64, 128, 256}
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


class ExportError(ValueError):
    """An adapter directory that a serving engine would refuse; the message says why."""


class DeletedKnowledge(Refused):
    """A version whose weights still carry documents deleted at their source: making it active
    again (promote, rollback) or exporting it would bring the deleted knowledge back."""

    def __init__(self, team: str, version: int, action: str, documents: list[dict[str, Any]]) -> None:
        self.documents = documents
        names = ", ".join(_doc_label(d) for d in documents)
        super().__init__(f"team {team}: version {version} was trained on documents deleted at their source since: "
                         f"{names}; refusing to {action} it (--force overrides, and the override is recorded)")


# ---------------------------------------------------------------------------- queries
def adapters_dir(data_dir: Path, team: str) -> Path:
    return data_dir / "adapters" / team


def version_dir(data_dir: Path, team: str, version: int) -> Path:
    return adapters_dir(data_dir, team) / str(version)


def active_version(session: Session, team_id: int) -> models.Adapter | None:
    return session.scalar(select(models.Adapter).where(models.Adapter.team_id == team_id,
                                                        models.Adapter.status == "active")
                          .order_by(models.Adapter.version.desc()))


def versions(session: Session, team_id: int) -> list[models.Adapter]:
    return list(session.scalars(select(models.Adapter).where(models.Adapter.team_id == team_id)
                                .order_by(models.Adapter.version)))


def get_version(session: Session, team: models.Team, version: int | None) -> models.Adapter:
    if version is None:
        row = active_version(session, team.id)
        if row is None:
            raise NoAdapter(f"team {team.name} has no active adapter (run `tacit train {team.name}`)")
        return row
    row = session.scalar(select(models.Adapter).where(models.Adapter.team_id == team.id,
                                                      models.Adapter.version == version))
    if row is None:
        raise NoAdapter(f"team {team.name} has no adapter version {version}")
    return row


def next_version(session: Session, team_id: int) -> int:
    top = session.scalar(select(func.max(models.Adapter.version)).where(models.Adapter.team_id == team_id))
    return (top or 0) + 1


def _parent_version(session: Session, row: models.Adapter) -> int | None:
    if row.parent_id is None:
        return None
    parent = session.get(models.Adapter, row.parent_id)
    return parent.version if parent else None


def as_dict(session: Session, row: models.Adapter) -> dict[str, Any]:
    return {
        "version": row.version,
        "status": row.status,
        "parent_version": _parent_version(session, row),
        "base_model": row.base_model,
        "base_model_hash": row.base_model_hash,
        "clean_retrain": row.clean_retrain,
        "needs_clean_retrain": row.needs_clean_retrain,
        "metrics": row.metrics or {},
        "trained_tokens": row.trained_tokens,
        "path": row.path,
        "created_at": row.created_at,
        "finished_at": row.finished_at,
        "promoted_at": row.promoted_at,
        "reason": row.reason,
    }


# ---------------------------------------------------------------------------- the CLI's functions
def list_versions(ctx: Context, team: str) -> list[dict[str, Any]]:
    with ctx.session() as session:
        team_row = ctx.team_row(session, team)
        return [as_dict(session, row) for row in versions(session, team_row.id)]


def lineage_counts(session: Session, row: models.Adapter) -> dict[str, Any]:
    """Examples that trained this run (new and replayed, by kind) and all the weights carry."""
    rows = session.execute(select(models.Example.kind, models.AdapterLineage.replay)
                           .join(models.AdapterLineage, models.AdapterLineage.example_id == models.Example.id)
                           .where(models.AdapterLineage.adapter_id == row.id)).all()
    by_kind: dict[str, int] = {}
    for kind, _ in rows:
        by_kind[kind] = by_kind.get(kind, 0) + 1
    return {
        "examples": len(rows),
        "new": sum(1 for _, replay in rows if not replay),
        "replayed": sum(1 for _, replay in rows if replay),
        "by_kind": by_kind,
        "in_weights": len(knowledge_ids(session, row)),
        "versions_in_weights": [a.version for a in lineage_chain(session, row)],
    }


def deleted_documents(session: Session, row: models.Adapter) -> dict[str, Any]:
    """Forgetting on request: which deleted documents this version still carries (flagged) and
    which it was trained without (excluded: deleted before it was trained, by a clean retrain or
    before they were ever learned)."""
    known = knowledge_ids(session, row)
    docs = session.execute(
        select(models.Document.id, models.Document.external_id, models.Document.title, models.Document.deleted_at,
               models.Example.id)
        .join(models.Example, models.Example.document_id == models.Document.id)
        .where(models.Document.team_id == row.team_id, models.Document.deleted_at.is_not(None))).all()
    flagged: dict[int, dict[str, Any]] = {}
    excluded: dict[int, dict[str, Any]] = {}
    for doc_id, external_id, title, deleted_at, example_id in docs:
        info = {"document_id": doc_id, "external_id": external_id, "title": title, "deleted_at": deleted_at}
        if example_id in known:
            flagged[doc_id] = info
        elif deleted_at <= (row.created_at or utcnow()):
            excluded.setdefault(doc_id, info)
    for doc_id in flagged:
        excluded.pop(doc_id, None)
    return {
        "trained_without_deleted_documents": not flagged,
        "flagged": list(flagged.values()),
        "excluded": list(excluded.values()),
    }


def show_version(ctx: Context, team: str, version: int | None = None) -> dict[str, Any]:
    with ctx.session() as session:
        team_row = ctx.team_row(session, team)
        row = get_version(session, team_row, version)
        data = as_dict(session, row)
        data["team"] = team
        data["train_config"] = row.train_config or {}
        data["flag_reason"] = row.flag_reason
        data["lineage"] = lineage_counts(session, row)
        data["deleted_documents"] = deleted_documents(session, row)
        data["overrides"] = list((row.metrics or {}).get(OVERRIDES, []))
        return data


# ---------------------------------------------------------------------------- forgetting stays done
OVERRIDES = "overrides"


def _doc_label(doc: dict[str, Any]) -> str:
    title = doc.get("title")
    return f"{doc['external_id']} ({title})" if title and title != doc["external_id"] else str(doc["external_id"])


def guard_deleted(session: Session, team: str, row: models.Adapter, action: str, force: bool) -> str | None:
    """Refuse `action` on a version that still carries deleted documents, unless forced; a forced
    override is appended to the version's `metrics["overrides"]` (shown by `adapters show`) and the
    warning is returned for the caller to print."""
    flagged = deleted_documents(session, row)["flagged"]
    if not flagged:
        return None
    if not force:
        raise DeletedKnowledge(team, row.version, action, flagged)
    warning = (f"forced {action} of version {row.version}, which carries documents deleted at their source: "
               + ", ".join(_doc_label(d) for d in flagged))
    record = {"action": action, "at": utcnow().isoformat(), "warning": warning,
              "documents": [{k: d[k] for k in ("document_id", "external_id", "title")} for d in flagged]}
    metrics = dict(row.metrics or {})
    metrics[OVERRIDES] = [*metrics.get(OVERRIDES, []), record]
    row.metrics = metrics  # a new dict, so the JSON column is seen as changed
    return warning


def _activate(session: Session, team_id: int, row: models.Adapter, reason: str) -> models.Adapter | None:
    previous = active_version(session, team_id)
    if previous is not None and previous.id != row.id:
        previous.status = "retired"
    row.status = "active"
    row.promoted_at = utcnow()
    row.reason = reason
    return previous


def promote(ctx: Context, team: str, version: int, reason: str, *, force: bool = False,
            warn: Any = None) -> str:
    """Make `version` the active one (by hand, or by the gate). A version that carries deleted
    documents is refused unless `force`; `warn(message)` receives the recorded override."""
    with ctx.session() as session:
        team_row = ctx.team_row(session, team)
        row = get_version(session, team_row, version)
        if row.status == "active":
            return f"{team}: version {version} is already active"
        if row.status in ("training", "failed"):
            raise AdapterStateError(f"team {team}: version {version} is {row.status}; only a trained version can be promoted")
        _warn(warn, guard_deleted(session, team, row, "promote", force))
        check_adapter_dir(Path(row.path or ""))
        previous = _activate(session, team_row.id, row, reason)
        before = f" (was {previous.version})" if previous is not None and previous.id != row.id else ""
        return f"{team}: version {version} is active{before}"


def _warn(warn: Any, message: str | None) -> None:
    if message and warn is not None:
        warn(message)


def rollback(ctx: Context, team: str, *, force: bool = False, warn: Any = None) -> str:
    """Back to the version that was active before the current one; the current one is rejected.
    A target that carries documents deleted since is refused unless `force`."""
    with ctx.session() as session:
        team_row = ctx.team_row(session, team)
        current = active_version(session, team_row.id)
        if current is None:
            raise AdapterStateError(f"team {team} has no active adapter to roll back")
        candidates = [r for r in versions(session, team_row.id)
                      if r.status == "retired" and r.promoted_at is not None and current.promoted_at is not None
                      and r.promoted_at <= current.promoted_at and r.id != current.id]
        if not candidates:
            raise AdapterStateError(f"team {team}: version {current.version} is the first active version; nothing to roll back to")
        target = max(candidates, key=lambda r: (r.promoted_at, r.version))
        _warn(warn, guard_deleted(session, team, target, "roll back to", force))
        current.status = "rejected"
        current.reason = f"rolled back to version {target.version}"
        target.status = "active"
        target.reason = f"restored by rollback from version {current.version}"
        return f"{team}: rolled back from version {current.version} to version {target.version}"


# ---------------------------------------------------------------------------- export
def check_adapter_dir(path: Path) -> dict[str, Any]:
    """Validate a PEFT LoRA directory the way vLLM and LoRAX will load it; returns its config.

    Refused by servers: `modules_to_save` (vLLM: "not supported"), DoRA, ranks outside
    {8 … 256}, weights that are not LoRA A/B matrices (e.g. a saved embedding).
    See https://docs.vllm.ai/en/latest/features/lora.html.
    """
    from safetensors import safe_open

    for name in ADAPTER_FILES:
        if not (path / name).is_file():
            raise ExportError(f"{path}: {name} is missing")
    config = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
    if config.get("peft_type") != "LORA":
        raise ExportError(f"{path}: peft_type is {config.get('peft_type')!r}, not LORA")
    if config.get("modules_to_save"):
        raise ExportError(f"{path}: modules_to_save is set ({config['modules_to_save']}); servers refuse it")
    if config.get("use_dora"):
        raise ExportError(f"{path}: DoRA adapters are not servable by vLLM")
    if config.get("r") not in SERVABLE_RANKS:
        raise ExportError(f"{path}: rank {config.get('r')} is not one of {sorted(SERVABLE_RANKS)}")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise ExportError(f"{path}: per-module ranks or alphas are not hot-swappable")
    if not config.get("target_modules"):
        raise ExportError(f"{path}: no target_modules")
    with safe_open(str(path / "adapter_model.safetensors"), framework="pt") as f:
        keys = list(f.keys())
        for key in keys:
            if ".lora_A." not in key and ".lora_B." not in key:
                raise ExportError(f"{path}: tensor {key} is not a LoRA weight")
            shape = f.get_slice(key).get_shape()
            if config["r"] not in shape:
                raise ExportError(f"{path}: tensor {key} has shape {shape}, not rank {config['r']}")
    if not keys:
        raise ExportError(f"{path}: adapter_model.safetensors holds no tensors")
    return config


def export(ctx: Context, team: str, dest: Path | str, version: int | None = None, *, force: bool = False,
           warn: Any = None) -> Path:
    """Copy a version's PEFT directory to `dest` (validated), with a `tacit.json` describing it and
    a README naming the base model it needs. A version carrying deleted documents is refused
    unless `force`."""
    dest = Path(dest)
    with ctx.session() as session:
        team_row = ctx.team_row(session, team)
        row = get_version(session, team_row, version)
        if row.status in ("training", "failed") or not row.path:
            raise AdapterStateError(f"team {team}: version {row.version} is {row.status}; nothing to export")
        warning = guard_deleted(session, team, row, "export", force)
        source = Path(row.path)
        config = check_adapter_dir(source)
        info = {"team": team, "version": row.version, "status": row.status, "base_model": row.base_model,
                "base_model_hash": row.base_model_hash, "rank": config["r"], "alpha": config["lora_alpha"],
                "target_modules": sorted(config["target_modules"]), "metrics": _public_metrics(row.metrics),
                "exported_at": datetime.now().astimezone().isoformat()}
        if warning:
            info["warning"] = warning
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ExportError(f"{dest}: exists and is not an empty folder")
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source / "adapter_model.safetensors", dest / "adapter_model.safetensors")
    # Servers read the base model from the config: a local path from the training machine means
    # nothing to them, so it names the hub id when there is one.
    config["base_model_name_or_path"] = peft_base_model(info["base_model"], config.get("base_model_name_or_path"))
    (dest / "adapter_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (dest / "README.md").write_text(export_readme(info, config["base_model_name_or_path"]), encoding="utf-8")
    _warn(warn, warning)
    (dest / "tacit.json").write_text(json.dumps(info, indent=2, default=str), encoding="utf-8")
    check_adapter_dir(dest)
    return dest


def _public_metrics(metrics: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (metrics or {}).items() if k not in ("qa_answers", OVERRIDES)}
