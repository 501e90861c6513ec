"""Real Office, PDF and web files for the fake Graph, written with the same libraries users' tools read.

Each writer takes a title and a list of sections (heading, paragraphs) and returns the file's bytes,
so the sandbox serves a genuine `.docx` (python-docx), `.pptx` (python-pptx), `.xlsx` (openpyxl)
and `.pdf` (pypdf, with a Helvetica text layer), plus HTML, Markdown and plain text. `corrupt_docx`
and `encrypted_pdf` are the bad inputs a connector must turn into a per-item failure.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Sequence

Section = tuple[str, Sequence[str]]  # (heading, paragraphs)

MIME = {
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".pdf": "application/pdf",
    ".html": "text/html",
    ".md": "text/markdown",
    ".txt": "text/plain",
    ".png": "image/png",
}


def mime_for(name: str) -> str:
    suffix = name[name.rfind("."):].lower() if "." in name else ""
    return MIME.get(suffix, "application/octet-stream")


def docx_bytes(title: str, sections: Sequence[Section]) -> bytes:
    from docx import Document

    doc = Document()
    doc.core_properties.title = title
    doc.add_heading(title, level=1)
    for heading, paragraphs in sections:
        doc.add_heading(heading, level=2)
        for text in paragraphs:
            doc.add_paragraph(text)
    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()


def pptx_bytes(title: str, sections: Sequence[Section]) -> bytes:
    from pptx import Presentation
    from pptx.util import Pt

    prs = Presentation()
    slide = prs.slides.add_slide(prs.slide_layouts[0])
    slide.shapes.title.text = title
    for heading, paragraphs in sections:
        slide = prs.slides.add_slide(prs.slide_layouts[1])
        slide.shapes.title.text = heading
        body = slide.placeholders[1].text_frame
        body.text = paragraphs[0] if paragraphs else ""
        for text in paragraphs[1:]:
            para = body.add_paragraph()
            para.text = text
            para.font.size = Pt(18)
        slide.notes_slide.notes_text_frame.text = f"Speaker notes: {heading}."
    buf = io.BytesIO()
    prs.save(buf)
    return buf.getvalue()


def xlsx_bytes(title: str, sections: Sequence[Section]) -> bytes:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = title[:31]
    ws.append(["Topic", "Statement"])
    for heading, paragraphs in sections:
        for text in paragraphs:
            ws.append([heading, text])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _pdf_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _wrap(text: str, width: int = 90) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        lines.append(line)
    return lines or [""]


def pdf_bytes(title: str, sections: Sequence[Section], *, password: str | None = None) -> bytes:
    """A one-page-per-section PDF with a real text layer (Helvetica), written with pypdf."""
    from pypdf import PageObject, PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    font = DictionaryObject({
        NameObject("/Type"): NameObject("/Font"),
        NameObject("/Subtype"): NameObject("/Type1"),
        NameObject("/BaseFont"): NameObject("/Helvetica"),
        NameObject("/Encoding"): NameObject("/WinAnsiEncoding"),
    })
    font_ref = writer._add_object(font)
    pages = [(h, list(p)) for h, p in sections] or [(title, [])]
    for index, (heading, paragraphs) in enumerate(pages):
        page = PageObject.create_blank_page(width=612, height=792)
        ops = ["BT", "/F1 16 Tf", "72 740 Td", "18 TL"]
        if index == 0:
            ops.append(f"({_pdf_escape(title)}) Tj T* T*")
        ops += ["/F1 13 Tf", f"({_pdf_escape(heading)}) Tj T*", "/F1 11 Tf", "14 TL"]
        for text in paragraphs:
            for line in _wrap(text):
                ops.append(f"({_pdf_escape(line)}) Tj T*")
            ops.append("T*")
        ops.append("ET")
        stream = DecodedStreamObject()
        stream.set_data("\n".join(ops).encode("latin-1", "replace"))
        page[NameObject("/Contents")] = writer._add_object(stream)
        page[NameObject("/Resources")] = DictionaryObject({
            NameObject("/Font"): DictionaryObject({NameObject("/F1"): font_ref})})
        writer.add_page(page)
    writer.add_metadata({"/Title": title})
    if password:
        writer.encrypt(user_password=password, owner_password=password + "-owner", algorithm="AES-256")
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def html_bytes(title: str, sections: Sequence[Section]) -> bytes:
    from html import escape

    parts = [f"<!DOCTYPE html><html><head><title>{escape(title)}</title>",
             "<style>body{font-family:sans-serif}</style><script>var tracking = 1;</script></head><body>",
             f"<h1>{escape(title)}</h1>"]
    for heading, paragraphs in sections:
        parts.append(f"<h2>{escape(heading)}</h2><ul>")
        parts += [f"<li>{escape(text)}</li>" for text in paragraphs]
        parts.append("</ul>")
    parts.append("</body></html>")
    return "".join(parts).encode()


def md_bytes(title: str, sections: Sequence[Section]) -> bytes:
    out = [f"# {title}", ""]
    for heading, paragraphs in sections:
        out += [f"## {heading}", ""]
        for text in paragraphs:
            out += [text, ""]
    return "\n".join(out).encode()


def txt_bytes(title: str, sections: Sequence[Section]) -> bytes:
    out = [title, "=" * len(title), ""]
    for heading, paragraphs in sections:
        out += [heading, ""] + list(paragraphs) + [""]
    return "\n".join(out).encode()


WRITERS = {".docx": docx_bytes, ".pptx": pptx_bytes, ".xlsx": xlsx_bytes, ".pdf": pdf_bytes,
           ".html": html_bytes, ".md": md_bytes, ".txt": txt_bytes}


def file_bytes(name: str, title: str, sections: Sequence[Section]) -> bytes:
    suffix = name[name.rfind("."):].lower()
    return WRITERS[suffix](title, sections)


def corrupt_docx() -> bytes:
    """Starts like a zip archive (as a .docx does) but is cut off: no reader can open it."""
    good = docx_bytes("Budget", [("Budget", ["This file was truncated during upload."])])
    return good[: len(good) // 3]


def encrypted_pdf(title: str, sections: Sequence[Section]) -> bytes:
    return pdf_bytes(title, sections, password="lumen-secret")


def png_bytes() -> bytes:
    """A real 1x1 PNG: a type the connector does not convert (it is skipped and counted)."""
    import struct

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\xff\xcc\x00"))
            + chunk(b"IEND", b""))
