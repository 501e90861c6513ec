"""The persistent near-duplicate index: a copy is caught in a later run; a deleted original or a
document's own earlier keys are no reason to drop anything; a torn record is ignored."""

from __future__ import annotations

import random
from typing import Any

from connectors.base import Document, Tombstone
from connectors.sandbox.runbooks import page
from ingestion.corpus.runner import ingest_records
from ingestion.processing.dedup_index import PersistentDuplicateIndex
from ingestion.processing.pipeline import process_team


def _team_id(ctx: Any) -> int:
    with ctx.session() as session:
        return ctx.team_row(session, "platform").id


def test_a_copy_of_a_deleted_page_is_kept_and_an_edit_is_not_its_own_copy(make_ctx: Any, sqlite_url: str) -> None:
    r = random.Random(11)
    ctx = make_ctx(sqlite_url)
    original = Document(external_id="page-1", title="Runbook 1", text=page(r, 1))
    ingest_records(ctx, "assistant", [original])
    assert process_team(ctx, "platform")["documents_duplicate"] == 0

    edited = Document(external_id="page-1", title="Runbook 1", text=original.text + "\n\nOne more line here.")
    ingest_records(ctx, "assistant", [edited])
    assert process_team(ctx, "platform")["documents_duplicate"] == 0  # its own earlier keys do not count

    ingest_records(ctx, "assistant", [Tombstone(external_id="page-1")])
    process_team(ctx, "platform")
    copy = Document(external_id="page-1-copy", title="Runbook 1 copy", text=original.text)
    ingest_records(ctx, "assistant", [copy])
    assert process_team(ctx, "platform")["documents_duplicate"] == 0  # the original is gone: keep the copy


def test_keys_survive_a_new_index_and_a_torn_record(make_ctx: Any, sqlite_url: str) -> None:
    ctx = make_ctx(sqlite_url)
    text = page(random.Random(5), 5)
    first = PersistentDuplicateIndex(ctx, _team_id(ctx), 0.8)
    ingest_records(ctx, "assistant", [Document(external_id="p", title="P", text=text)])
    assert first.check_and_add(text, 1) is None
    with first.path.open("ab") as fh:
        fh.write(b"\x01\x02\x03")  # a crash in the middle of an append
    second = PersistentDuplicateIndex(ctx, _team_id(ctx), 0.8)
    assert second.check_and_add(text.replace("Runbook", "Run book"), 2) == 1
    assert second.check_and_add(text, 1) is None  # the document itself, processed again
