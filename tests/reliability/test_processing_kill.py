"""A `tacit process` killed with SIGKILL half-way, then run again, ends exactly where an uninterrupted run ends.

Two PostgreSQL databases hold the same corpus (documents with headings, lists and tables; chat
threads; rated feedback). One is processed without interruption. On the other a real `tacit
process` subprocess is SIGKILLed once part of the corpus is processed and part is not, then run
again to the end. The chunks and the examples of both are compared as sets of content hashes with
their provenance: identical, and no row twice.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from connectors.base import Document, Interaction
from connectors.sandbox.runbooks import WORDS, page, sentence
from db import models
from ingestion.corpus.runner import ingest_records
from ingestion.processing.pipeline import process_team
from tacit.context import Context

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

DOCS = 400
def corpus() -> list[Document | Interaction]:
    """The same records every time: pages, chat threads on pages, and rated feedback on the same
    prompts (preference pairs)."""
    r = random.Random(20261126)
    records: list[Document | Interaction] = [
        Document(external_id=f"page-{i}", title=f"Runbook {i}", text=page(r, i),
                 metadata={"properties": {"Owner": r.choice(["Ada", "Bram", "Chen"])}}) for i in range(DOCS)]
    for i in range(60):
        records.append(Interaction(external_id=f"chat-{i}", kind="thread", document_external_id=f"page-{i}",
                                   messages=[{"role": "user", "text": f"How do I run step {i % 4}? {sentence(r)}"},
                                             {"role": "assistant", "text": sentence(r)}]))
    for i in range(40):
        records.append(Interaction(external_id=f"feedback-{i}", kind="feedback", rating=1 if i % 2 else -1,
                                   messages=[{"role": "user", "text": f"Who owns the {WORDS[i % 10]} budget?"},
                                             {"role": "assistant", "text": sentence(r)}]))
    return records


def outcome(ctx: Context) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Chunks and examples as rows of (provenance, content hash, ...), sorted; live and retired alike."""
    with ctx.session() as s:
        doc = dict(s.execute(select(models.Document.id, models.Document.external_id)).all())
        inter = dict(s.execute(select(models.Interaction.id, models.Interaction.external_id)).all())
        ordinal = dict(s.execute(select(models.Chunk.id, models.Chunk.ordinal)).all())
        chunks = sorted((doc[c.document_id], c.document_version, c.ordinal, c.content_hash, c.token_count,
                         c.heading_path and tuple(c.heading_path), c.retired_at is None)
                        for c in s.scalars(select(models.Chunk)))
        examples = sorted((e.kind, e.content_hash, e.origin, e.token_count, doc.get(e.document_id),
                           inter.get(e.interaction_id), ordinal.get(e.chunk_id), e.retired_at is None)
                          for e in s.scalars(select(models.Example)))
    return chunks, examples


def processed(ctx: Context) -> tuple[int, int]:
    """(records processed, records in all)."""
    with ctx.session() as s:
        done = total = 0
        for model in (models.Document, models.Interaction):
            total += s.scalar(select(func.count()).select_from(model)) or 0
            done += s.scalar(select(func.count()).select_from(model).where(
                model.processed_hash == model.content_hash)) or 0
    return done, total


def test_sigkill_mid_processing_then_rerun_equals_an_uninterrupted_run(default_sources: str, default_teams: str, write_config: Callable[..., Path], tmp_path: Path, postgres_url: str,
                                                                       second_postgres_url: str, make_ctx: Any) -> None:
    records = corpus()
    reference = make_ctx(second_postgres_url)
    ingest_records(reference, "assistant", records)
    process_team(reference, "platform")
    expected_chunks, expected_examples = outcome(reference)
    assert len(expected_chunks) > DOCS and len(expected_examples) > 4 * DOCS

    work = tmp_path / "work"
    work.mkdir()
    config = write_config(work, postgres_url, default_teams + default_sources)
    ctx = Context.load(config)
    ingest_records(ctx, "assistant", records)
    log = work / "process.log"
    argv = [sys.executable, "-m", "tacit.cli", "--config", str(config), "process", "platform"]
    proc = subprocess.Popen(argv, cwd=work, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 240
    done, total = processed(ctx)
    while done < total // 4 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
        done, total = processed(ctx)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done, total = processed(ctx)
    assert 0 < done < total, f"not killed mid-way: {done} of {total} processed\n{log.read_text()[-2000:]}"

    again = subprocess.run(argv, cwd=work, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert processed(ctx) == (total, total)
    chunks, examples = outcome(ctx)
    assert len(set(chunks)) == len(chunks) and len(set(examples)) == len(examples)  # nothing twice
    assert chunks == expected_chunks
    assert examples == expected_examples


def test_a_near_copy_is_caught_across_runs_as_within_one(make_ctx: Any, sqlite_url: str) -> None:
    r = random.Random(7)
    original = Document(external_id="page-3", title="Runbook 3", text=page(r, 3))
    copy = Document(external_id="page-copy", title="Runbook 3 (copy)",
                    text=original.text.replace("Runbook 3", "Runbook 3 copy"))
    together = make_ctx(sqlite_url)
    ingest_records(together, "assistant", [original, copy])
    assert process_team(together, "platform")["documents_duplicate"] == 1  # one run: the copy is caught
    apart = make_ctx(sqlite_url.replace("tacit.db", "apart.db"))
    ingest_records(apart, "assistant", [original])
    process_team(apart, "platform")
    ingest_records(apart, "assistant", [copy])
    assert process_team(apart, "platform")["documents_duplicate"] == 1
