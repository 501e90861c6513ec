"""The Notion checkpoint: what the last sync saw of each page, packed small.

For every page it stored, the checkpoint keeps the page's `last_edited_time` (whole minutes)
and the discussions it carried. The next sync compares the listing with it:

* a page whose time is unchanged costs nothing (no block request);
* a page whose time changed, or that is new, is read again;
* a known page missing from the listing is checked once and becomes a tombstone (with its
  discussions) if it is really gone;
* a page whose parent changed (moved, perhaps to another teamspace) is read again, with every
  page below it, even though moving does not change their `last_edited_time`: their ACL did;
* a page read within `overlap_minutes` of its last edit is stored *unsettled* (no time): Notion
  rounds `last_edited_time` down to the minute, so a second edit in that same minute would not
  change it; an unsettled page is read once more by the next sync.

The map is JSON, zlib-compressed and base64-encoded (ids without dashes): about 40 bytes a page.
"""

from __future__ import annotations

import base64
import json
import zlib
from datetime import UTC, datetime
from typing import NamedTuple

from connectors.base import Checkpoint
from connectors.notion.hierarchy import norm_id

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class KnownPage(NamedTuple):
    edited: int | None  # minutes since the epoch; None = read again next time
    discussions: tuple[str, ...] = ()
    #: Where the page sat (`parent_key`): a page moved elsewhere is read again, with what is below it.
    parent: str | None = None


def parent_key(page: dict[str, object]) -> str | None:
    """A page's parent reference, compactly: `p:`/`b:`/`d:`/`db:` + id, or `w` for the workspace."""
    parent = page.get("parent")
    if not isinstance(parent, dict):
        return None
    kind = parent.get("type")
    if kind == "workspace":
        return "w"
    prefix = {"page_id": "p", "block_id": "b", "data_source_id": "d", "database_id": "db"}.get(str(kind))
    target = parent.get(str(kind))
    return f"{prefix}:{str(target).replace('-', '')}" if prefix and isinstance(target, str) else None


def to_minutes(value: str | datetime | None) -> int | None:
    if value is None:
        return None
    when = datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int((when - EPOCH).total_seconds() // 60)


class NotionCheckpoint(Checkpoint):
    version: int = 1
    #: The newest `last_edited_time` of the last listing (where an early-stopping listing stops).
    newest: datetime | None = None
    #: How many pages `known` holds (for people reading `tacit sources show`).
    pages: int = 0
    known: str = ""
    #: Listings since the last complete one (see `tombstone_scan_every`).
    partial_listings: int = 0

    def known_pages(self) -> dict[str, KnownPage]:
        if not self.known:
            return {}
        rows = json.loads(zlib.decompress(base64.b64decode(self.known)))
        return {norm_id(pid): KnownPage(edited, tuple(norm_id(d) for d in discussions), parent)
                for pid, edited, discussions, parent in rows}

    @classmethod
    def build(cls, known: dict[str, KnownPage], **fields: object) -> NotionCheckpoint:
        rows = [[pid.replace("-", ""), k.edited, [d.replace("-", "") for d in k.discussions], k.parent]
                for pid, k in sorted(known.items())]
        packed = base64.b64encode(zlib.compress(json.dumps(rows, separators=(",", ":")).encode(), 9)).decode()
        return cls(known=packed if rows else "", pages=len(rows), **fields)  # type: ignore[arg-type]
