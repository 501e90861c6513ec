"""Hostile documents: bounded memory and work, a Failure for that item, and the rest of the sync completes.

Through the real connectors and their sandboxes: a Notion page 1,000 blocks deep, a giant page
and an enormous table (more blocks than `max_page_blocks`); Office files that are decompression
bombs (a .docx inflating to 300 MB, an .xlsx part compressed 1000 to 1), an enormous spreadsheet,
HTML nested 20,000 deep, and a text file with invalid UTF-8 and NUL bytes. Memory is measured
with tracemalloc around the sync (peak of everything Python allocates, the connector's reads
included); work is bounded by counting requests and nesting levels, never by the clock.
Invalid UTF-8, NUL characters and lone surrogates through `tacit import` and the webhook route
end in clean rows or a Failure for that line only.
"""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
import tracemalloc
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from connectors.msgraph import ids
from connectors.sandbox.graph import GraphSandbox, files
from connectors.sandbox.graph.state import Identity
from connectors.sandbox.notion import NotionSandbox
from connectors.sandbox.notion.builder import Builder, p, table
from connectors.sandbox.notion.model import Block, Workspace, rich, stable_id
from db import models
from ingestion.corpus.runner import run_sync
from ingestion.processing.pipeline import process_team
from tacit.context import Context

TEAMS = '[[teams]]\nname = "platform"\nbase_model = "tiny-random"\n\n'
MB = 2**20
PEAK_BOUND = 64 * MB


def traced(fn: Callable[[], Any]) -> tuple[Any, int]:
    """Run `fn` under tracemalloc; returns (its result, peak bytes allocated meanwhile)."""
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def failures(ctx: Context) -> dict[str | None, str]:
    """external id -> message of every recorded item failure (ids are unique in these tests)."""
    with ctx.session() as s:
        rows = s.execute(select(models.ItemFailure.external_id, models.ItemFailure.message)).all()
    assert len({r[0] for r in rows}) == len(rows)
    return dict(rows)


def documents(ctx: Context) -> dict[str, models.Document]:
    with ctx.session() as s:
        return {d.external_id: d for d in s.scalars(select(models.Document))}


# ------------------------------------------------------------------------------ Notion
DEPTH = 1000
MAX_BLOCKS = 3000
BLOCK_TEXT = "A paragraph of a giant page. " * 68  # ~2,000 characters: Notion's cap for one text object


def nested(ws: Workspace, page_id: str, depth: int, author: str) -> list[str]:
    """A chain of toggles `depth` levels deep under a page (built without recursion); the block ids."""
    chain: list[str] = []
    parent = {"type": "page_id", "page_id": page_id}
    when = ws.pages[page_id].created
    for level in range(depth):
        block = Block(id=stable_id(f"deep:{level}"), type="toggle",
                      payload={"rich_text": rich(f"Level {level}"), "color": "default"},
                      parent=parent, created=when, edited=when, author=author)
        ws.blocks[block.id] = block
        if chain:
            ws.blocks[chain[-1]].children.append(block.id)
        else:
            ws.pages[page_id].children.append(block.id)
        chain.append(block.id)
        parent = {"type": "block_id", "block_id": block.id}
    return chain


def hostile_workspace() -> tuple[Workspace, dict[str, str], list[str]]:
    """A small Notion workspace with one fine page and the hostile ones: (workspace, key -> page id,
    the ids of the 1,000 nested blocks)."""
    ws = Workspace()
    b = Builder(ws)
    author = stable_id("user:ada")
    b.user(author, "Ada Moreau", "ada@lumenlabs.example")
    b.user(ws.bot_id, "Tacit", bot=True)
    top = {"type": "workspace", "workspace": True}
    pages = {
        "fine": b.page(top, "Deploy policy", [p("The weekly deploy freeze starts every Thursday at 16:00 UTC.")],
                       key="fine", author=author).id,
        "deep": b.page(top, "Deep", [p("Nested below.")], key="deep", author=author).id,
        # 50,000 blocks of 2,000 characters: 100 MB of text if it were all read.
        "giant": b.page(top, "Giant", [p(BLOCK_TEXT)] * 50_000, key="giant", author=author).id,
        # 30,000 rows: over the block budget; 1,000 rows: a big table that is read and processed.
        "enormous_table": b.page(top, "Enormous table", [table([[f"r{i}", "x" * 40, str(i)] for i in range(30_000)])],
                                 key="enormous", author=author).id,
        "big_table": b.page(top, "Big table", [table([["host", "owner", "note"]]
                                                     + [[f"db-{i}", f"team-{i % 7}", "replica " * 8]
                                                        for i in range(1000)])], key="big", author=author).id,
        "nul": b.page(top, "Nul\x00 title", [p("Text with a NUL\x00 inside.")], key="nul", author=author).id,
    }
    return ws, pages, nested(ws, pages["deep"], DEPTH, author)


