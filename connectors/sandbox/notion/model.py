"""The fake Notion workspace: users, pages, blocks, databases, data sources and comments.

Objects are kept as plain records and rendered into the JSON shapes of the Notion API, version
2025-09-03 (https://developers.notion.com/reference/page, /block, /data-source, /comment,
/user). Like the real service, `last_edited_time` is rounded down to the minute.

The workspace knows nothing of HTTP; `connectors.sandbox.notion.server` serves it.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

_NS = uuid.UUID("6f1c1a5e-8a57-4c39-9d0e-3b1f4f0a7c11")


def stable_id(key: str) -> str:
    """A dashed UUID derived from a readable key, so builds of the workspace are identical."""
    return str(uuid.uuid5(_NS, key))


def iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def minute(when: datetime) -> datetime:
    """Notion rounds `last_edited_time` down to the minute."""
    return when.replace(second=0, microsecond=0)


def user_ref(user_id: str) -> dict[str, Any]:
    return {"object": "user", "id": user_id}


# --------------------------------------------------------------------------- rich text
_PLAIN = {"bold": False, "italic": False, "strikethrough": False, "underline": False, "code": False,
          "color": "default"}


def text(content: str, *, link: str | None = None, **annotations: bool) -> dict[str, Any]:
    return {"type": "text", "text": {"content": content, "link": {"url": link} if link else None},
            "annotations": {**_PLAIN, **annotations}, "plain_text": content, "href": link}


def equation(expression: str) -> dict[str, Any]:
    return {"type": "equation", "equation": {"expression": expression}, "annotations": dict(_PLAIN),
            "plain_text": expression, "href": None}


def mention_user(user_id: str, name: str) -> dict[str, Any]:
    return {"type": "mention", "mention": {"type": "user", "user": {"object": "user", "id": user_id}},
            "annotations": dict(_PLAIN), "plain_text": f"@{name}", "href": None}


def mention_page(page_id: str, title: str) -> dict[str, Any]:
    href = f"https://www.notion.so/{page_id.replace('-', '')}"
    return {"type": "mention", "mention": {"type": "page", "page": {"id": page_id}},
            "annotations": dict(_PLAIN), "plain_text": title, "href": href}


def mention_date(start: str, end: str | None = None) -> dict[str, Any]:
    plain = start if end is None else f"{start} → {end}"
    return {"type": "mention", "mention": {"type": "date", "date": {"start": start, "end": end, "time_zone": None}},
            "annotations": dict(_PLAIN), "plain_text": plain, "href": None}


def mention_link(url: str, title: str) -> dict[str, Any]:
    return {"type": "mention", "mention": {"type": "link_preview", "link_preview": {"url": url}},
            "annotations": dict(_PLAIN), "plain_text": title, "href": url}


RichText = list[dict[str, Any]]


def rich(*parts: str | dict[str, Any]) -> RichText:
    return [text(p) if isinstance(p, str) else p for p in parts]


# --------------------------------------------------------------------------- records
@dataclass
class Block:
    id: str
    type: str
    payload: dict[str, Any]
    parent: dict[str, Any]
    created: datetime
    edited: datetime
    author: str
    children: list[str] = field(default_factory=list)
    in_trash: bool = False
    #: Children that live elsewhere (a synced-block reference shows its original's children).
    has_children_override: bool | None = None

    def json(self) -> dict[str, Any]:
        has_children = bool(self.children) if self.has_children_override is None else self.has_children_override
        return {
            "object": "block", "id": self.id, "parent": self.parent,
            "created_time": iso(self.created), "last_edited_time": iso(self.edited),
            "created_by": user_ref(self.author), "last_edited_by": user_ref(self.author),
            "has_children": has_children, "archived": self.in_trash, "in_trash": self.in_trash,
            "type": self.type, self.type: self.payload,
        }


@dataclass
class Page:
    id: str
    parent: dict[str, Any]
    properties: dict[str, Any]
    created: datetime
    edited: datetime
    author: str
    editor: str
    children: list[str] = field(default_factory=list)
    in_trash: bool = False
    shared: bool = True
    public: bool = False
    icon: str | None = None

    @property
    def title(self) -> str:
        for value in self.properties.values():
            if value.get("type") == "title":
                return "".join(t["plain_text"] for t in value["title"])
        return ""

    @property
    def url(self) -> str:
        slug = "-".join(self.title.split()) or "Untitled"
        return f"https://www.notion.so/{slug}-{self.id.replace('-', '')}"

    def json(self) -> dict[str, Any]:
        return {
            "object": "page", "id": self.id, "created_time": iso(self.created),
            "last_edited_time": iso(self.edited), "created_by": user_ref(self.author),
            "last_edited_by": user_ref(self.editor), "cover": None,
            "icon": {"type": "emoji", "emoji": self.icon} if self.icon else None,
            "parent": self.parent, "archived": self.in_trash, "in_trash": self.in_trash, "is_locked": False,
            "properties": self.properties, "url": self.url,
            "public_url": self.url.replace("www.notion.so", "lumenlabs.notion.site") if self.public else None,
        }


@dataclass
class DataSource:
    id: str
    database_id: str
    title: str
    schema: dict[str, Any]  # property name -> property object (id, type, config)
    created: datetime
    edited: datetime
    author: str

    def json(self, database: Database) -> dict[str, Any]:
        return {
            "object": "data_source", "id": self.id, "created_time": iso(self.created),
            "last_edited_time": iso(self.edited), "created_by": user_ref(self.author),
            "last_edited_by": user_ref(self.author), "title": [text(self.title)], "description": [],
            "icon": None, "cover": None, "properties": self.schema,
            "parent": {"type": "database_id", "database_id": database.id},
            "database_parent": database.parent, "archived": False, "in_trash": False, "is_inline": False,
            "url": f"https://www.notion.so/{self.id.replace('-', '')}", "public_url": None,
        }


@dataclass
class Database:
    id: str
    title: str
    parent: dict[str, Any]
    data_sources: list[str]
    created: datetime
    author: str

    def json(self, names: dict[str, str]) -> dict[str, Any]:
        return {
            "object": "database", "id": self.id, "title": [text(self.title)], "description": [],
            "parent": self.parent, "is_inline": False, "in_trash": False, "is_locked": False,
            "created_time": iso(self.created), "last_edited_time": iso(self.created),
            "data_sources": [{"id": d, "name": names[d]} for d in self.data_sources],
            "icon": None, "cover": None, "url": f"https://www.notion.so/{self.id.replace('-', '')}",
            "public_url": None,
        }


@dataclass
class Comment:
    id: str
    parent: dict[str, Any]  # {"type": "page_id", ...} or {"type": "block_id", ...}
    discussion_id: str
    created: datetime
    author: str
    rich_text: RichText

    def json(self) -> dict[str, Any]:
        return {
            "object": "comment", "id": self.id, "parent": self.parent, "discussion_id": self.discussion_id,
            "created_time": iso(self.created), "last_edited_time": iso(self.created),
            "created_by": user_ref(self.author), "rich_text": self.rich_text,
            "display_name": {"type": "user", "resolved_name": None},
        }


# --------------------------------------------------------------------------- workspace
@dataclass
class Workspace:
    """Everything the integration can see, plus a clock; safe to share between threads."""

    name: str = "Lumen Labs"
    id: str = field(default_factory=lambda: stable_id("workspace"))
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    bot_id: str = field(default_factory=lambda: stable_id("bot"))
    pages: dict[str, Page] = field(default_factory=dict)
    blocks: dict[str, Block] = field(default_factory=dict)
    databases: dict[str, Database] = field(default_factory=dict)
    data_sources: dict[str, DataSource] = field(default_factory=dict)
    comments: list[Comment] = field(default_factory=list)
    #: Readable keys of notable objects ("platform/root", "support/discussion/0", …) -> ids.
    keys: dict[str, str] = field(default_factory=dict)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    lock: threading.RLock = field(default_factory=threading.RLock)

    # ------------------------------------------------------------------ visibility
    def visible_page(self, page_id: str) -> Page | None:
        """A page the integration can read (trashed pages are readable, and say so)."""
        page = self.pages.get(page_id)
        return page if page is not None and page.shared else None

    def listed_pages(self) -> list[Page]:
        """Pages search returns: shared, not in the trash."""
        return [p for p in self.pages.values() if p.shared and not p.in_trash]

    def block_page(self, block_id: str) -> str | None:
        """The page a block belongs to (walking up through parent blocks)."""
        seen: set[str] = set()
        current = self.blocks.get(block_id)
        while current is not None and current.id not in seen:
            seen.add(current.id)
            parent = current.parent
            if parent["type"] == "page_id":
                return parent["page_id"]
            current = self.blocks.get(parent.get("block_id", ""))
        return None

    def container(self, block_id: str) -> list[str] | None:
        """Children of a page or block, by id; None when there is no such readable parent."""
        page = self.visible_page(block_id)
        if page is not None:
            return None if page.in_trash else page.children
        block = self.blocks.get(block_id)
        if block is None or block.in_trash:
            return None
        owner = self.block_page(block_id)
        if owner is not None and self.visible_page(owner) is None:
            return None
        if block.type == "synced_block" and block.payload.get("synced_from"):
            original = self.blocks.get(block.payload["synced_from"]["block_id"])
            return original.children if original else []
        return block.children

    def descendants(self, page_id: str) -> Iterator[str]:
        """Child pages (and rows of child databases) below a page, at any depth."""
        for page in list(self.pages.values()):
            if self._parent_page(page) == page_id:
                yield page.id
                yield from self.descendants(page.id)

    def _parent_page(self, page: Page) -> str | None:
        parent = page.parent
        if parent["type"] == "page_id":
            return parent["page_id"]
        if parent["type"] == "block_id":
            return self.block_page(parent["block_id"])
        if parent["type"] == "data_source_id":
            db = self.databases.get(parent.get("database_id", ""))
            return db.parent.get("page_id") if db else None
        return None

    def rows(self, data_source_id: str) -> list[Page]:
        return [p for p in self.listed_pages()
                if p.parent.get("type") == "data_source_id" and p.parent["data_source_id"] == data_source_id]

    def user_name(self, user_id: str) -> str:
        return self.users.get(user_id, {}).get("name", "")

    def now(self) -> datetime:
        return self.clock()

    def edited_now(self) -> datetime:
        return minute(self.clock())

    def shift(self, minutes: float) -> datetime:
        return self.now() + timedelta(minutes=minutes)
