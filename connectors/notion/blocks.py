"""A page's block tree, read completely, and rendered as Markdown that keeps headings.

Reading (https://developers.notion.com/reference/get-block-children): children come 100 at a
time (`start_cursor`/`next_cursor`), and every block with `has_children` needs its own calls, at
any depth. Child pages and child databases are not descended into: they are documents of their
own. A synced-block copy (`synced_from`) shows its original's children; originals may be
referenced from many pages and copies can form cycles, so the walk cuts a cycle where it closes
and keeps what it read of synced blocks for the rest of the sync instead of reading it again.

Rendering: the page title is `#`, Notion's heading_1..3 become `##`..`####`; lists keep their
nesting and to-do check state, tables become Markdown tables, code keeps its language,
equations are `$$…$$` (inline `$…$`), media, bookmarks and embeds become links with their
captions. A block type this module does not know is skipped and counted, never an error.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from connectors.notion.client import NotionApi
from connectors.notion.richtext import PayloadError, markdown, plain

#: Blocks with nothing worth keeping as text (navigation aids).
SILENT = frozenset({"breadcrumb", "table_of_contents"})
MEDIA = frozenset({"image", "video", "audio", "file", "pdf"})
LINKS = frozenset({"bookmark", "embed", "link_preview"})
CONTAINERS = frozenset({"column_list", "column", "synced_block"})


@dataclass
class Node:
    block: dict[str, Any]
    children: list[Node] = field(default_factory=list)
    cycle: bool = False

    @property
    def type(self) -> str:
        return self.block["type"]

    @property
    def payload(self) -> dict[str, Any]:
        value = self.block.get(self.type)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise PayloadError(f"block {self.block.get('id')}: `{self.type}` should be an object")
        return value


class PageTooLarge(PayloadError):
    """A page with more blocks than `max_page_blocks`: not read further (a Failure for that page)."""


class TreeReader:
    """Reads block trees. The children of synced blocks (and of everything inside them) are kept
    for the whole sync: an original shown on many pages is read once, and a cycle of copies is
    cut where it closes, identically wherever it is shown.

    Work per page is bounded: nesting deeper than `max_depth` is cut (and counted as skipped),
    and a page with more than `max_blocks` blocks stops being read there (`PageTooLarge`), so a
    hostile or runaway page costs at most max_blocks / 100 requests and that much memory."""

    def __init__(self, api: NotionApi, block_pages: dict[str, str | None] | None = None,
                 max_depth: int = 40, max_blocks: int = 20_000) -> None:
        self.api = api
        self.max_depth = max_depth
        self.max_blocks = max_blocks
        self._left = max_blocks
        self._shared: dict[str, list[dict[str, Any]]] = {}
        #: block id -> the page it is on (a child page's parent may be a block, e.g. a toggle).
        self.block_pages = block_pages if block_pages is not None else {}

    def read(self, page_id: str) -> list[Node]:
        self._left = self.max_blocks
        return self._children(page_id, (page_id,), page_id, shared=False)

    def _count(self, n: int) -> None:
        self._left -= n
        if self._left < 0:
            raise PageTooLarge(f"more than {self.max_blocks:,} blocks (max_page_blocks): not read further")

    def _fetch(self, block_id: str, shared: bool) -> list[dict[str, Any]]:
        if block_id in self._shared:
            self._count(len(self._shared[block_id]))
            return self._shared[block_id]
        blocks = []
        for block in self.api.children(block_id):
            self._count(1)
            blocks.append(block)
        for block in blocks:
            if not isinstance(block, dict) or not isinstance(block.get("type"), str) or "id" not in block:
                raise PayloadError(f"an unexpected block in the children of {block_id}")
        if shared:
            self._shared[block_id] = blocks
        return blocks

    def _children(self, block_id: str, path: tuple[str, ...], page_id: str, shared: bool) -> list[Node]:
        nodes: list[Node] = []
        for block in self._fetch(block_id, shared):
            node = Node(block)
            kind = node.type
            if kind not in ("child_page", "child_database") and block.get("has_children"):
                source = block["id"]
                if kind == "synced_block":
                    origin = node.payload.get("synced_from")
                    if isinstance(origin, dict) and origin.get("block_id"):
                        source = origin["block_id"]
                if source in path or len(path) > self.max_depth:
                    node.cycle = True
                else:
                    if source == block["id"]:
                        self.block_pages[source] = page_id
                    node.children = self._children(source, (*path, source), page_id,
                                                   shared or kind == "synced_block")
            nodes.append(node)
        return nodes


# --------------------------------------------------------------------------- rendering
class Renderer:
    """Turns a block tree into Markdown; `skipped` counts the block types it did not render."""

    def __init__(self, page_title: Callable[[str], str] | None = None) -> None:
        self.page_title = page_title or (lambda _id: "")
        self.skipped: Counter[str] = Counter()
        self.blocks = 0

    def render(self, nodes: list[Node]) -> str:
        parts: list[tuple[bool, str]] = []
        number = 0
        for node in nodes:
            number = number + 1 if node.type == "numbered_list_item" else 0
            self.blocks += 1
            text = self._one(node, number)
            if text:
                parts.append((node.type in _LIST_TYPES, text))
        out = ""
        for i, (is_item, text) in enumerate(parts):
            if i:
                out += "\n" if is_item and parts[i - 1][0] else "\n\n"
            out += text
        return out

    def _with_children(self, head: str, node: Node, indent: int = 0) -> str:
        body = self.render(node.children) if node.children else ""
        if not body:
            return head
        if indent:
            body = _indent(body, indent)
            return f"{head}\n{body}" if head else body
        return f"{head}\n\n{body}" if head else body

    def _one(self, node: Node, number: int) -> str:
        kind, data = node.type, node.payload
        if node.cycle:
            self.skipped["synced_block_cycle" if kind == "synced_block" else "nesting_too_deep"] += 1
            return ""
        if kind == "paragraph":
            return self._with_children(markdown(data.get("rich_text")), node)
        if kind in ("heading_1", "heading_2", "heading_3"):
            level = int(kind[-1]) + 1
            text = markdown(data.get("rich_text"))
            return self._with_children(f"{'#' * level} {text}" if text else "", node)
        if kind == "bulleted_list_item":
            return self._with_children(f"- {markdown(data.get('rich_text'))}", node, indent=2)
        if kind == "numbered_list_item":
            marker = f"{number}. "
            return self._with_children(f"{marker}{markdown(data.get('rich_text'))}", node, indent=len(marker))
        if kind == "to_do":
            box = "[x]" if data.get("checked") else "[ ]"
            return self._with_children(f"- {box} {markdown(data.get('rich_text'))}", node, indent=2)
        if kind == "toggle":
            return self._with_children(f"- {markdown(data.get('rich_text'))}", node, indent=2)
        if kind in ("quote", "callout"):
            head = markdown(data.get("rich_text"))
            icon = data.get("icon") or {}
            if kind == "callout" and isinstance(icon, dict) and icon.get("emoji"):
                head = f"{icon['emoji']} {head}"
            return _quote(self._with_children(head, node))
        if kind == "code":
            language = str(data.get("language") or "")
            language = "" if language == "plain text" else language.replace(" ", "-")
            text = f"```{language}\n{plain(data.get('rich_text'))}\n```"
            caption = markdown(data.get("caption"))
            return f"{text}\n{caption}" if caption else text
        if kind == "equation":
            return f"$$\n{data.get('expression', '')}\n$$"
        if kind == "divider":
            return "---"
        if kind == "table":
            return self._table(node)
        if kind in MEDIA:
            url = file_url(data)
            caption = markdown(data.get("caption"))
            if kind == "image":
                return f"![{caption}]({url})" if url else caption
            label = caption or str(data.get("name") or "") or url.rsplit("/", 1)[-1]
            return f"[{label}]({url})" if url else label
        if kind in LINKS:
            url = str(data.get("url") or "")
            label = markdown(data.get("caption")) or url
            return f"[{label}]({url})" if url else label
        if kind in ("child_page", "child_database"):
            title = str(data.get("title") or "Untitled")
            return f"[{title}]({notion_url(node.block['id'])})"
        if kind == "link_to_page":
            target = data.get(data.get("type", ""), "")
            if not isinstance(target, str) or not target:
                return ""
            return f"[{self.page_title(target) or 'Linked page'}]({notion_url(target)})"
        if kind in CONTAINERS:
            return self.render(node.children)
        if kind == "template":
            return self._with_children(markdown(data.get("rich_text")), node)
        if kind in SILENT:
            return ""
        self.blocks -= 1
        self.skipped[kind] += 1
        return ""

    def _table(self, node: Node) -> str:
        rows: list[list[str]] = []
        for child in node.children:
            if child.type != "table_row":
                continue
            cells = child.payload.get("cells") or []
            if not isinstance(cells, list):
                raise PayloadError("table_row.cells should be a list")
            rows.append([_cell(markdown(cell)) for cell in cells])
        if not rows:
            return ""
        width = max(len(r) for r in rows)
        rows = [r + [""] * (width - len(r)) for r in rows]
        # Markdown needs a header row; Notion's first row is one whether or not it is styled so.
        lines = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join(["---"] * width) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
        return "\n".join(lines)


_LIST_TYPES = frozenset({"bulleted_list_item", "numbered_list_item", "to_do", "toggle"})


def _indent(text: str, width: int) -> str:
    pad = " " * width
    return "\n".join(pad + line if line else line for line in text.split("\n"))


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.split("\n"))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")


def notion_url(object_id: str) -> str:
    return f"https://www.notion.so/{object_id.replace('-', '')}"


def file_url(data: dict[str, Any]) -> str:
    """A file object's URL. Notion-hosted files have signed URLs that expire within the hour: the
    signature is dropped so the text (and its hash) does not change on every read.
    https://developers.notion.com/reference/file-object"""
    kind = data.get("type")
    inner = data.get(kind) if isinstance(kind, str) else None
    url = str((inner or {}).get("url") or "") if isinstance(inner, dict) else ""
    if kind == "file" and url:
        parts = urlsplit(url)
        url = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    return url
