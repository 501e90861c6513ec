"""Notion rich text → Markdown, keeping what a reader sees.

Each item is `text`, `mention` (user, page, database, date, link_preview, template_mention…) or
`equation`; `plain_text` holds its visible text (https://developers.notion.com/reference/rich-text),
which is what a mention renders as. Inline equations become `$…$`; annotations become Markdown
emphasis, code spans, strike-through and links.
"""

from __future__ import annotations

from typing import Any


class PayloadError(ValueError):
    """A Notion object does not have the shape its type promises."""


def _items(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise PayloadError(f"rich text should be a list of objects, not {type(value).__name__}")
    return value


def plain(value: Any) -> str:
    """The visible text only, no Markdown (titles, table cells, property values)."""
    return "".join(_visible(item) for item in _items(value))


def _visible(item: dict[str, Any]) -> str:
    text = item.get("plain_text")
    if isinstance(text, str):
        return text
    kind = item.get("type")
    if kind == "text":
        return str((item.get("text") or {}).get("content", ""))
    if kind == "equation":
        return str((item.get("equation") or {}).get("expression", ""))
    return ""


def markdown(value: Any) -> str:
    """Rich text as inline Markdown."""
    return "".join(_inline(item) for item in _items(value))


def _inline(item: dict[str, Any]) -> str:
    kind = item.get("type")
    text = _visible(item)
    if kind == "equation":
        expression = (item.get("equation") or {}).get("expression", text)
        return f"${expression}$" if expression else ""
    if not text:
        return ""
    ann = item.get("annotations") or {}
    link = None
    if kind == "text":
        link = ((item.get("text") or {}).get("link") or {}).get("url")
    elif kind == "mention":
        mention = item.get("mention") or {}
        # A link preview shows its URL; keep the link so the target is not lost.
        if mention.get("type") in ("link_preview", "link_mention") and item.get("href"):
            link = item["href"]
    if ann.get("code"):
        text = f"`{text}`"
    else:
        text = _wrap(text, ann)
    if link:
        text = f"[{text}]({link})"
    return text


def _wrap(text: str, ann: dict[str, Any]) -> str:
    """Emphasis markers hug the words: `**bold** ` not `**bold **` (which Markdown would not parse)."""
    marks = ""
    if ann.get("bold"):
        marks += "**"
    if ann.get("italic"):
        marks += "*"
    if ann.get("strikethrough"):
        marks = "~~" + marks
    core = text.strip()
    if not marks or not core:
        return text
    lead = text[: len(text) - len(text.lstrip())]
    trail = text[len(text.rstrip()):]
    return f"{lead}{marks}{core}{marks[::-1]}{trail}"