@pytest.fixture
def notion() -> Iterator[tuple[NotionSandbox, dict[str, str], list[str]]]:
    ws, pages, chain = hostile_workspace()
    with NotionSandbox(ws) as sandbox:
        yield sandbox, pages, chain


def test_notion_hostile_pages(notion: tuple[NotionSandbox, dict[str, str], list[str]],
                              make_ctx: Callable[..., Context], postgres_url: str) -> None:
    sandbox, pages, chain = notion
    block = (f'[[sources]]\nname = "wiki"\nkind = "notion"\nteam = "platform"\ntoken = "{sandbox.token}"\n'
             f'base_url = "{sandbox.url}"\ncomments = "off"\nmax_page_blocks = {MAX_BLOCKS}\nrate_limit = 10000\n')
    ctx = make_ctx(postgres_url, TEAMS + block)
    summary, peak = traced(lambda: run_sync(ctx, "wiki"))
    assert summary.status == "succeeded", summary.error
    # Giant page and enormous table: one Failure each, read no further than the budget.
    failed = failures(ctx)
    assert set(failed) == {pages["giant"], pages["enormous_table"]}
    assert all(f"PageTooLarge: more than {MAX_BLOCKS:,} blocks" in m for m in failed.values())
    assert sandbox.count(f"/v1/blocks/{pages['giant']}/children") == math.ceil((MAX_BLOCKS + 1) / 100)
    table_id = sandbox.workspace.pages[pages["enormous_table"]].children[0]
    assert sandbox.count(f"/v1/blocks/{table_id}/children") == math.ceil(MAX_BLOCKS / 100)
    assert peak < PEAK_BOUND, f"peak {peak / MB:.0f} MB"
    # Everything else is in, cleaned of NUL characters.
    docs = documents(ctx)
    assert set(docs) == {pages[k] for k in ("fine", "deep", "big_table", "nul")}
    assert docs[pages["nul"]].title == "Nul title" and "NUL inside." in docs[pages["nul"]].text
    assert "\x00" not in docs[pages["nul"]].text
    # 1,000 levels deep: read to the depth limit (40 levels below the page), the rest cut and counted.
    deep = docs[pages["deep"]]
    read_levels = sum(1 for block_id in chain if sandbox.count(f"/v1/blocks/{block_id}/children"))
    assert read_levels == 40
    assert "Level 39" in deep.text and "Level 40" not in deep.text
    assert deep.meta["skipped_blocks"] == {"nesting_too_deep": 1}
    # The big table is a document; processing cuts it into chunks within the team's token limit.
    assert docs[pages["big_table"]].text.count("\n| db-") == 1000
    result = process_team(ctx, "platform")
    assert result["documents_processed"] == 4
    with ctx.session() as s:
        chunks = s.execute(select(models.Chunk.document_id, models.Chunk.token_count)).all()
    limit = ctx.config.team("platform").chunking.max_tokens
    assert all(n <= limit for _, n in chunks)
    assert sum(1 for d, _ in chunks if d == docs[pages["big_table"]].id) >= 1000 * 20 // limit


# ------------------------------------------------------------------------------ Microsoft Graph
def _rezip(base: bytes, part: str, write: Callable[[Any], None]) -> bytes:
    """`base` (a real Office file) with `part` rewritten by `write(stream)`."""
    source = zipfile.ZipFile(io.BytesIO(base))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as z:
        for info in source.infolist():
            if info.filename == part:
                with z.open(part, "w", force_zip64=True) as stream:
                    write(stream)
            else:
                z.writestr(info.filename, source.read(info.filename))
    return out.getvalue()


