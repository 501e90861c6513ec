"""Taking derived data back: deleted records, records that changed team, and the adapters that
learned from them.

Rows are never deleted (lineage must still say what an adapter learned from): chunks and
examples get `retired_at`, and every adapter version whose `adapter_lineage` holds a retired
example gets `needs_clean_retrain` with a `flag_reason`, so its next version is trained from
scratch without that content.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from db import models
from db.base import utcnow
from ingestion.processing.routing import TeamRouter
from tacit.context import Context

SCAN = 1000
STATE_KEY = "processing"  # the processing stage's part of `Source.state`


def batches(items: Sequence[Any], size: int = 500) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def flag_adapters(session: Session, example_ids: Sequence[int], reason: str) -> int:
    """Mark every adapter version trained on any of `example_ids` for a clean retrain."""
    flagged = 0
    for batch in batches(list(example_ids)):
        adapter_ids = list(session.scalars(
            select(models.AdapterLineage.adapter_id).where(models.AdapterLineage.example_id.in_(batch)).distinct()))
        if adapter_ids:
            res = session.execute(
                update(models.Adapter)
                .where(models.Adapter.id.in_(adapter_ids), models.Adapter.needs_clean_retrain.is_(False))
                .values(needs_clean_retrain=True, flag_reason=reason[:2000])
                .execution_options(synchronize_session=False))
            flagged += res.rowcount or 0
    return flagged


def retire_examples(session: Session, ids: Sequence[int], reason: str | None = None) -> tuple[int, int]:
    """Retire examples; with a reason, flag the adapters that learned them. (retired, flagged)."""
    if not ids:
        return 0, 0
    now = utcnow()
    for batch in batches(list(ids)):
        session.execute(update(models.Example).where(models.Example.id.in_(batch))
                        .values(retired_at=now).execution_options(synchronize_session=False))
    return len(ids), (flag_adapters(session, ids, reason) if reason else 0)


def derived_from(model: Any, ids: Sequence[int]) -> Any:
    """The condition on examples derived from these documents or interactions (a rated
    preference pair records its chosen interaction as origin "pair:<id>")."""
    if model is models.Document:
        return models.Example.document_id.in_(list(ids))
    return or_(models.Example.interaction_id.in_(list(ids)), models.Example.origin.in_([f"pair:{i}" for i in ids]))


def take_back(session: Session, model: Any, ids: Sequence[int], reason: str, stats: Counter[str]) -> None:
    """Retire everything derived from these records, flag adapters, and clear `processed_hash`
    (so a record that comes back, or now feeds another team, is processed again)."""
    if model is models.Document:
        res = session.execute(update(models.Chunk).where(models.Chunk.document_id.in_(list(ids)),
                                                         models.Chunk.retired_at.is_(None))
                              .values(retired_at=utcnow()).execution_options(synchronize_session=False))
        stats["chunks_retired"] += res.rowcount or 0
    example_ids = list(session.scalars(select(models.Example.id).where(derived_from(model, ids),
                                                                       models.Example.retired_at.is_(None))))
    retired, flagged = retire_examples(session, example_ids, reason)
    stats["examples_retired"] += retired
    stats["adapters_flagged"] += flagged
    session.execute(update(model).where(model.id.in_(list(ids))).values(processed_hash=None)
                    .execution_options(synchronize_session=False))


def retire_deleted(ctx: Context, stats: Counter[str]) -> None:
    """Records deleted at their source (whatever their team) since they were processed."""
    for model, what in ((models.Document, "document"), (models.Interaction, "interaction")):
        while True:
            with ctx.session() as s:
                rows = s.execute(select(model.id, model.external_id, models.Source.name)
                                 .join(models.Source, models.Source.id == model.source_id)
                                 .where(model.deleted_at.is_not(None), model.processed_hash.is_not(None))
                                 .order_by(model.id).limit(500)).all()
                if not rows:
                    break
                more = f" and {len(rows) - 1} more" if len(rows) > 1 else ""
                reason = f"{what} {rows[0].name}/{rows[0].external_id}{more} deleted at the source"
                take_back(s, model, [r.id for r in rows], reason, stats)
                stats[f"{what}s_deleted"] += len(rows)


def parent_teams(session: Session, router: TeamRouter, rows: Sequence[Any]) -> dict[tuple[int, str], str]:
    """The team of the document each interaction row belongs to (same source), when known."""
    by_source: dict[int, set[str]] = {}
    for r in rows:
        if r.document_external_id:
            by_source.setdefault(r.source_id, set()).add(r.document_external_id)
    out: dict[tuple[int, str], str] = {}
    for source_id, exts in by_source.items():
        for batch in batches(sorted(exts)):
            for d in session.execute(select(models.Document.source_id, models.Document.external_id,
                                            models.Document.acl)
                                     .where(models.Document.source_id == source_id,
                                            models.Document.external_id.in_(list(batch)))):
                out[(d.source_id, d.external_id)] = router.team_for(d.source_id, d.acl)
    return out


def reroute(ctx: Context, router: TeamRouter, team_ids: dict[str, int], stats: Counter[str]) -> None:
    """When the mapping of records to teams changed in `tacit.toml` (principals, teams, sources),
    records processed for a team they no longer map to are taken back from it (its adapters
    flagged, as for a deletion) and left to be processed for the team they map to now. Costs one
    scan of the corpus, only after such a change (a fingerprint is kept in `Source.state`)."""
    fingerprint = router.fingerprint()
    with ctx.session() as s:
        states = s.execute(select(models.Source.state)).scalars().all()
    if all(((st or {}).get(STATE_KEY) or {}).get("routing") == fingerprint for st in states):
        return
    names = {v: k for k, v in team_ids.items()}
    for model, what in ((models.Document, "document"), (models.Interaction, "interaction")):
        is_doc = model is models.Document
        cols = [model.id, model.source_id, model.acl, model.team_id]
        if not is_doc:
            cols.append(model.document_external_id)
        last = 0
        while True:
            with ctx.session() as s:
                rows = s.execute(select(*cols).where(model.deleted_at.is_(None), model.processed_hash.is_not(None),
                                                     model.id > last).order_by(model.id).limit(SCAN)).all()
                if not rows:
                    break
                last = rows[-1].id
                parents = {} if is_doc else parent_teams(s, router, rows)
                moved: dict[tuple[int, str], list[int]] = {}
                for r in rows:
                    team = router.team_for(r.source_id, r.acl,
                                           None if is_doc else parents.get((r.source_id, r.document_external_id)))
                    if team_ids.get(team) != r.team_id:
                        moved.setdefault((r.team_id, team), []).append(r.id)
                for (old, team), ids in moved.items():
                    take_back(s, model, ids, f"{len(ids)} {what}(s) that fed team {names.get(old, old)} now feed "
                                             f"team {team} (team mapping changed in tacit.toml)", stats)
                    stats["rerouted"] += len(ids)
    with ctx.session() as s:
        stmt = select(models.Source)
        if s.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        for source in s.scalars(stmt):
            state = dict(source.state or {})
            state[STATE_KEY] = dict(state.get(STATE_KEY) or {}, routing=fingerprint)
            source.state = state
