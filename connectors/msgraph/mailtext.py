"""Mail and chat bodies to plain text, with quoted history removed.

A reply carries the whole conversation below it; kept, every thread would repeat each earlier
message once per reply. What marks the quoted part depends on the client that wrote it:

* Outlook (web and desktop): `<div id="appendonsend">`, `<div id="divRplyFwdMsg">` after an
  `<hr>`, or a `From: … Sent: …` header block (a div with a top border in desktop Outlook);
* Gmail and most others: `<div class="gmail_quote">`, `<blockquote>`, "On … wrote:" lines;
* plain text: `-----Original Message-----` and lines starting with `>`.
"""

from __future__ import annotations

import re

from bs4 import BeautifulSoup, Tag

from connectors.msgraph.convert import html_to_markdown

_CUT_IDS = ("appendonsend", "divRplyFwdMsg", "x_divRplyFwdMsg", "Signature")
_CUT_CLASSES = ("gmail_quote", "gmail_extra", "moz-cite-prefix", "yahoo_quoted", "OutlookMessageHeader")
_WROTE = re.compile(r"^\s*(On .{4,200}(wrote|schrieb|a écrit)\s*:|Le .{4,200}a écrit\s*:)\s*$", re.I | re.M)
_ORIGINAL = re.compile(r"^\s*-{2,}\s*(Original Message|Forwarded message|Ursprüngliche Nachricht)\s*-{2,}", re.I | re.M)
_HEADER_BLOCK = re.compile(r"^\s*\**From:\**\s.+\n(\s*\**(Sent|Date):\**\s.+\n)", re.I | re.M)


def strip_quoted_html(html: str) -> str:
    """The part of an HTML message its author wrote, as Markdown-ish plain text."""
    soup = BeautifulSoup(html or "", "html.parser")
    cut: Tag | None = None
    for ident in _CUT_IDS:
        cut = cut or soup.find(id=ident)
    for cls in _CUT_CLASSES:
        cut = cut or soup.find(class_=cls)
    if cut is None:
        cut = soup.find("blockquote")
    if cut is None:
        # Desktop Outlook: the header of the quoted message sits in a div with a top border.
        cut = next((d for d in soup.find_all("div") if "border-top" in (d.get("style") or "")
                    and "From:" in d.get_text()), None)
    if cut is not None:
        _remove_from(cut)
    return strip_quoted_text(html_to_markdown(str(soup)))


def _remove_from(node: Tag) -> None:
    """Remove `node`, everything after it, and a separator `<hr>` just before it."""
    previous = node.find_previous_sibling()
    if previous is not None and previous.name == "hr":
        previous.decompose()
    current: Tag | None = node
    while current is not None and current.name not in (None, "[document]"):
        for sibling in list(current.next_siblings):
            sibling.extract()
        parent = current.parent
        if current is node:
            current.decompose()
        current = parent if isinstance(parent, Tag) and parent.name not in ("body", "html", "[document]") else None


def strip_quoted_text(text: str) -> str:
    """Cut plain text at the first quoted-history marker; drop `>` lines."""
    cut = len(text)
    for pattern in (_WROTE, _ORIGINAL, _HEADER_BLOCK):
        match = pattern.search(text)
        if match:
            cut = min(cut, match.start())
    kept = [line for line in text[:cut].splitlines() if not line.lstrip().startswith(">")]
    out = "\n".join(kept)
    out = re.sub(r"\n{3,}", "\n\n", out).strip()
    return out


def body_text(content: str | None, content_type: str | None) -> str:
    """A message body (`html` or `text`) as text without quoted history."""
    if not content:
        return ""
    if (content_type or "").lower() == "html" or "<" in content and re.search(r"</?[a-z][^>]*>", content, re.I):
        return strip_quoted_html(content)
    return strip_quoted_text(content)
