"""Where a page sits: its parent page, its top-level (teamspace) page, titles — and its ACL.

Notion's API does not expose sharing settings or teamspaces to integrations; what it does give
is every page's `parent` (https://developers.notion.com/reference/parent-object): the workspace,
a page, a block, a data source (whose `database_parent` says where the database lives) or a
database. Walking up yields the page's top-level page, which in a workspace organised by
teamspaces is the teamspace's root page. The ACL mapping is:

* the top-level page's title or id, looked up in the source's `teamspaces` setting
  (`{"Platform Engineering" = "platform"}`), gives the principal `team:<name>`;
* a top-level page not in the mapping belongs to the source's own team (`team:<source team>`);
* a page published to the web (`public_url`) also gets `public`.

Everything learnt from the listing pass is reused; the API is asked only for what the listing
does not hold (a parent block, a database, a page outside the listing), once per sync.
"""

from __future__ import annotations

from typing import Any

from connectors.notion.client import ItemError, NotFound, NotionApi
from connectors.notion.richtext import plain


def norm_id(value: str) -> str:
    """Notion ids with dashes, lower case (the API accepts both forms; events and URLs vary)."""
    raw = value.strip().lower().replace("-", "")
    if len(raw) == 32 and all(c in "0123456789abcdef" for c in raw):
        return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"
    return value.strip()


def page_title(page: dict[str, Any]) -> str:
    for value in (page.get("properties") or {}).values():
        if isinstance(value, dict) and value.get("type") == "title":
            return plain(value.get("title"))
    return ""


class Hierarchy:
    def __init__(self, api: NotionApi, teamspaces: dict[str, str], default_team: str) -> None:
        self.api = api
        self.default_team = default_team
        self.teamspaces = {(norm_id(k) if len(k.replace("-", "")) == 32 else k): v for k, v in teamspaces.items()}
        self.pages: dict[str, dict[str, Any]] = {}
        self.data_sources: dict[str, dict[str, Any]] = {}
        self.block_pages: dict[str, str | None] = {}
        self._databases: dict[str, dict[str, Any] | None] = {}
        self._missing: set[str] = set()

    # ------------------------------------------------------------------ what we know
    def add_page(self, page: dict[str, Any]) -> None:
        self.pages[page["id"]] = page

    def add_data_source(self, data_source: dict[str, Any]) -> None:
        self.data_sources[data_source["id"]] = data_source

    def page(self, page_id: str) -> dict[str, Any] | None:
        if page_id in self.pages:
            return self.pages[page_id]
        if page_id in self._missing:
            return None
        try:
            page = self.api.page(page_id)
        except (NotFound, ItemError):
            self._missing.add(page_id)
            return None
        self.pages[page_id] = page
        return page

    def title(self, page_id: str) -> str:
        page = self.page(norm_id(page_id))
        return page_title(page) if page else ""

    # ------------------------------------------------------------------ walking up
    def parent_page(self, page: dict[str, Any]) -> str | None:
        """The id of the page that holds `page` (its database's page, for a row); None at the top."""
        return self._resolve(page.get("parent") or {})

    def _resolve(self, parent: dict[str, Any], depth: int = 0) -> str | None:
        kind = parent.get("type")
        if depth > 50 or kind in (None, "workspace"):
            return None
        if kind == "page_id":
            return parent.get("page_id")
        if kind == "block_id":
            return self._block_page(parent["block_id"], depth)
        if kind == "data_source_id":
            ds = self._data_source(parent["data_source_id"])
            if ds is not None:
                return self._resolve(ds.get("database_parent") or {}, depth + 1)
            if parent.get("database_id"):
                return self._resolve({"type": "database_id", "database_id": parent["database_id"]}, depth + 1)
            return None
        if kind == "database_id":
            db = self._database(parent["database_id"])
            return self._resolve(db.get("parent") or {}, depth + 1) if db else None
        return None

    def _block_page(self, block_id: str, depth: int) -> str | None:
        if block_id not in self.block_pages:
            try:
                block = self.api.block(block_id)
            except (NotFound, ItemError):
                self.block_pages[block_id] = None
            else:
                self.block_pages[block_id] = self._resolve(block.get("parent") or {}, depth + 1)
        return self.block_pages[block_id]

    def _data_source(self, ds_id: str) -> dict[str, Any] | None:
        if ds_id not in self.data_sources:
            try:
                self.data_sources[ds_id] = self.api.data_source(ds_id)
            except (NotFound, ItemError):
                return None
        return self.data_sources[ds_id]

    def _database(self, db_id: str) -> dict[str, Any] | None:
        if db_id not in self._databases:
            try:
                self._databases[db_id] = self.api.database(db_id)
            except (NotFound, ItemError):
                self._databases[db_id] = None
        return self._databases[db_id]

    def root(self, page: dict[str, Any]) -> dict[str, Any]:
        """The top-level page above `page` (itself at the top, or the last one the integration can see)."""
        current, seen = page, {page["id"]}
        while True:
            parent_id = self.parent_page(current)
            if parent_id is None or parent_id in seen:
                return current
            parent = self.page(parent_id)
            if parent is None:
                return current
            seen.add(parent_id)
            current = parent

    # ------------------------------------------------------------------ permissions
    def principals(self, page: dict[str, Any]) -> list[str]:
        root = self.root(page)
        team = self.teamspaces.get(root["id"]) or self.teamspaces.get(page_title(root)) or self.default_team
        acl = [team if ":" in team else f"team:{team}"]
        if page.get("public_url"):
            acl.append("public")
        return acl

    def data_source_of(self, page: dict[str, Any]) -> dict[str, Any] | None:
        parent = page.get("parent") or {}
        if parent.get("type") == "data_source_id":
            return self._data_source(parent["data_source_id"])
        return None