def docx_bomb(inflated: int) -> bytes:
    """A real .docx whose document.xml carries `inflated` bytes of whitespace (legal XML)."""
    base = files.docx_bytes("Bomb", [("Bomb", ["Looks harmless."])])
    xml = zipfile.ZipFile(io.BytesIO(base)).read("word/document.xml")
    head, tail = xml.split(b"<w:body>", 1)

    def write(stream: Any) -> None:
        stream.write(head + b"<w:body>")
        chunk = b" " * MB
        for _ in range(inflated // MB):
            stream.write(chunk)
        stream.write(tail)

    return _rezip(base, "word/document.xml", write)


def xlsx_with_sheet(sheet: Callable[[Any], None]) -> bytes:
    return _rezip(files.xlsx_bytes("Sheet", [("Sheet", ["cell"])]), "xl/worksheets/sheet1.xml", sheet)


def xlsx_ratio_bomb(inflated: int) -> bytes:
    def write(stream: Any) -> None:
        stream.write(b'<?xml version="1.0"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/'
                     b'2006/main"><sheetData>')
        for _ in range(inflated // MB):
            stream.write(b" " * MB)
        stream.write(b"</sheetData></worksheet>")

    return xlsx_with_sheet(write)


def xlsx_enormous(rows: int, cols: int = 10) -> bytes:
    def write(stream: Any) -> None:
        stream.write(b'<?xml version="1.0"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/'
                     b'2006/main"><sheetData>')
        for r in range(1, rows + 1):
            cells = "".join(f'<c r="{chr(65 + c)}{r}"><v>{r * cols + c}</v></c>' for c in range(cols))
            stream.write(f'<row r="{r}">{cells}</row>'.encode())
        stream.write(b"</sheetData></worksheet>")

    return xlsx_with_sheet(write)


BROKEN_TEXT = "Runbook: restart the café queue — naïve résumé\n".encode() + b"a stray \xff byte\x00 and a NUL\x00\n"
BROKEN_TEXT_READ = "Runbook: restart the café queue — naïve résumé\na stray \ufffd byte and a NUL\n"


@pytest.fixture(scope="module")
def hostile_files() -> dict[str, bytes]:
    return {
        "Plan.docx": files.docx_bytes("Plan", [("Plan", ["Deploys go through Skylark."])]),
        "Notes.md": b"# Notes\n\nThe primary Postgres cluster is called Basalt.\n",
        "Broken.txt": BROKEN_TEXT,
        "Bomb.docx": docx_bomb(300 * MB),
        "Bomb.xlsx": xlsx_ratio_bomb(50 * MB),
        "Enormous.xlsx": xlsx_enormous(12_000),
        "Deep.html": b"<html><body>" + b"<div>" * 20_000 + b"deep" + b"</div>" * 20_000 + b"</body></html>",
    }


BOMBS = ("Bomb.docx", "Bomb.xlsx", "Plan.docx")


def test_graph_hostile_files(hostile_files: dict[str, bytes], make_ctx: Callable[..., Context],
                             sqlite_url: str) -> None:
    """Two sites: the bombs beside a fine file (synced under tracemalloc), and the enormous table,
    deep HTML and broken text beside another fine file."""
    with GraphSandbox() as sb:
        st = sb.state
        author = Identity("Ada Moreau", "ada@lumenlabs.example")
        item: dict[str, str] = {}
        blocks = ""
        for site_name, names in (("bombs", BOMBS), ("big", [n for n in hostile_files if n not in BOMBS])):
            site = st.add_site("lumenlabs.sharepoint.com", f"/sites/{site_name}", site_name)
            drive = st.add_drive("Documents", site=site)
            for name in names:
                added = st.add_file(drive.id, f"Files/{name}", hostile_files[name], author=author)
                item[name] = ids.drive_item(drive.id, added.id)
            blocks += (f'[[sources]]\nname = "{site_name}"\nkind = "msgraph"\nteam = "platform"\n'
                       f'access_token = "{sb.static_token}"\nbase_url = "{sb.url}"\n'
                       f'sites = ["lumenlabs.sharepoint.com:/sites/{site_name}"]\nrate_limit = 10000\n\n')
        ctx = make_ctx(sqlite_url, TEAMS + blocks)
        bombs, peak = traced(lambda: run_sync(ctx, "bombs"))
        big = run_sync(ctx, "big")
    assert (bombs.status, big.status) == ("succeeded", "succeeded"), (bombs.error, big.error)
    assert peak < PEAK_BOUND, f"peak {peak / MB:.0f} MB while a file declared 300 MB"
    failed = failures(ctx)
    assert set(failed) == {item[n] for n in ("Bomb.docx", "Bomb.xlsx", "Enormous.xlsx", "Deep.html")}
    declared = sum(m.file_size for m in zipfile.ZipFile(io.BytesIO(hostile_files["Bomb.docx"])).infolist())
    assert f"it would inflate to {declared / MB:.0f} MB (more than 100 MB): a decompression bomb" \
        in failed[item["Bomb.docx"]]
    assert "xl/worksheets/sheet1.xml is compressed 10" in failed[item["Bomb.xlsx"]]
    assert "more than 100,000 cells (sheet 'Sheet'): an enormous table" in failed[item["Enormous.xlsx"]]
    assert "nested too deeply" in failed[item["Deep.html"]]
    docs = documents(ctx)
    assert set(docs) == {item[n] for n in ("Plan.docx", "Notes.md", "Broken.txt")}
    # Invalid UTF-8 bytes become U+FFFD, NUL bytes are dropped, the valid text is kept as it was.
    assert docs[item["Broken.txt"]].text == "Location: big / Documents / Files / Broken.txt\n\n" + BROKEN_TEXT_READ
    assert "Skylark" in docs[item["Plan.docx"]].text and "Basalt" in docs[item["Notes.md"]].text


# ------------------------------------------------------------------------------ import and webhook
HOSTILE_LINES = [
    json.dumps({"type": "document", "external_id": "ok", "title": "Fine", "text": "plain"}).encode(),
    b'{"type": "document", "external_id": "latin1", "title": "x", "text": "caf\xe9"}',  # not UTF-8
    json.dumps({"type": "document", "external_id": "nul", "title": "a\u0000b", "text": "t\u0000x",
                "url": "https://x.example/\u0000", "authors": ["ada\u0000"], "metadata": {"k": "v\u0000"}}).encode(),
    b'{"type": "document", "external_id": "surrogate", "title": "s", "text": "lone \\ud800 here"}',
    b'{"type": "document", "external_id": "cut", "title": "s", "text": "no end',
    json.dumps({"type": "interaction", "external_id": "chat", "kind": "chat",
                "messages": [{"role": "user", "text": "q\u0000?"}, {"role": "assistant", "text": "\udfffa"}]}).encode(),
]
EXPECTED = {
    "ok": ("Fine", "plain", None, [], {}),
    "nul": ("ab", "tx", "https://x.example/", ["ada"], {"k": "v"}),
    "surrogate": ("s", "lone \ufffd here", None, [], {}),
}


def _stored_rows(ctx: Context) -> tuple[dict[str, tuple[Any, ...]], dict[str, list[str]]]:
    with ctx.session() as s:
        docs = {d.external_id: (d.title, d.text, d.url, d.authors, d.meta) for d in s.scalars(select(models.Document))}
        chats = {i.external_id: [m["text"] for m in i.messages] for i in s.scalars(select(models.Interaction))}
    return docs, chats


def test_import_with_invalid_utf8_nul_and_surrogates(write_config: Callable[..., Path], tmp_path: Path, postgres_url: str) -> None:
    """One bad line is a Failure for that line; NUL characters and lone surrogates anywhere in a
    record are cleaned (PostgreSQL text and JSON cannot hold them) instead of failing the batch."""
    config = write_config(tmp_path, postgres_url, TEAMS + '[[sources]]\nname = "assistant"\nkind = "webhook"\n'
                                                          'team = "platform"\n')
    (tmp_path / "hostile.jsonl").write_bytes(b"\n".join(HOSTILE_LINES) + b"\n")
    proc = subprocess.run([sys.executable, "-m", "tacit.cli", "--config", str(config), "import", "hostile.jsonl",
                           "--source", "assistant"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "3 documents written" in proc.stdout and "2 failures" in proc.stdout
    ctx = Context.load(config)
    docs, chats = _stored_rows(ctx)
    assert docs == EXPECTED
    assert chats == {"chat": ["q?", "\ufffda"]}
    with ctx.session() as s:
        messages = sorted(s.scalars(select(models.ItemFailure.message)))
    assert messages == ["hostile.jsonl line 2: not valid UTF-8",
                        "hostile.jsonl line 5: malformed JSON: Unterminated string starting at at line 1 column 66"]
    with ctx.session() as s:
        assert [e.status for e in s.scalars(select(models.WebhookEvent))] == ["processed"]


def test_webhook_with_nul_and_surrogates_stores_clean_rows(make_ctx: Callable[..., Context], postgres_url: str) -> None:
    from fastapi.testclient import TestClient

    from ingestion.api.app import create_app
    from ingestion.corpus.events import pending_event_ids, process_event

    ctx = make_ctx(postgres_url, TEAMS + '[[sources]]\nname = "assistant"\nkind = "webhook"\nteam = "platform"\n')
    good = [json.loads(HOSTILE_LINES[i]) for i in (0, 2, 5)] + [
        {"type": "document", "external_id": "surrogate", "title": "s", "text": "lone \ud800 here"}]
    body = json.dumps(good).encode("utf-8", "surrogatepass")  # ensure_ascii: "\\ud800" escapes
    with TestClient(create_app(ctx)) as client:
        accepted = client.post("/webhooks/assistant", content=body, headers={"content-type": "application/json",
                                                                             "webhook-id": "hostile-1"})
        refused = client.post("/webhooks/assistant", content=HOSTILE_LINES[1],
                              headers={"content-type": "application/json", "webhook-id": "hostile-2"})
    assert accepted.status_code == 202, accepted.text
    assert refused.status_code == 400 and "not valid UTF-8" in refused.text
    for event_id in pending_event_ids(ctx):
        process_event(ctx, event_id)
    docs, chats = _stored_rows(ctx)
    assert docs == EXPECTED and chats == {"chat": ["q?", "\ufffda"]}
    with ctx.session() as s:
        assert sorted((e.delivery_id, e.status) for e in s.scalars(select(models.WebhookEvent))) == [
            ("hostile-1", "processed"), ("hostile-2", "rejected")]
