"""The one Graph delta loop, shared by drives, mail folders and Teams channels.

A round follows `@odata.nextLink` page by page until a page carries `@odata.deltaLink`
(https://learn.microsoft.com/graph/delta-query-overview). After each page has been handled the
cursor moves on in the checkpoint (`pending` while the round is open, `delta` once it closes)
and a `CheckpointMark` is yielded, so a killed sync resumes at the page it had reached.

Restart rule (the same for every scope): a stored token that Graph refuses with 410 Gone
(`resyncRequired`, https://learn.microsoft.com/graph/api/driveitem-delta#response-1 and
https://learn.microsoft.com/graph/delta-query-overview#synchronization-reset) drops the
scope's cursors and starts one round from scratch; a second 410 within the same walk is
raised as `CheckpointExpired`, since a token just issued by the server cannot have expired
unless the server keeps refusing them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from kiota_abstractions.request_information import RequestInformation

from connectors.base import CheckpointExpired, ConfigError
from connectors.msgraph.client import NotFound
from connectors.msgraph.settings import GraphCheckpoint
from connectors.msgraph.walker import Walker

#: Rounds from scratch one walk may start after a 410 Gone.
MAX_RESTARTS = 1

PageHandler = Callable[[dict[str, Any]], AsyncIterator[Any]]


async def walk(w: Walker, cp: GraphCheckpoint, key: str, first: Callable[[], RequestInformation], *,
               what: str, permission: str, handle: PageHandler, on_restart: Callable[[], None] | None = None,
               missing: str | None = None, holding: Callable[[], bool] | None = None) -> AsyncIterator[Any]:
    """Run (or resume) the delta round of scope `key`, yielding what `handle` makes of each page and a
    checkpoint mark after it. `first()` builds the request that starts a round from scratch;
    `on_restart` forgets per-scope state the connector keeps beside the cursor (a 410 means the
    server wants the client to replace what it knows); `missing`, when given, turns a 404 into
    that `ConfigError` (a configured mailbox or folder that does not exist). A handler may keep items
    of a page for the next one (to fill a `$batch`; it must let go of everything on the round's last
    page, the one without `@odata.nextLink`): while `holding()` says so, no mark is yielded, so a
    resumed sync starts from a page whose items were all written."""
    url = w.cursor(cp, key)
    restarts = 0
    while True:
        try:
            page = await w.session.json(url or first(), what, permission)
        except CheckpointExpired:
            if restarts >= MAX_RESTARTS:
                raise
            restarts += 1
            w.stats["delta_restarts"] += 1
            cp.pending.pop(key, None)
            cp.delta.pop(key, None)
            if on_restart is not None:
                on_restart()
            url = None
            continue
        except NotFound:
            if missing is None:
                raise
            raise ConfigError(missing) from None
        async for record in handle(page):
            yield record
        next_link = page.get("@odata.nextLink")
        if next_link:
            url = cp.pending[key] = next_link
            if holding is None or not holding():
                yield w.mark(cp)
            continue
        cp.pending.pop(key, None)
        if page.get("@odata.deltaLink"):
            cp.delta[key] = page["@odata.deltaLink"]
        yield w.mark(cp)
        return
