"""Files to Markdown: docx (python-docx), pptx (python-pptx), xlsx (openpyxl), pdf (pypdf), html
(beautifulsoup4), md and txt.

`to_markdown(name, mime, data)` returns Markdown, or raises `Unsupported` (a type we do not read:
skipped and counted) or `Unreadable` (corrupt or encrypted: a `Failure` for that item only).
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable, Iterable

from bs4 import BeautifulSoup, NavigableString, Tag

#: Office files are zip archives, and their readers inflate every part they need into memory
#: (an XML part then grows several times over as a tree). The declared sizes bound what `zipfile`
#: inflates (it stops there and checks the CRC), so they are checked before any reader opens the
#: file: more than this in all, or one member compressed more than `MAX_ZIP_RATIO` to one, is a
#: decompression bomb (or no document anyone reads) and becomes a Failure for that file alone.
#: (Apache POI's `ZipSecureFile` refuses the same 100-to-1 ratio by default.)
MAX_UNZIPPED_BYTES = 100 * 1024 * 1024
MAX_ZIP_RATIO = 100
ZIP_KINDS = frozenset({"docx", "pptx", "xlsx"})
#: Spreadsheet cells read at most (empty cells in the used range count): an enormous table is data,
#: not text to learn from, and reading it has to stop somewhere.
MAX_CELLS = 100_000


class Unsupported(Exception):
    """A file type the connector does not convert; the message is the reason counted in the stats."""


class Unreadable(Exception):
    """The file is corrupt or encrypted; the message says which."""


def kind_of(name: str, mime: str | None = None) -> str:
    """The converter key of a file: its extension, or one derived from the MIME type."""
    suffix = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if suffix in CONVERTERS:
        return suffix
    by_mime = {"text/html": "html", "text/markdown": "md", "text/plain": "txt", "application/pdf": "pdf"}
    return by_mime.get((mime or "").split(";")[0].strip().lower(), suffix or (mime or "unknown"))


def to_markdown(name: str, mime: str | None, data: bytes) -> str:
    kind = kind_of(name, mime)
    converter = CONVERTERS.get(kind)
    if converter is None:
        raise Unsupported(f"unsupported type .{kind}" if "/" not in kind else f"unsupported type {kind}")
    try:
        if kind in ZIP_KINDS:
            check_archive(data)
        text = converter(data)
    except (Unreadable, Unsupported):
        raise
    except RecursionError:
        raise Unreadable(f"cannot read {name}: nested too deeply") from None
    except Exception as exc:  # every reader raises its own errors on a damaged file
        raise Unreadable(f"cannot read {name} as .{kind}: corrupt or truncated file ({type(exc).__name__})") from None
    return _tidy(text)


def check_archive(data: bytes) -> None:
    """Refuse a zip whose members would inflate past `MAX_UNZIPPED_BYTES` or by more than
    `MAX_ZIP_RATIO` (a file that is no zip at all is left for its reader to call corrupt)."""
    try:
        members = zipfile.ZipFile(io.BytesIO(data)).infolist()
    except (zipfile.BadZipFile, ValueError, OSError):
        return
    total = sum(m.file_size for m in members)
    if total > MAX_UNZIPPED_BYTES:
        raise Unreadable(f"it would inflate to {total / 2**20:.0f} MB (more than {MAX_UNZIPPED_BYTES / 2**20:.0f} "
                         "MB): a decompression bomb, not read")
    for m in members:
        if m.file_size > 2**20 and m.file_size > MAX_ZIP_RATIO * max(1, m.compress_size):
            raise Unreadable(f"{m.filename} is compressed {m.file_size // max(1, m.compress_size)} to 1 (more than "
                             f"{MAX_ZIP_RATIO} to 1): a decompression bomb, not read")


def _tidy(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\x00", "")
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _table(rows: list[list[str]]) -> str:
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        return ""
    width = max(len(r) for r in rows)
    rows = [r + [""] * (width - len(r)) for r in rows]
    out = ["| " + " | ".join(_cell(c) for c in rows[0]) + " |", "|" + " --- |" * width]
    out += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows[1:]]
    return "\n".join(out)


# --------------------------------------------------------------------------- docx
def docx_to_markdown(data: bytes) -> str:
    from docx import Document
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    doc = Document(io.BytesIO(data))
    out: list[str] = []
    for block in doc.iter_inner_content():
        if isinstance(block, Paragraph):
            text = block.text.strip()
            if not text:
                continue
            style = (block.style.name if block.style is not None else "") or ""
            if style == "Title":
                out.append(f"# {text}")
            elif style.startswith("Heading"):
                level = int(style.split()[-1]) if style.split()[-1].isdigit() else 1
                out.append(f"{'#' * min(level, 6)} {text}")
            elif "List" in style:
                out.append(f"- {text}")
            else:
                out.append(text)
        elif isinstance(block, Table):
            out.append(_table([[cell.text for cell in row.cells] for row in block.rows]))
    return "\n\n".join(out)


# --------------------------------------------------------------------------- pptx
def pptx_to_markdown(data: bytes) -> str:
    from pptx import Presentation

    prs = Presentation(io.BytesIO(data))
    out: list[str] = []
    for number, slide in enumerate(prs.slides, start=1):
        title_shape = slide.shapes.title
        title = title_shape.text_frame.text.strip() if title_shape is not None and title_shape.has_text_frame else ""
        out.append(f"## Slide {number}" + (f": {title}" if title else ""))
        title_id = title_shape.shape_id if title_shape is not None else None
        for shape in slide.shapes:
            if shape.shape_id == title_id:
                continue
            if shape.has_text_frame:
                for para in shape.text_frame.paragraphs:
                    text = "".join(run.text for run in para.runs).strip()
                    if text:
                        out.append(("  " * para.level) + f"- {text}")
            elif getattr(shape, "has_table", False) and shape.has_table:
                out.append(_table([[c.text for c in row.cells] for row in shape.table.rows]))
        if slide.has_notes_slide:
            notes = slide.notes_slide.notes_text_frame.text.strip() if slide.notes_slide.notes_text_frame else ""
            if notes:
                out.append(f"Notes: {notes}")
    return "\n\n".join(out)


# --------------------------------------------------------------------------- xlsx
def xlsx_to_markdown(data: bytes) -> str:
    from openpyxl import load_workbook

    wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    out: list[str] = []
    cells = 0
    try:
        for ws in wb.worksheets:
            rows = []
            for row in ws.iter_rows(values_only=True):
                cells += len(row)
                if cells > MAX_CELLS:
                    raise Unreadable(f"more than {MAX_CELLS:,} cells (sheet {ws.title!r}): an enormous table, not read")
                rows.append(["" if v is None else str(v) for v in row])
            table = _table(rows)
            if table:
                out += [f"## {ws.title}", table]
    finally:
        wb.close()
    return "\n\n".join(out)


# --------------------------------------------------------------------------- pdf
def pdf_to_markdown(data: bytes) -> str:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted:
        try:
            opened = reader.decrypt("")  # an owner password only: readable without a user password
        except Exception:
            opened = 0
        if not opened:
            raise Unreadable("the PDF is encrypted (password protected)")
    pages = [(page.extract_text() or "").strip() for page in reader.pages]
    return "\n\n".join(p for p in pages if p)


# --------------------------------------------------------------------------- html
_BLOCKS = {"p", "div", "section", "article", "header", "footer", "main", "blockquote", "pre", "table", "ul", "ol",
           "dl", "figure", "hr", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6"}


def html_to_markdown(html: str | bytes) -> str:
    """Readable Markdown from HTML: headings, list items, paragraphs, tables; scripts and styles dropped."""
    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "head", "noscript", "template"]):
        tag.decompose()
    return _tidy("".join(_render(soup.body or soup)))


def _render(node: Tag | NavigableString) -> Iterable[str]:
    if isinstance(node, NavigableString):
        if node.__class__.__name__ in ("Comment", "Doctype", "Declaration", "ProcessingInstruction"):
            return
        yield re.sub(r"\s+", " ", str(node))
        return
    name = node.name or ""
    if name in ("h1", "h2", "h3", "h4", "h5", "h6"):
        yield f"\n\n{'#' * int(name[1])} {node.get_text(' ', strip=True)}\n\n"
        return
    if name == "br":
        yield "\n"
        return
    if name == "li":
        yield "\n- " + " ".join("".join(_render_children(node)).split())
        return
    if name == "table":
        rows = [[c.get_text(" ", strip=True) for c in tr.find_all(["td", "th"])] for tr in node.find_all("tr")]
        yield "\n\n" + _table(rows) + "\n\n"
        return
    if name == "a" and node.get("href") and node.get_text(strip=True):
        yield f"[{node.get_text(' ', strip=True)}]({node['href']})"
        return
    block = name in _BLOCKS
    if block:
        yield "\n\n"
    yield from _render_children(node)
    if block:
        yield "\n\n"


def _render_children(node: Tag) -> Iterable[str]:
    for child in node.children:
        yield from _render(child)  # type: ignore[arg-type]


def _html_file(data: bytes) -> str:
    return html_to_markdown(data)


# --------------------------------------------------------------------------- text
def _decode(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    # UTF-8 with a few broken bytes (a cut multi-byte character, a stray Latin-1 byte) keeps its
    # text, the broken bytes becoming U+FFFD; where broken sequences outnumber valid non-ASCII
    # characters, the file is in a legacy encoding.
    text = data.decode("utf-8", errors="replace")
    broken = text.count("\ufffd")
    if sum(1 for c in text if c > "\x7f") - broken >= broken:
        return text
    return data.decode("cp1252", errors="replace")


CONVERTERS: dict[str, Callable[[bytes], str]] = {
    "docx": docx_to_markdown,
    "pptx": pptx_to_markdown,
    "xlsx": xlsx_to_markdown,
    "pdf": pdf_to_markdown,
    "html": _html_file,
    "htm": _html_file,
    "md": _decode,
    "markdown": _decode,
    "txt": _decode,
}
