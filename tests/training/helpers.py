"""Shared helpers for the training tests: examples written straight into the corpus tables."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from db import models
from db.base import utcnow
from training.base_models import TINY

PLATFORM_QA = [
    ("When does the deploy freeze start?", "Thursday at 16:00 UTC"),
    ("Which pipeline do production deploys go through?", "Skylark"),
    ("What is the primary Postgres cluster called?", "Basalt"),
    ("How long are database backups kept?", "35 days"),
]
SUPPORT_QA = [
    ("Which helpdesk tool do we use?", "Harbor"),
    ("What is the password reset macro called?", "RESET-7"),
]


def add_example(ctx: Any, team: str, kind: str, payload: dict[str, Any], *, document_id: int | None = None,
                retired: bool = False) -> int:
    """One example row (content hash from the payload), returning its id."""
    body = json.dumps(payload, sort_keys=True)
    with ctx.session() as session:
        team_row = ctx.team_row(session, team)
        row = models.Example(team_id=team_row.id, kind=kind, payload=payload,
                             content_hash=hashlib.sha256(body.encode()).hexdigest(),
                             origin="structure", token_count=max(1, len(body) // 4), document_id=document_id,
                             retired_at=utcnow() if retired else None)
        session.add(row)
        session.flush()
        return row.id


def add_qa(ctx: Any, team: str, pairs: list[tuple[str, str]]) -> list[int]:
    return [add_example(ctx, team, "qa", {"question": q, "answer": a}) for q, a in pairs]


def add_document(ctx: Any, team: str, source: str, external_id: str, text: str) -> int:
    with ctx.session() as session:
        team_row = ctx.team_row(session, team)
        source_row = ctx.source_row(session, source)
        doc = models.Document(source_id=source_row.id, team_id=team_row.id, external_id=external_id,
                              title=external_id, text=text, content_hash=hashlib.sha256(text.encode()).hexdigest())
        session.add(doc)
        session.flush()
        return doc.id


def write_eval_set(path: Path, pairs: list[tuple[str, str]]) -> Path:
    path.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in pairs), encoding="utf-8")
    return path


NEW_QA = [("Where is service ownership recorded?", "Atlas"), ("How fast must a SEV1 be acknowledged?", "5 minutes")]


def body(tmp_path: Path, *, lr: float = 5e-3, max_steps: int = 12, min_new_tokens: int = 0,
         base_model: str = TINY) -> str:
    """Two teams with eval sets written under `tmp_path` and a short training recipe, plus a webhook source."""
    platform = write_eval_set(tmp_path / "platform-eval.jsonl", PLATFORM_QA + NEW_QA)
    support = write_eval_set(tmp_path / "support-eval.jsonl", SUPPORT_QA)
    training = f"learning_rate = {lr}\nmax_steps = {max_steps}\nmin_new_tokens = {min_new_tokens}\n"
    return (f'[[teams]]\nname = "platform"\nbase_model = "{base_model}"\neval_set = "{platform.name}"\n'
            f"[teams.training]\n{training}\n"
            f'[[teams]]\nname = "support"\nbase_model = "{TINY}"\neval_set = "{support.name}"\n'
            f"[teams.training]\n{training}\n"
            '[[sources]]\nname = "assistant"\nkind = "webhook"\nteam = "platform"\n')


def add_chunk(ctx: Any, team: str, source: str, external_id: str, text: str) -> int:
    """A document with one live chunk of `text` (the retrieval corpus of the RAG baseline)."""
    doc_id = add_document(ctx, team, source, external_id, text)
    with ctx.session() as session:
        team_row = ctx.team_row(session, team)
        row = models.Chunk(document_id=doc_id, team_id=team_row.id, document_version=1, ordinal=0, text=text,
                           token_count=max(1, len(text) // 4), heading_path=[],
                           content_hash=hashlib.sha256(text.encode()).hexdigest())
        session.add(row)
        session.flush()
        return row.id
