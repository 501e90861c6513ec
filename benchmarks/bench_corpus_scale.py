"""Incremental sync and processing time on a 1-million-chunk PostgreSQL corpus, beside a 10k-chunk one.

Two fresh databases on the TACIT_TEST_POSTGRES_URL server (dropped afterwards), each holding one
team's corpus already processed: documents (10 chunks each), their chunks, and one continued-
pretraining example per chunk, loaded with COPY. Then, on each, in the same run:

* **incremental sync**: 100 existing documents change (new text) and are written through the
  runner (`ingest_records`, the path of `tacit import`, webhooks and targeted fetches);
* **incremental processing**: `process_team` brings chunks and examples up to date with them
  (retires the old version's chunks and examples, chunks the new text, writes its examples).

Each is measured over several rounds (median). The anchor is the 10k-chunk corpus: the ratio
large / small should stay near 1 (flat), since only the changed documents are read and every
query that touches the big tables goes through an index. Generation stops after `--budget-s`
seconds (default 300) if the machine cannot load the full million in that time; the output then
says how many chunks the large corpus holds.

    source .test-services/env && .venv/bin/python benchmarks/bench_corpus_scale.py \\
        [--chunks 1000000] [--small 10000] [--rounds 3] [--budget-s 300]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TACIT_MODELS_DIR", str(ROOT / ".tacit" / "models"))
os.environ.setdefault("TACIT_SECRET_KEY", "ZmRlYWRiZWVmZGVhZGJlZWZkZWFkYmVlZmRlYWRiZWU=")

from connectors.sandbox.runbooks import WORDS, sentence  # noqa: E402

CHUNKS_PER_DOC = 10
CHANGED = 100
BLOCK_DOCS = 5000  # documents per COPY block (with their chunks and examples)
BODY = ('[queue]\nbroker_url = "memory://"\n\n'
        '[[teams]]\nname = "platform"\nbase_model = "tiny-random"\n\n'
        '[[sources]]\nname = "assistant"\nkind = "webhook"\nteam = "platform"\n')


def changed_text(r: random.Random, i: int, round_no: int) -> str:
    """A realistic Markdown page (~10 chunks of 256 tokens) for a changed document."""
    out = [f"# Runbook {i} (revision {round_no})"]
    for s in range(CHUNKS_PER_DOC):
        out += ["", f"## Step {s}", "", " ".join(sentence(r, length=(8, 18), largest_number=999999) for _ in range(12))]
    return "\n".join(out)


# --------------------------------------------------------------------------- loading
def create_database(admin_url: str, base_url: str) -> tuple[str, str]:
    from sqlalchemy import create_engine, text

    name = f"bench_scale_{uuid.uuid4().hex[:10]}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return name, base_url.rsplit("/", 1)[0] + "/" + name


def drop_database(admin_url: str, name: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def make_context(url: str, work: Path) -> Any:
    from tacit.config import load_config
    from tacit.context import Context
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)
    config = work / "tacit.toml"
    config.write_text(f'[storage]\ndatabase_url = "{url}"\ndata_dir = ".tacit"\n\n{BODY}', encoding="utf-8")
    return Context(load_config(config))


def load_corpus(ctx: Any, url: str, chunks: int, budget_s: float) -> dict[str, Any]:
    """COPY documents, chunks and examples (already processed) until `chunks` or the time budget."""
    import psycopg
    from sqlalchemy import select

    from db import models

    with ctx.session() as s:
        source = s.scalar(select(models.Source).where(models.Source.name == "assistant"))
        source_id, team_id = source.id, source.team_id
    docs_wanted = max(1, chunks // CHUNKS_PER_DOC)
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    now = datetime.now(UTC)
    started = time.perf_counter()
    loaded = 0
    with psycopg.connect(dsn, autocommit=False) as conn:
        while loaded < docs_wanted:
            if time.perf_counter() - started > budget_s:
                break
            first, last = loaded, min(docs_wanted, loaded + BLOCK_DOCS)
            with conn.cursor() as cur:
                with cur.copy("COPY documents (id, source_id, team_id, external_id, title, text, authors, acl, "
                              "metadata, content_hash, version, processed_hash, ingested_at, updated_at) "
                              "FROM STDIN") as copy:
                    for d in range(first, last):
                        body = "\n\n".join(f"## Part {c}\n\nDocument {d} part {c}: the {WORDS[(d + c) % 40]} "
                                           f"of shard {d * CHUNKS_PER_DOC + c} is owned by team {d % 7}."
                                           for c in range(CHUNKS_PER_DOC))
                        digest = hashlib.sha256(f"doc-{d}".encode()).hexdigest()
                        copy.write_row((d + 1, source_id, team_id, f"doc-{d}", f"Document {d}", body, "[]",
                                        '["team:platform"]', "{}", digest, 1, digest, now, now))
                with cur.copy("COPY chunks (id, document_id, team_id, document_version, ordinal, text, token_count, "
                              "heading_path, content_hash, created_at) FROM STDIN") as copy:
                    for d in range(first, last):
                        for c in range(CHUNKS_PER_DOC):
                            n = d * CHUNKS_PER_DOC + c
                            text = (f"Document {d} part {c}: the {WORDS[(d + c) % 40]} of shard {n} is owned by "
                                    f"team {d % 7}.")
                            copy.write_row((n + 1, d + 1, team_id, 1, c, text, 24, f'["Part {c}"]',
                                            hashlib.sha256(text.encode()).hexdigest(), now))
                with cur.copy("COPY examples (id, team_id, kind, payload, content_hash, origin, token_count, "
                              "chunk_id, document_id, created_at) FROM STDIN") as copy:
                    for d in range(first, last):
                        for c in range(CHUNKS_PER_DOC):
                            n = d * CHUNKS_PER_DOC + c
                            payload = json.dumps({"text": f"Document {d} part {c}: the {WORDS[(d + c) % 40]} of "
                                                          f"shard {n} is owned by team {d % 7}."})
                            copy.write_row((n + 1, team_id, "cpt", payload,
                                            hashlib.sha256(f"example-{n}".encode()).hexdigest(), "chunk", 24,
                                            n + 1, d + 1, now))
            conn.commit()
            loaded = last
        with conn.cursor() as cur:
            for table in ("documents", "chunks", "examples"):
                cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                            f"(SELECT COALESCE(MAX(id), 1) FROM {table}))")
            cur.execute("ANALYZE documents; ANALYZE chunks; ANALYZE examples")
        conn.commit()
    return {"documents": loaded, "chunks": loaded * CHUNKS_PER_DOC, "load_s": time.perf_counter() - started,
            "complete": loaded >= docs_wanted}


# --------------------------------------------------------------------------- measuring
def measure(ctx: Any, documents: int, rounds: int, seed: int) -> dict[str, Any]:
    from connectors.base import Document
    from ingestion.corpus.runner import ingest_records
    from ingestion.processing.pipeline import process_team
    from training.base_models import load_tokenizer

    load_tokenizer("tiny-random", ctx.data_dir)  # loaded once per process: not part of any figure
    started = time.perf_counter()
    first = process_team(ctx, "platform")  # first run after the load: routing fingerprint, nothing pending
    prime_s = time.perf_counter() - started
    assert first["documents_processed"] == 0, first
    r = random.Random(seed)
    sync_s, process_s = [], []
    for round_no in range(1, rounds + 1):
        ids = r.sample(range(documents), min(CHANGED, documents))
        records = [Document(external_id=f"doc-{i}", title=f"Document {i}", text=changed_text(r, i, round_no),
                            acl=["team:platform"]) for i in ids]
        t0 = time.perf_counter()
        summary = ingest_records(ctx, "assistant", records)
        t1 = time.perf_counter()
        result = process_team(ctx, "platform")
        t2 = time.perf_counter()
        assert summary.documents_written == len(ids), summary
        assert result["documents_processed"] == len(ids), result
        assert result["chunks_retired"] >= len(ids) and result["examples_written"] > 0, result
        sync_s.append(t1 - t0)
        process_s.append(t2 - t1)
    return {"prime_s": prime_s, "sync_s": statistics.median(sync_s), "process_s": statistics.median(process_s),
            "sync_all": sync_s, "process_all": process_s}


def run_size(admin: str, base: str, chunks: int, rounds: int, budget_s: float, work: Path) -> dict[str, Any]:
    name, url = create_database(admin, base)
    try:
        ctx = make_context(url, work / name)
        corpus = load_corpus(ctx, url, chunks, budget_s)
        print(f"  loaded {corpus['chunks']:,} chunks ({corpus['documents']:,} documents, as many examples) "
              f"in {corpus['load_s']:.0f} s" + ("" if corpus["complete"] else
                                                f" — stopped at the {budget_s:.0f} s budget"), flush=True)
        times = measure(ctx, corpus["documents"], rounds, seed=chunks)
        from db.session import get_engine

        get_engine(url).dispose()
        return {**corpus, **times}
    finally:
        drop_database(admin, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=1_000_000, help="chunks of the large corpus")
    parser.add_argument("--small", type=int, default=10_000, help="chunks of the anchor corpus")
    parser.add_argument("--rounds", type=int, default=3, help="incremental rounds per corpus (median)")
    parser.add_argument("--budget-s", type=float, default=300.0, help="longest time to spend loading the large corpus")
    args = parser.parse_args()
    base = os.environ.get("TACIT_TEST_POSTGRES_URL")
    if not base:
        sys.exit("set TACIT_TEST_POSTGRES_URL (source .test-services/env)")
    admin = os.environ.get("TACIT_TEST_PG_ADMIN_URL") or base
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    print(f"corpus scale on PostgreSQL: {CHANGED} changed documents per round, {args.rounds} rounds (median)")
    print(f"anchor corpus ({args.small:,} chunks):", flush=True)
    small = run_size(admin, base, args.small, args.rounds, 3600, work)
    print(f"large corpus ({args.chunks:,} chunks wanted):", flush=True)
    large = run_size(admin, base, args.chunks, args.rounds, args.budget_s, work)
    print()
    print(f"{'':<34}{'anchor':>12}{'large':>12}{'ratio':>8}")
    print(f"{'chunks in the corpus':<34}{small['chunks']:>12,}{large['chunks']:>12,}"
          f"{large['chunks'] / small['chunks']:>8.0f}")
    for key, label in (("sync_s", f"incremental sync, {CHANGED} docs (s)"),
                       ("process_s", f"incremental processing, {CHANGED} docs (s)")):
        print(f"{label:<34}{small[key]:>12.3f}{large[key]:>12.3f}{large[key] / small[key]:>8.2f}")
    print(f"{'first processing run after load (s)':<34}{small['prime_s']:>12.3f}{large['prime_s']:>12.3f}"
          f"{large['prime_s'] / small['prime_s']:>8.2f}")
    print("rounds (sync s / processing s): anchor "
          + ", ".join(f"{a:.3f}/{b:.3f}" for a, b in zip(small["sync_all"], small["process_all"], strict=True))
          + "; large " + ", ".join(f"{a:.3f}/{b:.3f}" for a, b in zip(large["sync_all"], large["process_all"],
                                                                       strict=True)))
    if not large["complete"]:
        print(f"note: the large corpus holds {large['chunks']:,} chunks, not {args.chunks:,}: loading stopped at the "
              f"{args.budget_s:.0f} s budget on this machine")


if __name__ == "__main__":
    main()
