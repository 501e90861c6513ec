"""Processing: chunking throughput beside LangChain and semchunk; corpus → examples end to end.

1. **Chunking** (MB/s) of a generated Markdown corpus (headings, paragraphs, lists, tables,
   code, "key: value" lines; ~50 MB by default) with SmolLM2's tokenizer, at the same chunk
   size (256 tokens, no overlap), one document at a time for every splitter:
   `ingestion.processing.chunking.chunk_markdown`, langchain-text-splitters'
   `RecursiveCharacterTextSplitter.from_huggingface_tokenizer` and `semchunk.chunkerify`.
   All three run on the same slice of the corpus (the baselines run at well under 1 MB/s on
   two cores), in interleaved rounds so that other load on the machine weighs on each alike;
   wall-clock and CPU-time rates are both shown. Tacit then runs on the whole corpus. Chunks
   over the token limit are counted for each splitter, afterwards.
2. **End to end** (documents/s): `process_team` from stored documents to examples, on SQLite and
   on PostgreSQL (a database of its own on the TACIT_TEST_POSTGRES_URL server, dropped after),
   for two corpus sizes, each in a fresh process, with peak memory growth (VmHWM − VmRSS before
   processing): it must not grow with the corpus.

    .venv/bin/python benchmarks/bench_chunking.py [--mb 50] [--slice-mb 4] [--docs 300 1200]

Install the baselines with `pip install -e '.[bench]'`; source `.test-services/env` for PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TACIT_MODELS_DIR", str(ROOT / ".tacit" / "models"))
os.environ.setdefault("TACIT_SECRET_KEY", "ZmRlYWRiZWVmZGVhZGJlZWZkZWFkYmVlZmRlYWRiZWU=")

from connectors.sandbox.runbooks import sentence  # noqa: E402

MAX_TOKENS = 256
WORDS = ("deploy freeze pipeline cluster backup quota service owner catalog incident handoff refund ticket "
         "escalation queue customer enterprise standard response policy database replica region latency budget "
         "the a of to and in is for on with that by this be are from at as it we our team must should will "
         "every week day hour minute Thursday Monday Skylark Basalt Nimbus Atlas Kestrel Harbor Halcyon").split()


# --------------------------------------------------------------------------- corpus
def _sentence(r: random.Random) -> str:
    return sentence(r, words=WORDS, length=(6, 22), largest_number=9999, number_share=0.2, ends=".....?!")


def _para(r: random.Random) -> str:
    return " ".join(_sentence(r) for _ in range(r.randint(1, 7)))


def document(r: random.Random, i: int) -> str:
    out = [f"# Document {i}: {r.choice(WORDS)} {r.choice(WORDS)}", "", _para(r), ""]
    for _ in range(r.randint(2, 6)):
        out += [f"## {r.choice(WORDS).capitalize()} {r.choice(WORDS)}", ""]
        for _ in range(r.randint(1, 4)):
            k = r.random()
            if k < 0.55:
                out += [_para(r), ""]
            elif k < 0.7:
                out += [f"- {_sentence(r)}" for _ in range(r.randint(2, 6))] + [""]
            elif k < 0.8:
                out += ["| Name | Owner | Value |", "|---|---|---|"]
                out += [f"| {r.choice(WORDS)}-{j} | {r.choice(WORDS)} | {r.randint(1, 999)} |"
                        for j in range(r.randint(2, 12))] + [""]
            elif k < 0.9:
                out += ["```python"] + [f"x_{j} = compute({r.randint(0, 99)})  # {r.choice(WORDS)}"
                                        for j in range(r.randint(2, 15))] + ["```", ""]
            else:
                out += [f"{r.choice(WORDS).capitalize()} {r.choice(WORDS)}: {r.choice(WORDS)} {r.randint(1, 99)}"
                        for _ in range(r.randint(2, 5))] + [""]
            if r.random() < 0.3:
                out += [f"### {r.choice(WORDS).capitalize()}", "", _para(r), ""]
    return "\n".join(out)


def corpus(mb: float, seed: int = 0) -> list[str]:
    r = random.Random(seed)
    docs: list[str] = []
    size = 0
    while size < mb * 1e6:
        docs.append(document(r, len(docs)))
        size += len(docs[-1].encode())
    return docs


def megabytes(docs: list[str]) -> float:
    return sum(len(d.encode()) for d in docs) / 1e6


# --------------------------------------------------------------------------- chunking
ROUNDS = 6


def over_limit(tok: Any, chunks: list[str]) -> int:
    encs = tok.backend_tokenizer.encode_batch_fast(chunks, add_special_tokens=False)
    return sum(len(e) > MAX_TOKENS for e in encs)


def bench_chunking(mb: float, slice_mb: float) -> None:
    from ingestion.processing.chunking import chunk_markdown
    from training.base_models import load_tokenizer

    tok = load_tokenizer("smollm2-135m")
    docs = corpus(mb)
    part = corpus(slice_mb, seed=1)
    print(f"corpus: {len(docs)} documents, {megabytes(docs):.1f} MB; slice for all splitters: {len(part)} documents, "
          f"{megabytes(part):.1f} MB in {ROUNDS} interleaved rounds (so a busy machine weighs on all alike); "
          f"SmolLM2 tokenizer, {MAX_TOKENS} tokens, no overlap, one document at a time")

    def tacit(d: str) -> list[str]:
        return [c.text for c in chunk_markdown(d, tokenizer=tok, max_tokens=MAX_TOKENS)]

    splitters: dict[str, Any] = {"tacit": tacit}
    try:
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        splitters["langchain RecursiveCharacterTextSplitter"] = RecursiveCharacterTextSplitter.from_huggingface_tokenizer(
            tok, chunk_size=MAX_TOKENS, chunk_overlap=0).split_text
    except ImportError:
        print("langchain-text-splitters is not installed (pip install -e '.[bench]'): skipped")
    try:
        import semchunk

        splitters["semchunk"] = semchunk.chunkerify(tok, MAX_TOKENS)
    except ImportError:
        print("semchunk is not installed (pip install -e '.[bench]'): skipped")

    wall = dict.fromkeys(splitters, 0.0)
    cpu = dict.fromkeys(splitters, 0.0)
    chunks: dict[str, list[str]] = {name: [] for name in splitters}
    names = list(splitters)
    for r in range(ROUNDS):
        docs_r = part[r::ROUNDS]
        for name in names[r % len(names):] + names[:r % len(names)]:
            w, c = time.perf_counter(), time.process_time()
            for d in docs_r:
                chunks[name].extend(splitters[name](d))
            wall[name] += time.perf_counter() - w
            cpu[name] += time.process_time() - c
    size = megabytes(part)
    print(f"{'splitter':<42} {'MB/s':>6} {'MB/cpu-s':>8} {'chunks':>7} {'over limit':>10} {'tacit is (wall, cpu)':>21}")
    for name in names:
        ratio = "" if name == "tacit" else f"{wall[name] / wall['tacit']:6.2f}x {cpu[name] / cpu['tacit']:6.2f}x"
        print(f"{name:<42} {size / wall[name]:6.2f} {size / cpu[name]:8.2f} {len(chunks[name]):7d} "
              f"{over_limit(tok, chunks[name]):10d} {ratio:>21}")
    w, c = time.perf_counter(), time.process_time()
    out = [t for d in docs for t in tacit(d)]
    w, c = time.perf_counter() - w, time.process_time() - c
    print(f"{'tacit, whole corpus':<42} {megabytes(docs) / w:6.2f} {megabytes(docs) / c:8.2f} {len(out):7d} "
          f"{over_limit(tok, out):10d}")


# --------------------------------------------------------------------------- end to end
def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def worker(url: str, n_docs: int) -> dict[str, Any]:
    """Store `n_docs` documents (plus a thread per ten), then time `process_team` on them."""
    from connectors.base import Document, Interaction, Message
    from ingestion.corpus.runner import ingest_records
    from ingestion.processing.pipeline import process_team
    from tacit.config import parse_config
    from tacit.context import Context
    from training.base_models import load_tokenizer

    data = Path(tempfile.mkdtemp(prefix="tacit-bench-"))
    config = parse_config({
        "storage": {"database_url": url, "data_dir": str(data)},
        "teams": [{"name": "bench", "base_model": "smollm2-135m"}],
        "sources": [{"name": "wiki", "kind": "webhook", "team": "bench"}],
    })
    ctx = Context(config)
    load_tokenizer("smollm2-135m", ctx.data_dir)
    r = random.Random(n_docs)
    records: list[Any] = [Document(external_id=f"d{i}", title=f"Page {i}", text=document(r, i)) for i in range(n_docs)]
    records += [Interaction(external_id=f"t{i}", kind="thread", messages=[
        Message(author="a", text=f"Where is service {i} deployed?"),
        Message(author="b", text=f"Service {i} runs in region eu-west-{i % 3}."),
        Message(author="a", text="Thanks!")]) for i in range(n_docs // 10)]
    ingest_records(ctx, "wiki", records, batch_size=500)
    mb = sum(len(getattr(x, "text", "").encode()) for x in records) / 1e6
    del records
    before = _rss_kb("VmRSS")
    start = time.perf_counter()
    result = process_team(ctx, "bench")
    elapsed = time.perf_counter() - start
    return {"docs": n_docs, "mb": mb, "seconds": elapsed, "docs_per_s": n_docs / elapsed,
            "mb_per_s": mb / elapsed, "peak_growth_mb": (_rss_kb("VmHWM") - before) / 1024,
            "examples": result["examples_written"], "chunks": result["chunks_written"]}


def _postgres_database() -> tuple[str, Any] | None:
    base = os.environ.get("TACIT_TEST_POSTGRES_URL")
    if not base:
        return None
    from sqlalchemy import create_engine, text

    admin = create_engine(os.environ.get("TACIT_TEST_PG_ADMIN_URL") or base, isolation_level="AUTOCOMMIT")
    name = f"bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return base.rsplit("/", 1)[0] + "/" + name, drop


def bench_end_to_end(sizes: list[int]) -> None:
    targets: list[tuple[str, Any]] = [("sqlite", None)]
    if os.environ.get("TACIT_TEST_POSTGRES_URL"):
        targets.append(("postgresql", None))
    else:
        print("TACIT_TEST_POSTGRES_URL is not set (source .test-services/env): PostgreSQL skipped")
    print(f"\n{'database':<11} {'documents':>9} {'MB':>6} {'docs/s':>8} {'MB/s':>6} {'chunks':>7} "
          f"{'examples':>9} {'peak memory growth':>19}")
    for dialect, _ in targets:
        for n in sizes:
            tmp = Path(tempfile.mkdtemp(prefix="tacit-bench-db-"))
            drop = None
            if dialect == "sqlite":
                url = f"sqlite:///{tmp / 'bench.db'}"
            else:
                made = _postgres_database()
                assert made is not None
                url, drop = made
            try:
                proc = subprocess.run([sys.executable, __file__, "--worker", url, str(n)], capture_output=True,
                                      text=True, timeout=1800)
                if proc.returncode != 0:
                    print(proc.stderr[-3000:])
                    raise SystemExit(f"end-to-end worker failed on {dialect}")
                res = json.loads(proc.stdout.strip().splitlines()[-1])
            finally:
                if drop:
                    drop()
            print(f"{dialect:<11} {res['docs']:9d} {res['mb']:6.1f} {res['docs_per_s']:8.1f} {res['mb_per_s']:6.2f} "
                  f"{res['chunks']:7d} {res['examples']:9d} {res['peak_growth_mb']:16.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--mb", type=float, default=50.0, help="size of the generated corpus for Tacit")
    parser.add_argument("--slice-mb", type=float, default=4.0, help="slice on which all splitters run")
    parser.add_argument("--docs", type=int, nargs="+", default=[300, 1200], help="end-to-end corpus sizes")
    parser.add_argument("--skip-chunking", action="store_true")
    parser.add_argument("--worker", nargs=2, metavar=("URL", "DOCS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]))))
        return
    if not args.skip_chunking:
        bench_chunking(args.mb, args.slice_mb)
    bench_end_to_end(args.docs)


if __name__ == "__main__":
    main()
