"""Folder paths of drive items, built from the folder items a drive's delta returns.

Items in a delta answer carry no `parentReference.path` ("The parentReference property on items
will not include a value for path. This occurs because renaming a folder does not result in any
descendants of the folder being returned from delta. When using delta you should always track
items by id", https://learn.microsoft.com/graph/api/driveitem-delta#remarks). So every folder
the delta returns (and the root) is kept by id in the checkpoint as `[parent id, name]`, and a
file's folder is the chain of names from its `parentReference.id` up to the root.

A folder that comes back with another name or parent was renamed or moved: the files under it
are listed with children (`GET /drives/{d}/items/{id}/children`, paged,
https://learn.microsoft.com/graph/api/driveitem-list-children) and written again with the new
path. A file whose parent folder is not known yet (the delta returned the file first) has the
missing folders read with `GET /drives/{d}/items/{id}` (https://learn.microsoft.com/graph/api/driveitem-get).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from connectors.msgraph.client import NotFound
from connectors.msgraph.settings import GraphCheckpoint
from connectors.msgraph.walker import Walker

PERMISSION = "Files.Read.All"
MAX_DEPTH = 400  # deeper than SharePoint's 400-character path limit allows; stops a cycle in bad data


class FolderMap:
    """The folders of one drive by id (the checkpoint's `folders[drive key]`, edited in place)."""

    def __init__(self, cp: GraphCheckpoint, key: str) -> None:
        self.folders = cp.folders.setdefault(key, {})

    @staticmethod
    def is_folder(item: dict[str, Any]) -> bool:
        return "folder" in item or "root" in item or "package" in item

    def learn(self, item: dict[str, Any]) -> bool:
        """Keep a folder (or the root); True when it was known under another name or parent (renamed, moved)."""
        entry = ["", ""] if "root" in item else [str((item.get("parentReference") or {}).get("id") or ""),
                                                   str(item.get("name") or "")]
        before = self.folders.get(item["id"])
        self.folders[item["id"]] = entry
        return before is not None and before != entry

    def forget(self, item_id: str) -> None:
        self.folders.pop(item_id, None)

    def path(self, folder_id: str | None) -> str | None:
        """`/A/B` for folder B in A under the root, `/` for the root; None when a link of the chain is unknown."""
        parts: list[str] = []
        current = folder_id or ""
        for _ in range(MAX_DEPTH):
            entry = self.folders.get(current)
            if entry is None:
                return None
            parent, name = entry
            if not parent:  # the root
                return "/" + "/".join(reversed(parts))
            parts.append(name)
            current = parent
        return None

    def missing(self, folder_id: str | None) -> str | None:
        """The first folder of the chain up from `folder_id` that is not known (None: the chain is whole)."""
        current = folder_id or ""
        for _ in range(MAX_DEPTH):
            entry = self.folders.get(current)
            if entry is None:
                return current or None
            if not entry[0]:
                return None
            current = entry[0]
        return None


async def complete(w: Walker, drive_id: str, folders: FolderMap, folder_id: str | None) -> None:
    """Read the folders missing from the chain above `folder_id` (non-delta reads), so its path is whole."""
    items = w.client.drives.by_drive_id(drive_id).items
    for _ in range(MAX_DEPTH):
        gap = folders.missing(folder_id)
        if gap is None:
            return
        info = items.by_drive_item_id(gap).to_get_request_information()
        try:
            item = await w.session.json(info, f"folder {gap}", PERMISSION)
        except NotFound:
            return
        w.stats["folders_read"] += 1
        folders.learn(item)


async def files_under(w: Walker, drive_id: str, folders: FolderMap, folder_id: str) -> AsyncIterator[dict[str, Any]]:
    """Every file below a folder (children, paged, recursively); subfolders are kept in the map on the way."""
    items = w.client.drives.by_drive_id(drive_id).items
    todo = [folder_id]
    while todo:
        current = todo.pop()
        url: Any = items.by_drive_item_id(current).children.to_get_request_information()
        while url:
            page = await w.session.json(url, f"children of folder {current}", PERMISSION)
            for item in page.get("value") or []:
                if FolderMap.is_folder(item):
                    folders.learn(item)
                    todo.append(item["id"])
                elif item.get("file") is not None:
                    yield item
            url = page.get("@odata.nextLink")
