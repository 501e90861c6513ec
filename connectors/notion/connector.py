"""The Notion connector: pages, data-source rows and discussions, incrementally, within the rate budget.

A sync is a cheap **listing pass** followed by reading only what changed:

1. `POST /v1/search` (100 results a request, newest edits first) lists every page, row and data
   source the integration can see; each data source is also queried (`POST
   /v1/data_sources/{id}/query`), so a row that search has not indexed yet is not missed.
   (https://developers.notion.com/reference/post-search, /query-a-data-source)
2. Known pages missing from the listing are checked once (`GET /v1/pages/{id}`) and become
   tombstones if they are trashed, deleted or no longer shared — with their discussions.
3. Pages whose `last_edited_time` differs from the checkpoint's (see `checkpoint.py`) are read:
   block tree, properties, discussions. An unchanged page costs no request at all.

With `tombstone_scan_every = N > 1`, N-1 syncs out of N stop the search as soon as results are
older than the last sync's newest edit minus `overlap_minutes` (search cannot filter by time,
only sort), and deletions are found by the next complete listing.

Rate limits, `Retry-After` and backoff are the HTTP layer's (`connectors.http`): the official
SDK is given its client and has its own retries turned off.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from connectors.base import (
    AuthError,
    CheckpointMark,
    Connector,
    Document,
    Failure,
    Interaction,
    Record,
    SyncGenerator,
    Tombstone,
    TransientError,
)
from connectors.base import Checkpoint as BaseCheckpoint
from connectors.notion.blocks import Node, Renderer, TreeReader
from connectors.notion.checkpoint import KnownPage, NotionCheckpoint, parent_key, to_minutes
from connectors.notion.client import ItemError, NotFound, NotionApi
from connectors.notion.comments import discussions
from connectors.notion.hierarchy import Hierarchy, norm_id, page_title
from connectors.notion.properties import PropertyRenderer
from connectors.notion.richtext import PayloadError, plain
from connectors.notion.users import UNKNOWN, UserDirectory

log = logging.getLogger(__name__)

#: Errors that spoil one page and not the others (an unexpected payload, a 403 on that page).
ITEM_ERRORS = (ItemError, PayloadError, KeyError, TypeError, ValueError, AttributeError, IndexError)
#: Consecutive pages failing with a transient error before the sync stops (and later resumes).
MAX_TRANSIENT_IN_A_ROW = 3


class NotionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: The integration's secret (`ntn_…` or `secret_…`).
    token: SecretStr
    base_url: str = "https://api.notion.com"
    #: Requests a second for this integration (default: Notion's documented 3).
    rate_limit: float | None = Field(None, gt=0)
    #: Edits this recent are read again by the next sync (minute rounding, clock skew, index lag).
    overlap_minutes: float = Field(5.0, ge=0)
    #: Discussions to read: on pages (one request a page), also on every block, or none.
    comments: Literal["pages", "blocks", "off"] = "pages"
    #: Top-level page title or id -> team name, for ACL principals (`team:<name>`).
    teamspaces: dict[str, str] = {}
    #: Query every data source as well as search (catches rows search has not indexed yet).
    query_data_sources: bool = True
    #: A complete listing (finds deletions) every N syncs; the others stop at the last sync's edits.
    tombstone_scan_every: int = Field(1, ge=1)
    #: The webhook verification token, if it was set up elsewhere (else the handshake stores it).
    verification_token: SecretStr | None = None
    timeout_s: float = Field(60.0, gt=0)
    #: A page with more blocks than this (at any depth) is a Failure, read no further.
    max_page_blocks: int = Field(20_000, ge=1)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http(s) URL")
        return value.rstrip("/")


class NotionConnector(Connector):
    kind: ClassVar[str] = "notion"
    #: "an average of three requests per second" (https://developers.notion.com/reference/request-limits)
    rate_limit: ClassVar[tuple[float | None, int]] = (3.0, 3)
    #: Webhook routes, event handlers and more: the platform half, in `connectors.notion.webhooks`.
    contributes: ClassVar[str | None] = "connectors.notion.webhooks:CONTRIBUTIONS"
    Checkpoint: ClassVar[type[BaseCheckpoint]] = NotionCheckpoint
    Settings: ClassVar[type[BaseModel]] = NotionSettings
    #: Pages between two checkpoint marks (a killed sync re-reads at most this many).
    MARK_EVERY: ClassVar[int] = 20

    settings: NotionSettings

    def __init__(self, source: Any, http: Any) -> None:
        super().__init__(source, http)
        self._api: NotionApi | None = None

    @property
    def api(self) -> NotionApi:
        if self._api is None:
            s = self.settings
            self._api = NotionApi(s.token.get_secret_value(), s.base_url, self.http, s.timeout_s)
        return self._api

    def check(self) -> None:
        self.api.me()

    def _reader(self) -> _PageReader:
        return _PageReader(self.api, self.settings, self.source.team)

    # ------------------------------------------------------------------ sync
    def sync(self, checkpoint: BaseCheckpoint | None) -> SyncGenerator:
        cp = checkpoint if isinstance(checkpoint, NotionCheckpoint) else NotionCheckpoint()
        reader = self._reader()
        known = cp.known_pages()
        complete = cp.newest is None or cp.partial_listings + 1 >= self.settings.tombstone_scan_every
        since = None if complete or cp.newest is None else cp.newest - timedelta(minutes=self.settings.overlap_minutes)
        listed = self._listing(reader, since)
        newest = max((_when(p["last_edited_time"]) for p in listed.values()), default=cp.newest)

        def mark() -> CheckpointMark:
            return CheckpointMark(checkpoint=NotionCheckpoint.build(
                known, newest=cp.newest, partial_listings=cp.partial_listings))

        # Known pages the listing lacks: gone, or merely missed by search (then read them).
        suspects = [pid for pid, k in known.items() if pid not in listed and (complete or k.edited is None)]
        gone = 0
        for pid in suspects:
            page = reader.alive(pid)
            if page is None:
                gone += 1
                yield Tombstone(external_id=pid, reason="trashed, deleted or no longer shared")
                for discussion in known.pop(pid).discussions:
                    yield Tombstone(external_id=discussion, reason="its page is gone")
            else:
                listed[pid] = page
        if gone:
            yield mark()

        moved = self._moved(reader, listed, known)
        plan = sorted((p for p in listed.values() if p["id"] in moved or _changed(p, known.get(p["id"]))),
                      key=lambda p: (p["last_edited_time"], p["id"]))
        log.info("notion %s: %d pages listed, %d to read, %d gone", self.source.name, len(listed), len(plan), gone)
        transient = 0
        for n, page in enumerate(plan, start=1):
            records, entry, failed_transiently = reader.read(page, known.get(page["id"]))
            transient = transient + 1 if failed_transiently else 0
            if transient >= MAX_TRANSIENT_IN_A_ROW:
                raise TransientError(f"{transient} pages in a row failed: {records[-1].message}")  # type: ignore[union-attr]
            if entry is None:
                known.pop(page["id"], None)
            else:
                known[page["id"]] = entry
            yield from records
            if n % self.MARK_EVERY == 0:
                yield mark()
        return NotionCheckpoint.build(known, newest=newest,
                                      partial_listings=0 if complete else cp.partial_listings + 1)

    @staticmethod
    def _moved(reader: _PageReader, listed: dict[str, dict[str, Any]], known: dict[str, KnownPage]) -> set[str]:
        """Pages whose parent changed since they were stored, and every listed page below them:
        moving does not touch `last_edited_time`, but it can change the teamspace, hence the ACL."""
        moved = {pid for pid, page in listed.items()
                 if pid in known and known[pid].parent is not None and known[pid].parent != parent_key(page)}
        if not moved:
            return set()
        affected = set(moved)
        for pid, page in listed.items():
            seen = {pid}
            parent = reader.hierarchy.parent_page(page)
            while parent is not None and parent not in seen:
                if parent in moved:
                    affected.add(pid)
                    break
                seen.add(parent)
                above = listed.get(parent) or reader.hierarchy.page(parent)
                parent = reader.hierarchy.parent_page(above) if above else None
        log.info("notion: %d pages moved, %d pages below them to read again", len(moved), len(affected) - len(moved))
        return affected

    def _listing(self, reader: _PageReader, since: datetime | None) -> dict[str, dict[str, Any]]:
        listed: dict[str, dict[str, Any]] = {}
        sources: list[str] = []
        for item in self.api.search(sort={"direction": "descending", "timestamp": "last_edited_time"}):
            kind = item.get("object")
            if kind == "data_source" and isinstance(item.get("id"), str):
                reader.hierarchy.add_data_source(item)
                sources.append(item["id"])
                continue
            if kind != "page" or not _readable(item):
                continue
            if since is not None and _when(item["last_edited_time"]) < since:
                break  # sorted newest first: everything after this is older still
            if not _alive(item):
                continue
            listed[item["id"]] = item
            reader.hierarchy.add_page(item)
        if self.settings.query_data_sources:
            body: dict[str, Any] = {"sorts": [{"timestamp": "last_edited_time", "direction": "descending"}]}
            if since is not None:
                body["filter"] = {"timestamp": "last_edited_time",
                                  "last_edited_time": {"on_or_after": since.isoformat()}}
            for ds_id in sources:
                try:
                    for row in self.api.query(ds_id, **body):
                        if row.get("object") == "page" and _readable(row) and _alive(row):
                            listed.setdefault(row["id"], row)
                            reader.hierarchy.add_page(row)
                except (NotFound, ItemError) as exc:
                    log.warning("notion: data source %s could not be queried: %s", ds_id, exc)
        return listed

    # ------------------------------------------------------------------ targeted reads
    def fetch(self, external_ids: Sequence[str]) -> Iterator[Record]:
        """Re-read pages (`<page id>`), every row of a data source (`data_source:<id>`), or the
        discussions of one block (`discussions:<page id>/<block id>`). Gone pages are tombstones."""
        reader = self._reader()
        for raw in dict.fromkeys(external_ids):
            try:
                if raw.startswith("data_source:"):
                    rows = [r for r in self.api.query(norm_id(raw.split(":", 1)[1])) if _readable(r)]
                    for row in rows:
                        reader.hierarchy.add_page(row)
                    for row in rows:
                        yield from (reader.read(row, None)[0] if _alive(row) else [Tombstone(external_id=row["id"])])
                elif raw.startswith("discussions:"):
                    page_id, _, block_id = raw.split(":", 1)[1].partition("/")
                    yield from reader.block_discussions(norm_id(page_id), norm_id(block_id))
                else:
                    pid = norm_id(raw)
                    page = reader.alive(pid)
                    if page is None:
                        yield Tombstone(external_id=pid, reason="trashed, deleted or no longer shared")
                    else:
                        yield from reader.read(page, None)[0]
            except AuthError:
                raise
            except NotFound:
                if raw.startswith(("data_source:", "discussions:")):
                    continue  # the next sync's listing pass tombstones what went with it
                yield Tombstone(external_id=norm_id(raw))
            except (TransientError, *ITEM_ERRORS) as exc:
                yield Failure(external_id=raw, message=f"{raw}: {exc}", retryable=isinstance(exc, TransientError))


class _PageReader:
    """Reads pages into records; its caches (users, parents, synced blocks) live for one sync."""

    def __init__(self, api: NotionApi, settings: NotionSettings, team: str) -> None:
        self.api = api
        self.settings = settings
        self.users = UserDirectory(api)
        self.hierarchy = Hierarchy(api, settings.teamspaces, team)
        self.trees = TreeReader(api, self.hierarchy.block_pages, max_blocks=settings.max_page_blocks)
        self.properties = PropertyRenderer(self.users.name, self.hierarchy.title)
        self.comments_forbidden = False

    def alive(self, page_id: str) -> dict[str, Any] | None:
        """The page if the integration can still read it and it is not in the trash."""
        try:
            page = self.api.page(page_id)
        except NotFound:
            return None
        if not _alive(page):
            return None
        self.hierarchy.add_page(page)
        return page

    def read(self, page: dict[str, Any], previous: KnownPage | None) -> tuple[list[Record], KnownPage | None, bool]:
        """(records, what to remember of the page, whether it failed transiently)."""
        pid = page["id"]
        before = previous.discussions if previous else ()
        try:
            document, interactions, comments_read = self._read(page)
        except AuthError:
            raise
        except NotFound:
            if self.alive(pid) is None:
                gone: list[Record] = [Tombstone(external_id=pid, reason="trashed, deleted or no longer shared")]
                gone += [Tombstone(external_id=d, reason="its page is gone") for d in before]
                return gone, None, False
            return [Failure(external_id=pid, message=f"{_label(page)}: a block went missing while reading",
                             retryable=True)], KnownPage(None, before, parent_key(page)), False
        except TransientError as exc:
            return [Failure(external_id=pid, message=f"{_label(page)}: {exc}", retryable=True)], \
                KnownPage(None, before, parent_key(page)), True
        except ITEM_ERRORS as exc:
            log.warning("notion page %s could not be read: %s", pid, exc)
            return [Failure(external_id=pid, message=f"{_label(page)}: {type(exc).__name__}: {exc}")], \
                KnownPage(None, before, parent_key(page)), False
        now = {i.external_id for i in interactions}
        records: list[Record] = [document, *interactions]
        if comments_read:
            records += [Tombstone(external_id=d, reason="discussion resolved or deleted")
                        for d in before if d not in now]
        else:  # not readable now: what was stored stays
            now |= set(before)
        return records, KnownPage(self._settled(page), tuple(sorted(now)), parent_key(page)), False

    def _settled(self, page: dict[str, Any]) -> int | None:
        edited = to_minutes(page["last_edited_time"])
        horizon = to_minutes(datetime.now(UTC) - timedelta(minutes=self.settings.overlap_minutes))
        return edited if edited is not None and horizon is not None and edited < horizon else None

    def _read(self, page: dict[str, Any]) -> tuple[Document, list[Interaction], bool]:
        """The page as a document, its discussions, and whether discussions could be read."""
        pid = page["id"]
        title = page_title(page)
        nodes = self.trees.read(pid)
        renderer = Renderer(self.hierarchy.title)
        body = renderer.render(nodes)
        props = self.properties.lines(page.get("properties"))
        text = "\n\n".join(part for part in (f"# {title}" if title else "", "\n".join(props), body) if part)
        acl = self.hierarchy.principals(page)
        root = self.hierarchy.root(page)
        data_source = self.hierarchy.data_source_of(page)
        metadata: dict[str, Any] = {"object": "row" if data_source else "page", "blocks": renderer.blocks,
                                    "teamspace": page_title(root)}
        if data_source:
            metadata["data_source"] = plain(data_source.get("title"))
            metadata["data_source_id"] = data_source["id"]
        if renderer.skipped:
            metadata["skipped_blocks"] = dict(sorted(renderer.skipped.items()))
        authors = [self.users.name(page.get("created_by")), self.users.name(page.get("last_edited_by"))]
        document = Document(
            external_id=pid, title=title, text=text, url=page.get("url"),
            authors=[a for a in dict.fromkeys(authors) if a != UNKNOWN],
            created_at=page.get("created_time"), updated_at=page.get("last_edited_time"),
            parent_external_id=self.hierarchy.parent_page(page), acl=acl, metadata=metadata,
        )
        interactions: list[Interaction] = []
        if self.settings.comments != "off" and not self.comments_forbidden:
            targets = [(pid, False)]
            if self.settings.comments == "blocks":
                targets += [(block_id, True) for block_id in _own_blocks(nodes)]
            try:
                for target, on_block in targets:
                    interactions += discussions(self.api, self.users, target, page_id=pid, acl=acl, on_block=on_block)
            except ItemError as exc:
                if exc.status != 403:
                    raise
                # The integration lacks the "read comments" capability: pages still come in.
                log.warning("notion: comments cannot be read (%s); syncing pages without them", exc)
                self.comments_forbidden = True
                interactions = []
        read = self.settings.comments == "off" or not self.comments_forbidden
        return document, interactions, read

    def block_discussions(self, page_id: str, block_id: str) -> list[Record]:
        page = self.alive(page_id)
        if page is None:
            return []
        acl = self.hierarchy.principals(page)
        return list(discussions(self.api, self.users, block_id, page_id=page_id, acl=acl, on_block=True))


def _own_blocks(nodes: list[Node]) -> Iterator[str]:
    """Blocks that belong to this page (not to a child page, nor to the original of a synced copy)."""
    for node in nodes:
        if node.type in ("child_page", "child_database"):
            continue
        yield node.block["id"]
        if node.type == "synced_block" and (node.payload.get("synced_from") or None):
            continue
        yield from _own_blocks(node.children)


def _changed(page: dict[str, Any], known: KnownPage | None) -> bool:
    return known is None or known.edited is None or to_minutes(page["last_edited_time"]) != known.edited


def _readable(item: dict[str, Any]) -> bool:
    return isinstance(item.get("id"), str) and isinstance(item.get("last_edited_time"), str)


def _alive(page: dict[str, Any]) -> bool:
    return not (page.get("in_trash") or page.get("archived") or page.get("is_archived"))


def _when(value: str) -> datetime:
    when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _label(page: dict[str, Any]) -> str:
    try:
        title = page_title(page)
    except PayloadError:
        title = ""
    return f"page {page['id']}" + (f" ({title!r})" if title else "")
