"""The processing stage: corpus → chunks → training examples, one team at a time, incrementally.

`process_team(ctx, team)` is what `tacit process` and the Celery task `tacit.process_team`
(queue `process`) run. It

1. retires the chunks and examples of documents and interactions deleted at their source (and,
   after a change of the team mapping in `tacit.toml`, of records that now feed another team),
   and flags every adapter version whose lineage holds one of those examples for a clean retrain;
2. reads the documents and interactions whose `content_hash` differs from `processed_hash`
   and that feed this team (`ingestion.processing.routing`), in pages of ids, so memory does not grow
   with the corpus; unchanged content is never read, and a second delivery of the same
   version is a no-op;
3. cleans them (`ingestion.processing.hygiene`), chunks them with the team's tokenizer
   (`ingestion.processing.chunking`) and builds examples (`ingestion.processing.examples`, `training.teacher`);
4. writes each page in one transaction: chunks of the new version, examples upserted by
   content hash (unchanged examples of a changed document keep their id; the ones it no longer
   yields are retired), and `processed_hash` set to the hash that was processed. A row changed
   or locked by another worker meanwhile is left for the next run.

Deleted records and records whose team changed are taken back in `ingestion.processing.retirement`.
Works the same on SQLite and PostgreSQL (upserts with ON CONFLICT; row locks with SKIP LOCKED
where the database has them).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from db import models
from db.base import utcnow
from ingestion.processing.chunking import Chunk, chunk_documents, token_counter
from ingestion.processing.dedup_index import PersistentDuplicateIndex
from ingestion.processing.examples import (
    Draft,
    InteractionView,
    chat_from_interaction,
    cpt_examples,
    feedback_examples,
    feedback_turns,
    prompt_key,
    rated_pairs,
    structure_qa,
)
from ingestion.processing.hygiene import DuplicateIndex, LineStats, scrub, strip_boilerplate
from ingestion.processing.retirement import (
    STATE_KEY,
    batches,
    derived_from,
    parent_teams,
    reroute,
    retire_deleted,
    retire_examples,
)
from ingestion.processing.routing import TeamRouter
from ingestion.processing.study import grounded, link_examples, study_examples
from tacit.context import Context

log = logging.getLogger(__name__)

PAGE = 64  # records per write transaction
SCAN = 1000  # ids looked at per query when finding pending records
Progress = Callable[..., None]


def process_team(ctx: Context, team: str, progress: Progress | None = None) -> dict[str, Any]:
    """Bring one team's chunks and examples up to date with the corpus; returns counts.

    Records that came in through this team's sources but feed other teams (a shared workspace)
    are processed too, for those teams, in the same call (their counts under `other_teams`), so
    processing that follows a sync never leaves part of what the sync brought behind.
    """
    run = _TeamRun(ctx, team, progress)
    result = run.run()
    others = {name: _TeamRun(ctx, name, progress).run() for name in sorted(run.other_teams)}
    if others:
        result["other_teams"] = others
    return result


def _insert(session: Session, table: Any) -> Any:
    return (postgresql if session.get_bind().dialect.name == "postgresql" else sqlite).insert(table)


class _TeamRun:
    def __init__(self, ctx: Context, team: str, progress: Progress | None) -> None:
        from training.base_models import load_tokenizer

        self.ctx, self.team, self.progress = ctx, team, progress
        self.cfg = ctx.config.team(team)
        with ctx.session() as session:
            self.team_id = ctx.team_row(session, team).id
            self.team_ids = dict(session.execute(select(models.Team.name, models.Team.id)).all())
            sources = session.execute(select(models.Source.id, models.Team.name)
                                      .join(models.Team, models.Source.team_id == models.Team.id)).all()
        self.router = TeamRouter(ctx.config, dict(sources))
        self.tokenizer = load_tokenizer(self.cfg.base_model, ctx.data_dir)
        self.counter = token_counter(self.tokenizer)
        self.documents = PersistentDuplicateIndex(ctx, self.team_id, self.cfg.hygiene.near_duplicate_threshold)
        self.chunks = DuplicateIndex(1.0)
        self.lines: dict[int, LineStats] = {}
        self.stats: Counter[str] = Counter()
        self.scrubbed: Counter[str] = Counter()
        self.study: Counter[str] = Counter()  # study examples built, by sub-kind
        self._teacher: Any = None
        self._teacher_failures = 0
        self._done = 0
        self._total: int | None = None
        self.other_teams: set[str] = set()  # teams that records of this team's sources feed

    # ------------------------------------------------------------------ driver
    def run(self) -> dict[str, Any]:
        reroute(self.ctx, self.router, self.team_ids, self.stats)
        retire_deleted(self.ctx, self.stats)
        if self.progress:
            self._total = self._count_pending()
            self._report("processing documents")
        for ids in self._pending(models.Document):
            self._documents(ids)
        self._report("processing interactions")
        for ids in self._pending(models.Interaction):
            self._interactions(ids)
        if self._teacher:
            self._teacher.close()
        self.stats["skipped_unchanged"] = self._count_unchanged()
        self._report("done", final=True)
        keys = ["documents_processed", "documents_duplicate", "chunks_written", "chunks_retired",
                "interactions_processed", "examples_written", "examples_retired", "documents_deleted",
                "interactions_deleted", "adapters_flagged", "skipped_unchanged", "skipped_concurrent", "rerouted"]
        result: dict[str, Any] = {"team": self.team}
        result.update({k: self.stats.get(k, 0) for k in keys})
        for k in ("teacher_examples", "teacher_failures", "teacher_ungrounded", "boilerplate_lines"):
            if self.stats.get(k):
                result[k] = self.stats[k]
        if +self.scrubbed:
            result["scrubbed"] = dict(self.scrubbed)
        if +self.study:
            result["study"] = dict(sorted(self.study.items()))
        return result

    def _report(self, description: str, final: bool = False) -> None:
        if self.progress:
            total = self._total if self._total is not None else None
            completed = total if final and total is not None else self._done
            self.progress(completed=completed, total=total, description=f"{self.team}: {description}")

    def _pending_filter(self, model: Any) -> Any:
        return (model.deleted_at.is_(None),
                or_(model.processed_hash.is_(None), model.processed_hash != model.content_hash))

    def _count_pending(self) -> int:
        from sqlalchemy import func

        with self.ctx.session() as s:
            return sum(s.scalar(select(func.count()).select_from(m).where(*self._pending_filter(m))) or 0
                       for m in (models.Document, models.Interaction))

    def _count_unchanged(self) -> int:
        from sqlalchemy import func

        with self.ctx.session() as s:
            total = 0
            for m in (models.Document, models.Interaction):
                total += s.scalar(select(func.count()).select_from(m).where(
                    m.team_id == self.team_id, m.deleted_at.is_(None), m.processed_hash == m.content_hash)) or 0
        done = self.stats["documents_processed"] + self.stats["interactions_processed"]
        return max(0, total - done)

    def _pending(self, model: Any) -> Iterator[list[int]]:
        """Ids of pending records that feed this team, a page at a time (light columns only)."""
        last = 0
        is_doc = model is models.Document
        while True:
            cols = [model.id, model.source_id, model.acl]
            if not is_doc:
                cols.append(model.document_external_id)
            with self.ctx.session() as s:
                rows = s.execute(select(*cols).where(*self._pending_filter(model), model.id > last)
                                 .order_by(model.id).limit(SCAN)).all()
                if not rows:
                    return
                last = rows[-1].id
                parents = {} if is_doc else parent_teams(s, self.router, rows)
            mine = []
            for r in rows:
                team = self.router.team_for(r.source_id, r.acl,
                                            None if is_doc else parents.get((r.source_id, r.document_external_id)))
                if team == self.team:
                    mine.append(r.id)
                elif self.router.source_teams[r.source_id] == self.team:
                    self.other_teams.add(team)
            self._done += len(rows) - len(mine)
            for batch in batches(mine, PAGE):
                yield list(batch)
                self._done += len(batch)
                self._report("processing documents" if is_doc else "processing interactions")

    # ------------------------------------------------------------------ documents
    def _line_stats(self, s: Session, source_ids: set[int]) -> None:
        missing = [i for i in source_ids if i not in self.lines]
        for source_id, state in s.execute(select(models.Source.id, models.Source.state)
                                          .where(models.Source.id.in_(missing))) if missing else []:
            self.lines[source_id] = LineStats.from_state(((state or {}).get(STATE_KEY) or {}).get("lines"))

    def _documents(self, ids: list[int]) -> None:
        hy = self.cfg.hygiene
        with self.ctx.session() as s:
            rows = s.execute(select(models.Document.id, models.Document.source_id, models.Document.title,
                                    models.Document.text, models.Document.meta, models.Document.version,
                                    models.Document.content_hash).where(models.Document.id.in_(ids))
                             .order_by(models.Document.id)).all()
            if hy.strip_boilerplate:
                self._line_stats(s, {r.source_id for r in rows})
        if hy.strip_boilerplate:
            for r in rows:
                self.lines[r.source_id].add_document(r.text or "")
        docs = []
        for r in rows:
            text = r.text or ""
            if hy.strip_boilerplate:
                text = strip_boilerplate(text, self.lines[r.source_id], self.stats)
            text = scrub(text, hy, self.scrubbed)
            title = scrub(r.title or "", hy, self.scrubbed)
            duplicate = self.documents.check_and_add(text, r.id) if len(text.split()) >= 8 else None
            docs.append((r, title, "" if duplicate is not None else text, duplicate))
        chunked = chunk_documents([d[2] for d in docs], tokenizer=self.tokenizer,
                                  max_tokens=self.cfg.chunking.max_tokens,
                                  overlap_tokens=self.cfg.chunking.overlap_tokens, counter=self.counter)
        plans = []
        for (r, title, text, duplicate), chunks in zip(docs, chunked, strict=True):
            if duplicate is not None:
                self.stats["documents_duplicate"] += 1
                plans.append((r, [], []))
                continue
            skip = {i for i, c in enumerate(chunks) if self.chunks.check_and_add(c.text, r.id * 100000 + i) is not None}
            meta = r.meta or {}
            kinds = self.cfg.examples
            drafts = cpt_examples(title, chunks, skip) if kinds.cpt else []
            if kinds.structure_qa:
                drafts += structure_qa(title, text, chunks, meta.get("properties"), skip)
            if kinds.study:
                drafts += study_examples(title, chunks, skip)
            drafts += self._teach(title, chunks, skip)
            plans.append((r, chunks, drafts))
        if self.cfg.examples.study:
            documents = [(title, plan[1], k) for k, ((_, title, _, _), plan) in enumerate(zip(docs, plans, strict=True))]
            for k, draft in link_examples(documents):
                plans[k][2].append(draft)
        for _, _, drafts in plans:
            self.study.update(d.payload["study"] for d in drafts if d.origin == "study")
        self._count_tokens([d for _, _, drafts in plans for d in drafts])
        with self.ctx.session() as s:
            self._write_documents(s, plans)
            if hy.strip_boilerplate:
                self._save_line_stats(s, {r.source_id for r in rows})

    def _teach(self, title: str, chunks: list[Chunk], skip: set[int]) -> list[Draft]:
        teacher = self._get_teacher()
        if teacher is None:
            return []
        from training.teacher import Passage, TeacherError

        out: list[Draft] = []
        hy = self.cfg.hygiene
        todo = [(i, Passage(title, chunk.heading_path, chunk.text)) for i, chunk in enumerate(chunks) if i not in skip]
        # A local teacher reads a document's passages together (batched generation); a remote one
        # reads them one request at a time, each failure counted on its own.
        read_many = getattr(teacher, "read_many", None)
        readings = read_many([p for _, p in todo]) if read_many is not None and todo else None
        for k, (i, passage) in enumerate(todo):
            chunk = chunks[i]
            if self._teacher is False:
                break
            try:
                reading = readings[k] if readings is not None else teacher.read(passage)
            except TeacherError as exc:
                self.stats["teacher_failures"] += 1
                self._teacher_failures += 1
                log.warning("teacher failed on a chunk of %r: %s", title, exc)
                if self._teacher_failures >= 3:
                    log.warning("teacher failed 3 times in a row; going on without it for this run")
                    self._teacher = False
                continue
            self._teacher_failures = 0
            # Model-written study data is kept only where the passage bears it out.
            for q, a in reading.qa:
                if not grounded(a, f"{title}\n{chunk.text}"):
                    self.stats["teacher_ungrounded"] += 1
                    continue
                out.append(Draft("qa", {"question": scrub(q, hy), "answer": scrub(a, hy)}, "teacher", chunk=i))
            for statement in reading.statements:
                if not grounded(statement, f"{title}\n{chunk.text}", share=0.0):
                    self.stats["teacher_ungrounded"] += 1
                    continue
                out.append(Draft("cpt", {"text": scrub(statement, hy)}, "teacher", chunk=i))
        self.stats["teacher_examples"] += len(out)
        return out

    def _get_teacher(self) -> Any:
        if self._teacher is None:
            from training.teacher import TeacherError, make_teacher

            try:
                self._teacher = make_teacher(self.cfg.training, self.cfg.base_model, self.ctx.data_dir,
                                             redis_url=self.ctx.redis_url) or False
            except TeacherError as exc:
                log.warning("team %s: %s", self.team, exc)
                self.stats["teacher_failures"] += 1
                self._teacher = False
        return self._teacher or None

    def _count_tokens(self, drafts: list[Draft]) -> None:
        for d, n in zip(drafts, self.counter.counts([d.text() for d in drafts]), strict=True):
            d.tokens = n

    def _lock(self, s: Session, model: Any, ids: list[int]) -> dict[int, Any]:
        stmt = select(model.id, model.content_hash, model.processed_hash).where(model.id.in_(ids))
        if s.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        return {r.id: r for r in s.execute(stmt)}

    def _write_documents(self, s: Session, plans: list[tuple[Any, list[Chunk], list[Draft]]]) -> None:
        locked = self._lock(s, models.Document, [r.id for r, _, _ in plans])
        now = utcnow()
        rows: list[dict[str, Any]] = []
        done: list[tuple[int, str]] = []
        for r, chunks, drafts in plans:
            cur = locked.get(r.id)
            if cur is None or cur.content_hash != r.content_hash or cur.processed_hash == r.content_hash:
                self.stats["skipped_concurrent"] += 1
                continue
            res = s.execute(update(models.Chunk).where(models.Chunk.document_id == r.id,
                                                       models.Chunk.document_version != r.version,
                                                       models.Chunk.retired_at.is_(None))
                            .values(retired_at=now).execution_options(synchronize_session=False))
            self.stats["chunks_retired"] += res.rowcount or 0
            chunk_ids: dict[int, int] = {}
            if chunks:
                values = [{"document_id": r.id, "team_id": self.team_id, "document_version": r.version,
                           "ordinal": i, "text": c.text, "token_count": c.token_count,
                           "heading_path": c.heading_path, "content_hash": _sha(c.text), "created_at": now}
                          for i, c in enumerate(chunks)]
                stmt = _insert(s, models.Chunk.__table__).on_conflict_do_nothing(
                    index_elements=["document_id", "document_version", "ordinal"]).returning(models.Chunk.id)
                self.stats["chunks_written"] += len(s.scalars(stmt, values).all())
                chunk_ids = dict(s.execute(select(models.Chunk.ordinal, models.Chunk.id).where(
                    models.Chunk.document_id == r.id, models.Chunk.document_version == r.version)).all())
            for d in drafts:
                rows.append(self._row(d, chunk_id=chunk_ids.get(d.chunk) if d.chunk is not None else None,
                                      document_id=r.id))
            done.append((r.id, r.content_hash))
            self.stats["documents_processed"] += 1
        self._replace(s, derived_from(models.Document, [i for i, _ in done]), rows, "document")
        for doc_id, content_hash in done:
            s.execute(update(models.Document).where(models.Document.id == doc_id)
                      .values(processed_hash=content_hash, team_id=self.team_id)
                      .execution_options(synchronize_session=False))

    def _save_line_stats(self, s: Session, source_ids: set[int]) -> None:
        stmt = select(models.Source).where(models.Source.id.in_(source_ids))
        if s.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        for source in s.scalars(stmt):
            state = dict(source.state or {})
            mine = dict(state.get(STATE_KEY) or {})
            mine["lines"] = self.lines[source.id].to_state()
            state[STATE_KEY] = mine
            source.state = state

    # ------------------------------------------------------------------ examples
    def _row(self, d: Draft, *, chunk_id: int | None = None, document_id: int | None = None) -> dict[str, Any]:
        return {"team_id": self.team_id, "kind": d.kind, "payload": d.payload, "content_hash": d.content_hash,
                "origin": d.origin, "token_count": d.tokens, "chunk_id": chunk_id, "document_id": document_id,
                "interaction_id": d.interaction_id, "created_at": utcnow()}

    def _upsert_examples(self, s: Session, rows: list[dict[str, Any]]) -> set[int]:
        """Insert new examples; an identical retired one comes back (with new provenance), and a
        live one of the same record is kept with its id. Returns the ids written or kept."""
        unique = list({r["content_hash"]: r for r in reversed(rows)}.values())[::-1]
        if not unique:
            return set()
        table = models.Example.__table__
        stmt = _insert(s, table)
        ex = stmt.excluded
        same_record = or_(table.c.retired_at.is_not(None), table.c.document_id == ex.document_id,
                          table.c.interaction_id == ex.interaction_id)
        stmt = stmt.on_conflict_do_update(
            index_elements=["team_id", "content_hash"],
            set_={"retired_at": None, "chunk_id": ex.chunk_id, "document_id": ex.document_id,
                  "interaction_id": ex.interaction_id, "origin": ex.origin, "token_count": ex.token_count},
            where=same_record,
        ).returning(table.c.id)
        # One compiled statement, sent in multi-row batches by SQLAlchemy ("insertmanyvalues").
        return set(s.scalars(stmt, unique))

    def _live(self, s: Session, cond: Any) -> dict[int, int]:
        """Live examples matching `cond`: id → team id."""
        return dict(s.execute(select(models.Example.id, models.Example.team_id)
                              .where(cond, models.Example.retired_at.is_(None))).all())

    def _replace(self, s: Session, cond: Any, rows: list[dict[str, Any]], what: str) -> None:
        """Upsert the examples the records just processed yield and retire the ones (matching
        `cond`) they no longer yield. An example that fed another team before (the record's ACL
        moved it) also flags that team's adapters, as a deletion would."""
        before = self._live(s, cond)
        kept = self._upsert_examples(s, rows)
        self.stats["examples_written"] += len(kept - before.keys())
        stale = [i for i in before if i not in kept]
        moved = [i for i in stale if before[i] != self.team_id]
        retire_examples(s, [i for i in stale if before[i] == self.team_id])
        if moved:
            _, flagged = retire_examples(s, moved, f"a {what} these examples came from now feeds team {self.team}")
            self.stats["adapters_flagged"] += flagged
        self.stats["examples_retired"] += len(stale)

    # ------------------------------------------------------------------ interactions
    def _views(self, s: Session, rows: Sequence[Any], *, tally: bool = True) -> list[InteractionView]:
        hy = self.cfg.hygiene
        titles: dict[tuple[int, str], str] = {}
        wanted = [(r.source_id, r.document_external_id) for r in rows if r.document_external_id]
        for source_id in {w[0] for w in wanted}:
            exts = [e for sid, e in wanted if sid == source_id]
            for batch in batches(exts):
                for d in s.execute(select(models.Document.external_id, models.Document.title)
                                   .where(models.Document.source_id == source_id,
                                          models.Document.external_id.in_(batch))):
                    titles[(source_id, d.external_id)] = scrub(d.title or "", hy)
        views = []
        counts = self.scrubbed if tally else None
        for r in rows:
            messages = [dict(m, text=scrub(str(m.get("text") or ""), hy, counts)) for m in r.messages or []]
            views.append(InteractionView(r.id, r.kind, messages, r.rating,
                                         scrub(r.correction, hy, counts) if r.correction else None,
                                         r.meta or {}, titles.get((r.source_id, r.document_external_id or ""))))
        return views

    def _interactions(self, ids: list[int]) -> None:
        It = models.Interaction
        cols = (It.id, It.source_id, It.kind, It.messages, It.rating, It.correction, It.meta, It.content_hash,
                It.document_external_id, It.acl)
        with self.ctx.session() as s:
            rows = s.execute(select(*cols).where(It.id.in_(ids)).order_by(It.id)).all()
            views = self._views(s, rows)
            feedback = [v for v in views if v.kind == "feedback" and v.rating is not None]
            others = self._rated_feedback(s, cols, {v.id for v in views}, feedback) if feedback else []
        drafts: list[Draft] = []
        for v in views:
            if v.kind == "feedback":
                drafts += feedback_examples(v)
            else:
                draft = chat_from_interaction(v)
                if draft is not None:
                    drafts.append(draft)
        drafts += rated_pairs(feedback, others)
        self._count_tokens(drafts)
        with self.ctx.session() as s:
            locked = self._lock(s, It, ids)
            done = []
            for r in rows:
                cur = locked.get(r.id)
                if cur is None or cur.content_hash != r.content_hash or cur.processed_hash == r.content_hash:
                    self.stats["skipped_concurrent"] += 1
                    continue
                done.append((r.id, r.content_hash))
            ok = {i for i, _ in done}
            rows_out = [self._row(d) for d in drafts if d.interaction_id in ok or d.pair_id in ok]
            self._replace(s, derived_from(It, sorted(ok)), rows_out, "interaction")
            for iid, content_hash in done:
                s.execute(update(It).where(It.id == iid).values(processed_hash=content_hash, team_id=self.team_id)
                          .execution_options(synchronize_session=False))
            self.stats["interactions_processed"] += len(done)

    def _rated_feedback(self, s: Session, cols: Any, exclude: set[int],
                        new: list[InteractionView]) -> list[InteractionView]:
        """Other live, rated feedback of this team asking the same prompts as `new`."""
        keys = {prompt_key(t[0]) for v in new if (t := feedback_turns(v))}
        It = models.Interaction
        out: list[InteractionView] = []
        last = 0
        while True:
            rows = s.execute(select(*cols).where(It.kind == "feedback", It.deleted_at.is_(None), It.rating.is_not(None),
                                                 It.id > last).order_by(It.id).limit(SCAN)).all()
            if not rows:
                return out
            last = rows[-1].id
            parents = parent_teams(s, self.router, rows)
            candidates = [r for r in rows if r.id not in exclude
                          and self.router.team_for(r.source_id, r.acl,
                                                   parents.get((r.source_id, r.document_external_id))) == self.team]
            for v in self._views(s, candidates, tally=False):
                turns = feedback_turns(v)
                if turns and prompt_key(turns[0]) in keys:
                    out.append(v)


def _sha(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()
