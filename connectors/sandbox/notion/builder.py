"""A small language for writing sandbox pages: block specs, then `Builder.page(...)` stores them.

    b.page(parent, "Deploy policy", [h2("Freeze"), p("The freeze starts ", bold("Thursday"), "."),
                                     toggle("Details", [code("skylark deploy", "bash")])])

Ids are derived from readable keys, timestamps advance one minute per page (so every page has
its own `last_edited_time`, all in the past), and the workspace's `keys` map names to ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.sandbox.notion.model import (
    Block,
    Comment,
    Database,
    DataSource,
    Page,
    RichText,
    Workspace,
    minute,
    rich,
    stable_id,
    text,
)


@dataclass
class Spec:
    """A block to create: its type, payload (rich text already built) and child specs."""

    type: str
    payload: dict[str, Any]
    children: list[Spec] = field(default_factory=list)
    key: str | None = None
    #: child_page: the page to create; synced reference: the key of the original.
    page: tuple[str, list[Spec]] | None = None
    synced_from: str | None = None


def _rt(parts: tuple[Any, ...]) -> RichText:
    return rich(*parts)


def p(*parts: Any, children: list[Spec] | None = None) -> Spec:
    return Spec("paragraph", {"rich_text": _rt(parts), "color": "default"}, children or [])


def h1(*parts: Any) -> Spec:
    return Spec("heading_1", {"rich_text": _rt(parts), "is_toggleable": False, "color": "default"})


def h2(*parts: Any) -> Spec:
    return Spec("heading_2", {"rich_text": _rt(parts), "is_toggleable": False, "color": "default"})


def h3(*parts: Any, children: list[Spec] | None = None) -> Spec:
    return Spec("heading_3", {"rich_text": _rt(parts), "is_toggleable": bool(children), "color": "default"},
                children or [])


def bullet(*parts: Any, children: list[Spec] | None = None) -> Spec:
    return Spec("bulleted_list_item", {"rich_text": _rt(parts), "color": "default"}, children or [])


def number(*parts: Any, children: list[Spec] | None = None) -> Spec:
    return Spec("numbered_list_item", {"rich_text": _rt(parts), "color": "default"}, children or [])


def todo(*parts: Any, checked: bool = False) -> Spec:
    return Spec("to_do", {"rich_text": _rt(parts), "checked": checked, "color": "default"})


def toggle(summary: str, children: list[Spec]) -> Spec:
    return Spec("toggle", {"rich_text": rich(summary), "color": "default"}, children)


def quote(*parts: Any) -> Spec:
    return Spec("quote", {"rich_text": _rt(parts), "color": "default"})


def callout(emoji: str, *parts: Any) -> Spec:
    return Spec("callout", {"rich_text": _rt(parts), "icon": {"type": "emoji", "emoji": emoji},
                            "color": "gray_background"})


def code(source: str, language: str, caption: str = "") -> Spec:
    return Spec("code", {"rich_text": [text(source)], "language": language,
                         "caption": rich(caption) if caption else []})


def equation_block(expression: str) -> Spec:
    return Spec("equation", {"expression": expression})


def divider() -> Spec:
    return Spec("divider", {})


def table(rows: list[list[str]], *, header: bool = True) -> Spec:
    width = len(rows[0])
    cells = [Spec("table_row", {"cells": [rich(c) for c in row]}) for row in rows]
    return Spec("table", {"table_width": width, "has_column_header": header, "has_row_header": False}, cells)


def _media(kind: str, url: str, caption: str, name: str | None = None) -> Spec:
    payload: dict[str, Any] = {"caption": rich(caption) if caption else [], "type": "external",
                               "external": {"url": url}}
    if name:
        payload["name"] = name
    return Spec(kind, payload)


def image(url: str, caption: str = "") -> Spec:
    return _media("image", url, caption)


def file_block(url: str, name: str, caption: str = "") -> Spec:
    return _media("file", url, caption, name)


def pdf(url: str, caption: str = "") -> Spec:
    return _media("pdf", url, caption)


def bookmark(url: str, caption: str = "") -> Spec:
    return Spec("bookmark", {"url": url, "caption": rich(caption) if caption else []})


def embed(url: str, caption: str = "") -> Spec:
    return Spec("embed", {"url": url, "caption": rich(caption) if caption else []})


def synced_original(key: str, children: list[Spec]) -> Spec:
    return Spec("synced_block", {"synced_from": None}, children, key=key)


def synced_copy(original_key: str) -> Spec:
    return Spec("synced_block", {}, synced_from=original_key)


def child_page(title: str, blocks: list[Spec], key: str) -> Spec:
    return Spec("child_page", {"title": title}, key=key, page=(title, blocks))


def raw(block_type: str, payload: dict[str, Any] | None = None) -> Spec:
    """Any block type, including ones a client does not know."""
    return Spec(block_type, payload or {})


# --------------------------------------------------------------------------- builder
BUILD_START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class Builder:
    def __init__(self, ws: Workspace, start: datetime | None = None) -> None:
        self.ws = ws
        # A fixed start: the same workspace is built with the same times on every run, so a
        # second demo run (a fresh sandbox) sees no change where nothing was changed.
        self.t = minute(start or min(ws.now() - timedelta(days=60), BUILD_START))
        self._pending_synced: list[tuple[Block, str]] = []

    def tick(self) -> datetime:
        self.t += timedelta(minutes=1)
        return self.t

    def user(self, user_id: str, name: str, email: str | None = None, *, bot: bool = False) -> None:
        if bot:
            self.ws.users[user_id] = {"object": "user", "id": user_id, "type": "bot", "name": name,
                                      "avatar_url": None, "bot": {"owner": {"type": "workspace", "workspace": True},
                                                                   "workspace_name": self.ws.name}}
        else:
            self.ws.users[user_id] = {"object": "user", "id": user_id, "type": "person", "name": name,
                                      "avatar_url": None, "person": {"email": email}}

    def page(self, parent: dict[str, Any], title: str, blocks: list[Spec], *, key: str, author: str,
             properties: dict[str, Any] | None = None, icon: str | None = None, public: bool = False) -> Page:
        when = self.tick()
        props = properties if properties is not None else {
            "title": {"id": "title", "type": "title", "title": [text(title)]}}
        page = Page(id=stable_id(key), parent=parent, properties=props, created=when, edited=when,
                    author=author, editor=author, icon=icon, public=public)
        self.ws.pages[page.id] = page
        self.ws.keys[key] = page.id
        page.children = self._blocks(blocks, {"type": "page_id", "page_id": page.id}, key, when, author)
        return page

    def _blocks(self, specs: list[Spec], parent: dict[str, Any], key: str, when: datetime, author: str) -> list[str]:
        ids: list[str] = []
        for i, spec in enumerate(specs):
            bkey = spec.key or f"{key}/{i}"
            if spec.page is not None:
                title, blocks = spec.page
                child = self.page(parent, title, blocks, key=spec.key or bkey, author=author)
                block = Block(id=child.id, type="child_page", payload={"title": title}, parent=parent,
                              created=child.created, edited=child.edited, author=author,
                              has_children_override=bool(child.children))
                self.ws.blocks[block.id] = block
                ids.append(block.id)
                continue
            block = Block(id=stable_id(f"block:{bkey}"), type=spec.type, payload=dict(spec.payload), parent=parent,
                          created=when, edited=when, author=author)
            self.ws.blocks[block.id] = block
            if spec.key:
                self.ws.keys[spec.key] = block.id
            if spec.synced_from is not None:
                self._pending_synced.append((block, spec.synced_from))
            block.children = self._blocks(spec.children, {"type": "block_id", "block_id": block.id}, bkey, when,
                                          author)
            ids.append(block.id)
        return ids

    def resolve_synced(self) -> None:
        """Point synced-block copies at their originals (which may be written later, or form a cycle)."""
        for block, original_key in self._pending_synced:
            original = self.ws.keys[original_key]
            block.payload = {"synced_from": {"type": "block_id", "block_id": original}}
            block.has_children_override = True
        self._pending_synced.clear()

    def database(self, parent_page: str, title: str, schema: dict[str, Any], *, key: str, author: str) -> DataSource:
        when = self.tick()
        db = Database(id=stable_id(f"{key}/database"), title=title, parent={"type": "page_id", "page_id": parent_page},
                      data_sources=[], created=when, author=author)
        ds = DataSource(id=stable_id(f"{key}/data_source"), database_id=db.id, title=title, schema=schema,
                        created=when, edited=when, author=author)
        db.data_sources.append(ds.id)
        self.ws.databases[db.id] = db
        self.ws.data_sources[ds.id] = ds
        self.ws.keys[key] = ds.id
        self.ws.keys[f"{key}/database"] = db.id
        # The database shows on its parent page as a child_database block.
        block = Block(id=db.id, type="child_database", payload={"title": title},
                      parent={"type": "page_id", "page_id": parent_page}, created=when, edited=when, author=author)
        self.ws.blocks[block.id] = block
        self.ws.pages[parent_page].children.append(block.id)
        return ds

    def row(self, ds: DataSource, title: str, values: dict[str, Any], blocks: list[Spec], *, key: str,
            author: str) -> Page:
        props: dict[str, Any] = {}
        for name, prop in ds.schema.items():
            if prop["type"] == "title":
                props[name] = {"id": prop["id"], "type": "title", "title": [text(title)]}
            elif name in values:
                props[name] = {"id": prop["id"], "type": prop["type"], prop["type"]: values[name]}
        parent = {"type": "data_source_id", "data_source_id": ds.id, "database_id": ds.database_id}
        return self.page(parent, title, blocks, key=key, author=author, properties=props)

    def discussion(self, target: str, messages: list[tuple[str, RichText]], *, key: str, block: bool = False) -> str:
        """A discussion on a page (or a block): the first message and its replies."""
        discussion = stable_id(f"discussion:{key}")
        parent = {"type": "block_id", "block_id": target} if block else {"type": "page_id", "page_id": target}
        for i, (author, body) in enumerate(messages):
            self.ws.comments.append(Comment(id=stable_id(f"comment:{key}:{i}"), parent=parent,
                                            discussion_id=discussion, created=self.tick(), author=author,
                                            rich_text=body))
        self.ws.keys[key] = discussion
        return discussion
