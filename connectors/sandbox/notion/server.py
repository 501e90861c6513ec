"""`NotionSandbox`: the fake Notion API served over real HTTP on loopback, with levers for tests.

    with NotionSandbox(rate_limit=3) as sandbox:          # build_workspace() by default
        client = notion_client.Client(auth=sandbox.token, base_url=sandbox.url)
        sandbox.inject(429, count=2, retry_after=1)          # the next 2 requests are throttled
        sandbox.truncate(count=1)                            # the next answer's body is cut off
        sandbox.delay(2.0, count=1)                          # the next answer comes 2 s late
        sandbox.edit_page(page_id, "New paragraph")          # bumps last_edited_time (to the minute)
        token = sandbox.subscribe("http://127.0.0.1:8400/webhooks/notion/eng")  # webhooks

Its rate limit answers 429 `rate_limited` with an integer `Retry-After`, like Notion's
(https://developers.notion.com/reference/request-limits). Webhook deliveries follow
https://developers.notion.com/reference/webhooks: a verification POST carrying
`verification_token`, then events signed with `X-Notion-Signature: sha256=<hex HMAC>`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import httpx

from connectors.sandbox.notion.model import (
    Block,
    Comment,
    Page,
    Workspace,
    iso,
    minute,
    rich,
    stable_id,
    text,
)
from connectors.sandbox.server import SandboxControls, ThreadedServer

DEFAULT_TOKEN = "ntn_lumenlabs_sandbox_integration_token"


class NotionSandbox(SandboxControls):
    def __init__(self, workspace: Workspace | None = None, *, token: str = DEFAULT_TOKEN,
                 rate_limit: float | None = None, burst: int = 10, port: int = 0) -> None:
        self.port = port
        if workspace is None:
            from connectors.sandbox.notion.workspace import build_workspace

            workspace = build_workspace()
        self.workspace = workspace
        self.token = token
        self.rate_limit = rate_limit
        self.burst = burst
        self.requests: list[tuple[str, str]] = []
        self.by_status: Counter[int] = Counter()
        self._faults: list[tuple[int, int | None]] = []
        self._init_controls()
        self._tat = 0.0
        self._server: ThreadedServer | None = None
        self.webhook_url: str | None = None
        self.verification_token: str | None = None
        self.deliveries: list[tuple[dict[str, Any], int]] = []
        self._corrupt: set[str] = set()
        #: Paths (and the paths below them) answered 403 `restricted_resource`: an integration
        #: without a capability (read comments, read user information).
        self.forbidden: set[str] = set()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> NotionSandbox:
        from connectors.sandbox.notion.api import create_api

        self._server = ThreadedServer(create_api(self), port=self.port).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the sandbox is not started")
        return self._server.url

    def source_block(self, name: str, team: str, *, rate_limit: float | None = None,
                     comments: str = "blocks") -> str:
        """A `tacit.toml` `[[sources]]` block for a Notion source reading this sandbox, with each
        teamspace mapped to its team (for the demo and the tests)."""
        from connectors.sandbox.notion.workspace import TEAMSPACES

        spaces = ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in TEAMSPACES.items())
        lines = ["[[sources]]", f'name = "{name}"', 'kind = "notion"', f'team = "{team}"',
                 f'token = "{self.token}"', f'base_url = "{self.url}"', f'comments = "{comments}"',
                 f"teamspaces = {{ {spaces} }}"]
        if rate_limit:
            lines.append(f"rate_limit = {rate_limit}")
        return "\n".join(lines) + "\n\n"

    # ------------------------------------------------------------------ traffic
    def inject(self, status: int, count: int = 1, retry_after: float | None = None) -> None:
        """The next `count` API requests answer `status` (with Notion's error body)."""
        ra = None if retry_after is None else max(0, math.ceil(retry_after))
        with self._lock:
            self._faults.extend([(status, ra)] * count)

    def _slow_or_cut(self) -> tuple[float, bool]:
        """(seconds to wait, whether to cut the body) for the answer being made now."""
        wait, cut = self._next_delay(), self._cut_next()
        if cut:
            with self._lock:
                self.by_status[-1] += 1  # -1: truncated answers
        return wait, cut

    def _arrive(self, method: str, path: str) -> tuple[int, int | None] | None:
        with self._lock:
            self.requests.append((method, path))
            if self._faults:
                fault = self._faults.pop(0)
                self.by_status[fault[0]] += 1
                return fault
            if any(path == p or path.startswith(p + "/") for p in self.forbidden):
                return 403, None
        return None

    def _throttle(self) -> int | None:
        """GCRA over `rate_limit` a second with `burst`; None = allowed, else seconds to wait."""
        if not self.rate_limit:
            return None
        with self._lock:
            now = time.monotonic()
            interval = 1.0 / self.rate_limit
            tat = max(self._tat, now)
            if tat - now > (self.burst - 1) * interval + 1e-9:
                self.by_status[429] += 1
                # Notion sends whole seconds.
                return max(1, math.ceil(tat - now - (self.burst - 1) * interval))
            self._tat = tat + interval
        return None

    @property
    def request_count(self) -> int:
        return len(self.requests)

    def count(self, prefix: str = "", method: str | None = None) -> int:
        """Requests whose path starts with `prefix` (e.g. "/v1/blocks/<id>/children")."""
        return sum(1 for m, p in list(self.requests) if p.startswith(prefix) and (method is None or m == method))

    def reset_counts(self) -> None:
        with self._lock:
            self.requests.clear()
            self.by_status.clear()

    @staticmethod
    def norm(object_id: str) -> str:
        """Notion accepts ids with or without dashes."""
        raw = object_id.replace("-", "")
        try:
            return str(uuid.UUID(raw))
        except ValueError:
            return object_id

    # ------------------------------------------------------------------ rendering
    def _page_json(self, page: Page) -> dict[str, Any]:
        return page.json()

    def _block_json(self, block: Block) -> dict[str, Any]:
        data = block.json()
        if block.id in self._corrupt:
            data[block.type] = {"rich_text": 42}  # an unexpected payload: a number where a list belongs
        return data

    # ------------------------------------------------------------------ edits
    def page_id(self, key: str) -> str:
        return self.workspace.keys[key]

    def edit_page(self, page_id: str, paragraph: str | None = None, *, title: str | None = None,
                  at: datetime | None = None, notify: bool = True) -> None:
        """Append a paragraph and/or rename; bumps `last_edited_time` (rounded to the minute) to now,
        or to `at` (an edit made a while ago, say, that the last sync did not see)."""
        ws = self.workspace
        with ws.lock:
            page = ws.pages[page_id]
            now = minute(at) if at is not None else ws.edited_now()
            if paragraph is not None:
                block = Block(id=str(uuid.uuid4()), type="paragraph",
                              payload={"rich_text": rich(paragraph), "color": "default"},
                              parent={"type": "page_id", "page_id": page.id}, created=now, edited=now,
                              author=page.editor)
                ws.blocks[block.id] = block
                page.children.append(block.id)
            if title is not None:
                for value in page.properties.values():
                    if value.get("type") == "title":
                        value["title"] = [text(title)]
                if page.id in ws.blocks and ws.blocks[page.id].type == "child_page":
                    ws.blocks[page.id].payload = {"title": title}
            page.edited = now
        if notify:
            self._emit("page.content_updated" if paragraph is not None else "page.properties_updated", page_id)

    def add_page(self, parent_id: str, title: str, paragraphs: list[str], *, notify: bool = True) -> str:
        ws = self.workspace
        with ws.lock:
            now = ws.edited_now()
            parent = ws.pages[parent_id]
            page = Page(id=str(uuid.uuid4()), parent={"type": "page_id", "page_id": parent_id},
                        properties={"title": {"id": "title", "type": "title", "title": [text(title)]}},
                        created=now, edited=now, author=parent.author, editor=parent.author)
            ws.pages[page.id] = page
            for para in paragraphs:
                block = Block(id=str(uuid.uuid4()), type="paragraph", payload={"rich_text": rich(para),
                                                                               "color": "default"},
                              parent={"type": "page_id", "page_id": page.id}, created=now, edited=now,
                              author=parent.author)
                ws.blocks[block.id] = block
                page.children.append(block.id)
            ws.blocks[page.id] = Block(id=page.id, type="child_page", payload={"title": title},
                                       parent={"type": "page_id", "page_id": parent_id}, created=now, edited=now,
                                       author=parent.author, has_children_override=bool(paragraphs))
            parent.children.append(page.id)
        if notify:
            self._emit("page.created", page.id)
        return page.id

    def move_page(self, page_id: str, new_parent_id: str, *, notify: bool = True) -> None:
        """Move a page under another page (perhaps in another teamspace). `last_edited_time` is left
        alone, on the page and below it: the case a client cannot see from edit times."""
        ws = self.workspace
        with ws.lock:
            page = ws.pages[page_id]
            old = ws._parent_page(page)
            if old is not None and page_id in ws.pages[old].children:
                ws.pages[old].children.remove(page_id)
            elif page.parent.get("type") == "block_id":
                ws.blocks[page.parent["block_id"]].children.remove(page_id)
            page.parent = {"type": "page_id", "page_id": new_parent_id}
            ws.pages[new_parent_id].children.append(page_id)
            if page_id in ws.blocks:
                ws.blocks[page_id].parent = dict(page.parent)
        if notify:
            self._emit("page.moved", page_id, data={"parent": {"id": new_parent_id, "type": "page"}})

    def delete_page(self, page_id: str, *, notify: bool = True) -> list[str]:
        """Move a page (and the pages below it) to the trash; returns every trashed page id."""
        ws = self.workspace
        with ws.lock:
            gone = [page_id, *ws.descendants(page_id)]
            for pid in gone:
                ws.pages[pid].in_trash = True
        if notify:
            self._emit("page.deleted", page_id)
        return gone

    def restore_page(self, page_id: str, *, notify: bool = True) -> None:
        ws = self.workspace
        with ws.lock:
            for pid in [page_id, *ws.descendants(page_id)]:
                ws.pages[pid].in_trash = False
        if notify:
            self._emit("page.undeleted", page_id)

    def unshare_page(self, page_id: str) -> list[str]:
        """Remove the integration's access to a page and everything below it (no event: it cannot see it)."""
        ws = self.workspace
        with ws.lock:
            gone = [page_id, *ws.descendants(page_id)]
            for pid in gone:
                ws.pages[pid].shared = False
        return gone

    def corrupt_page(self, page_id: str) -> None:
        """Make the page's first block an unexpected payload (a client must fail that page only)."""
        ws = self.workspace
        with ws.lock:
            page = ws.pages[page_id]
            self._corrupt.add(page.children[0])
            page.edited = ws.edited_now()

    def add_comment(self, target_id: str, body: str, *, author: str, discussion_id: str | None = None,
                    on_block: bool = False, notify: bool = True) -> str:
        """A new comment (a new discussion unless `discussion_id`); does not change the page's edit time."""
        ws = self.workspace
        with ws.lock:
            parent = {"type": "block_id", "block_id": target_id} if on_block else {"type": "page_id",
                                                                                   "page_id": target_id}
            comment = Comment(id=str(uuid.uuid4()), parent=parent, discussion_id=discussion_id or str(uuid.uuid4()),
                              created=ws.now(), author=author, rich_text=rich(body))
            ws.comments.append(comment)
            page_id = ws.block_page(target_id) if on_block else target_id
        if notify:
            self._emit("comment.created", comment.id, entity_type="comment",
                       data={"page_id": page_id, "parent": {"id": target_id, "type": "block" if on_block else "page"}})
        return comment.discussion_id

    def delete_comment(self, comment_id: str, *, notify: bool = True) -> None:
        ws = self.workspace
        with ws.lock:
            comment = next(c for c in ws.comments if c.id == comment_id)
            ws.comments.remove(comment)
            target = comment.parent.get("page_id") or comment.parent["block_id"]
            page_id = comment.parent.get("page_id") or ws.block_page(target)
        if notify:
            self._emit("comment.deleted", comment_id, entity_type="comment",
                       data={"page_id": page_id, "parent": {"id": target, "type": comment.parent["type"][:-3]}})

    # ------------------------------------------------------------------ webhooks
    def subscribe(self, url: str) -> str:
        """Create a subscription: POST the verification token to `url`; later edits send signed events."""
        self.webhook_url = url
        self.verification_token = "secret_" + secrets.token_hex(20)
        response = httpx.post(url, json={"verification_token": self.verification_token}, timeout=30)
        self.deliveries.append(({"verification_token": "…"}, response.status_code))
        return self.verification_token

    def sign(self, body: bytes, token: str | None = None) -> str:
        key = (token or self.verification_token or "").encode()
        return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()

    def event(self, event_type: str, entity_id: str, *, entity_type: str = "page",
              data: dict[str, Any] | None = None) -> dict[str, Any]:
        ws = self.workspace
        return {
            "id": str(uuid.uuid4()), "timestamp": iso(ws.now()), "workspace_id": ws.id, "workspace_name": ws.name,
            "subscription_id": stable_id("subscription"), "integration_id": stable_id("integration"),
            "type": event_type, "authors": [{"id": next(iter(ws.users)), "type": "person"}],
            "accessible_by": [{"id": ws.bot_id, "type": "bot"}], "attempt_number": 1, "api_version": "2025-09-03",
            "entity": {"id": entity_id, "type": entity_type}, "data": data or {},
        }

    def deliver(self, event: dict[str, Any]) -> int:
        """POST one signed event to the subscription; returns the receiver's status."""
        if not self.webhook_url:
            raise RuntimeError("no webhook subscription (call subscribe first)")
        body = json.dumps(event).encode()
        response = httpx.post(self.webhook_url, content=body, timeout=60, headers={
            "Content-Type": "application/json", "X-Notion-Signature": self.sign(body)})
        self.deliveries.append((event, response.status_code))
        return response.status_code

    def _emit(self, event_type: str, entity_id: str, *, entity_type: str = "page",
              data: dict[str, Any] | None = None) -> None:
        if self.webhook_url and self.verification_token:
            self.deliver(self.event(event_type, entity_id, entity_type=entity_type, data=data))

    # ------------------------------------------------------------------ ground truth
    def expected_ids(self, comments: str = "blocks") -> set[str]:
        """External ids a full sync must produce: every visible page and row, and their discussions."""
        ws = self.workspace
        with ws.lock:
            pages = {p.id for p in ws.listed_pages()}
            ids = set(pages)
            if comments == "off":
                return ids
            for c in ws.comments:
                target = c.parent.get("page_id") or c.parent.get("block_id")
                if c.parent["type"] == "page_id" and target in pages:
                    ids.add(c.discussion_id)
                elif comments == "blocks" and ws.block_page(target) in pages and ws.container(target) is not None:
                    ids.add(c.discussion_id)
            return ids

    def minimum_requests(self, comments: str = "pages") -> dict[str, int]:
        """The fewest requests the API allows for a full read: listing, every block container once,
        comments of every page (and block), and the user directory."""
        ws = self.workspace
        with ws.lock:
            pages = ws.listed_pages()
            listing = math.ceil((len(pages) + len(ws.data_sources)) / 100)
            containers: set[str] = set()

            def walk(container: str) -> int:
                if container in containers:
                    return 0
                containers.add(container)
                children = ws.container(container) or []
                calls = max(1, math.ceil(len(children) / 100))
                for child in children:
                    block = ws.blocks[child]
                    if block.type in ("child_page", "child_database") or not block.json()["has_children"]:
                        continue
                    synced = block.payload.get("synced_from") if block.type == "synced_block" else None
                    calls += walk(synced["block_id"] if synced else child)
                return calls

            blocks = sum(walk(p.id) for p in pages)
            block_count = sum(1 for c in containers for b in (ws.container(c) or [])
                              if ws.blocks[b].type not in ("child_page", "child_database"))
            comment_calls = len(pages) + (block_count if comments == "blocks" else 0)
            users = math.ceil(len(ws.users) / 100)
        return {"listing": listing, "blocks": blocks, "comments": comment_calls, "users": users,
                "pages": len(pages), "total": listing + blocks + comment_calls + users}


@contextmanager
def running_sandbox(**kwargs: Any) -> Iterator[NotionSandbox]:
    sandbox = NotionSandbox(**kwargs).start()
    try:
        yield sandbox
    finally:
        sandbox.stop()
