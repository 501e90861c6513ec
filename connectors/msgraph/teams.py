"""Microsoft Teams: channel messages with their replies, as threads linked to their channel.

Roots: per channel, `GET .../messages/delta` returns the root messages created or changed since
the last round, *without their replies* (https://learn.microsoft.com/graph/api/chatmessage-delta:
"Retrieve the list of messages (without the replies) in a channel of a team ... To get the replies
for a message, use the list message replies or the get message reply operation"). Where Graph
refuses delta for a channel (400), the channel is listed instead (`GET .../messages`, newest first,
https://learn.microsoft.com/graph/api/channel-list-messages) and a root is kept when it changed
after the stored watermark (minus an overlap); the watermark only moves once the whole listing is
read, since the listing is not in ascending order.

Replies: read per root with list message replies (`GET .../messages/{id}/replies`, at most 50 a
page, paged with `@odata.nextLink`, https://learn.microsoft.com/graph/api/chatmessage-list-replies),
twenty roots per JSON `$batch`. Both requests ask for `$expand=replies` as well; a root that comes
back *with* a `replies` array proves the expansion was honoured and its replies are not read again.

New replies to old threads: the reference does not say that a reply changes its root's
`lastModifiedDateTime` ("created (initial setting) or modified, including when a reaction is added
or removed", https://learn.microsoft.com/graph/api/resources/chatmessage) nor that it brings the
root back into the delta. So the checkpoint keeps, per thread, a fingerprint of its replies (ids
and change times); after a channel's round, the replies of every known thread the round did not
return are read again (twenty threads a `$batch`), and a thread whose fingerprint changed is read
with its root and written again. A root message with `deletedDateTime` tombstones its thread;
deleted replies are left out. Files shared in channels live in the team's group drive, which
`drives.resolve_drives` adds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.teams.item.channels.item.messages.delta.delta_request_builder import (
    DeltaRequestBuilder,
)
from msgraph.generated.teams.item.channels.item.messages.item.chat_message_item_request_builder import (
    ChatMessageItemRequestBuilder,
)
from msgraph.generated.teams.item.channels.item.messages.item.replies.replies_request_builder import (
    RepliesRequestBuilder,
)
from msgraph.generated.teams.item.channels.item.messages.messages_request_builder import (
    MessagesRequestBuilder,
)

from connectors.base import ConfigError, Failure, Interaction, Message, Tombstone
from connectors.msgraph import delta, ids
from connectors.msgraph.client import MAX_BATCH, BadRequest, NotFound, translate
from connectors.msgraph.mailtext import body_text
from connectors.msgraph.settings import GraphCheckpoint
from connectors.msgraph.walker import Walker, parse_time

PERMISSION = "ChannelMessage.Read.All"
OVERLAP = timedelta(minutes=5)
PAGE = 50  # the most `$top` allows on channel messages and on replies
RECHECK_CHUNK = 100  # known threads re-read between two checkpoint marks
def scope_key(team_id: str, channel_id: str) -> str:
    return f"channel:{team_id}:{channel_id}"


async def channels_of(w: Walker, team_id: str) -> tuple[Any, list[Any]]:
    client = w.client
    try:
        team = await w.session.call(f"team {team_id}", "Team.ReadBasic.All",
                                    lambda: client.teams.by_team_id(team_id).get())
    except NotFound:
        raise ConfigError(f"teams: no Microsoft Teams team {team_id!r}") from None
    channels = await w.session.call(f"channels of team {team.display_name or team_id}", "Channel.ReadBasic.All",
                                    lambda: client.teams.by_team_id(team_id).channels.get())
    return team, list(channels.value or [])


async def sync_team(w: Walker, team_id: str, cp: GraphCheckpoint, visited: set[str] | None = None
                    ) -> AsyncIterator[Any]:
    team, channels = await channels_of(w, team_id)
    for channel in channels:
        key = scope_key(team_id, channel.id)
        if visited is not None:
            visited.add(key)
        touched: set[str] = set()  # roots whose thread this run has read or proven unchanged
        listed = key in cp.watermarks
        if not listed:
            try:
                async for record in _delta(w, team, channel, cp, touched):
                    yield record
            except BadRequest:
                w.stats["channels_without_delta"] += 1
                cp.pending.pop(key, None)
                cp.delta.pop(key, None)
                cp.watermarks[key] = ""
                listed = True
        if listed:
            async for record in _listing(w, team, channel, cp, touched):
                yield record
        async for record in _recheck(w, team, channel, cp, touched):
            yield record


async def _delta(w: Walker, team: Any, channel: Any, cp: GraphCheckpoint, touched: set[str]) -> AsyncIterator[Any]:
    builder = w.client.teams.by_team_id(team.id).channels.by_channel_id(channel.id).messages.delta
    config = RequestConfiguration(query_parameters=DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(
        expand=["replies"], top=PAGE))

    held: list[dict[str, Any]] = []  # roots kept for the next page, so each `$batch` of replies is full

    async def handle(page: dict[str, Any]) -> AsyncIterator[Any]:
        held.extend(page.get("value") or [])
        unread = sum(1 for r in held if not isinstance(r.get("replies"), list))
        last = not page.get("@odata.nextLink")
        cut = len(held) if last or unread % MAX_BATCH == 0 else _cut(held, unread - unread % MAX_BATCH)
        ready, held[:] = held[:cut], held[cut:]
        for record in await thread_records(w, team, channel, cp, ready, touched):
            yield record

    async for record in delta.walk(w, cp, scope_key(team.id, channel.id),
                                   lambda: builder.to_get_request_information(config),
                                   what=f"messages of channel {channel.display_name}", permission=PERMISSION,
                                   handle=handle, holding=lambda: bool(held), on_restart=held.clear):
        yield record


def _cut(roots: list[dict[str, Any]], unread: int) -> int:
    """How many of `roots` to write now so that exactly `unread` of them need their replies read."""
    seen = 0
    for n, root in enumerate(roots):
        if not isinstance(root.get("replies"), list):
            if seen == unread:
                return n
            seen += 1
    return len(roots)


async def _listing(w: Walker, team: Any, channel: Any, cp: GraphCheckpoint, touched: set[str]) -> AsyncIterator[Any]:
    key = scope_key(team.id, channel.id)
    mark = cp.watermarks.get(key) or ""
    since = datetime.fromisoformat(mark) - OVERLAP if mark else None
    newest = datetime.fromisoformat(mark) if mark else None
    builder = w.client.teams.by_team_id(team.id).channels.by_channel_id(channel.id).messages
    config = RequestConfiguration(query_parameters=MessagesRequestBuilder.MessagesRequestBuilderGetQueryParameters(
        expand=["replies"], top=PAGE))
    url = w.cursor(cp, key)
    while True:
        page = await w.session.json(url or builder.to_get_request_information(config),
                                    f"messages of channel {channel.display_name}", PERMISSION)
        changed_roots = []
        for root in page.get("value") or []:
            changed = _chain_modified(root)
            if changed is not None and (newest is None or changed > newest):
                newest = changed
            if since is not None and changed is not None and changed <= since:
                if _expanded(root):  # the whole chain is in the answer: proven unchanged
                    touched.add(root["id"])
                continue
            changed_roots.append(root)
        for record in await thread_records(w, team, channel, cp, changed_roots, touched):
            yield record
        if page.get("@odata.nextLink"):
            url = cp.pending[key] = page["@odata.nextLink"]
            yield w.mark(cp)
            continue
        cp.pending.pop(key, None)
        cp.watermarks[key] = newest.isoformat() if newest else ""
        yield w.mark(cp)
        return


def _chain_modified(root: dict[str, Any]) -> datetime | None:
    times = [parse_time(m.get(k)) for m in [root, *(root.get("replies") or [])]
             for k in ("lastModifiedDateTime", "deletedDateTime", "createdDateTime")]
    present = [t for t in times if t is not None]
    return max(present) if present else None


def _expanded(root: dict[str, Any]) -> bool:
    """Whether the answer holds the root's whole reply chain (`$expand=replies` honoured, no more pages)."""
    return isinstance(root.get("replies"), list) and not root.get("replies@odata.nextLink")


def fingerprint(replies: list[dict[str, Any]]) -> str:
    """What changes when a reply is posted, edited or deleted: ids and change times of the replies."""
    keys = sorted((str(r.get("id")), str(r.get("lastModifiedDateTime")), str(r.get("deletedDateTime")))
                  for r in replies)
    return hashlib.sha256(json.dumps(keys).encode()).hexdigest()[:12]


async def thread_records(w: Walker, team: Any, channel: Any, cp: GraphCheckpoint, roots: list[dict[str, Any]],
                         touched: set[str]) -> list[Any]:
    """The threads of these root messages (each with its replies, read as needed), in order; the
    checkpoint's fingerprints follow."""
    known = cp.threads.setdefault(scope_key(team.id, channel.id), {})
    live = [r for r in roots if not r.get("deletedDateTime") and (r.get("messageType") or "message") == "message"]
    replies = await replies_of(w, team.id, channel, live)
    out: list[Any] = []
    for root in roots:
        touched.add(root["id"])
        got = replies.get(root["id"])
        if isinstance(got, Failure):
            out.append(got)
            continue
        record = thread_record(w, team, channel, root, got or [])
        if isinstance(record, Tombstone):
            known.pop(root["id"], None)
        elif record is not None:
            known[root["id"]] = fingerprint(got or [])
        if record is not None:
            out.append(record)
    return out


async def replies_of(w: Walker, team_id: str, channel: Any, roots: list[dict[str, Any]]
                     ) -> dict[str, list[dict[str, Any]] | Failure]:
    """Every reply of each root: from the answer when `$expand` was honoured, else with list message
    replies, twenty roots per `$batch`, following each thread's `@odata.nextLink`."""
    out: dict[str, list[dict[str, Any]] | Failure] = {}
    what = f"replies in channel {channel.display_name}"
    unread: list[str] = []
    for root in roots:
        if isinstance(root.get("replies"), list):
            found = list(root["replies"])
            next_link = root.get("replies@odata.nextLink")
            while next_link:  # more replies than one expansion holds
                more = await w.session.json(next_link, what, PERMISSION)
                found += more.get("value") or []
                next_link = more.get("@odata.nextLink")
            out[root["id"]] = found
            w.stats["replies_expanded"] += 1
        else:
            unread.append(root["id"])
    out.update(await _read_replies(w, team_id, channel, unread))
    return out


async def _read_replies(w: Walker, team_id: str, channel: Any, root_ids: list[str]
                        ) -> dict[str, list[dict[str, Any]] | Failure]:
    if not root_ids:
        return {}
    what = f"replies in channel {channel.display_name}"
    messages = w.client.teams.by_team_id(team_id).channels.by_channel_id(channel.id).messages
    config = RequestConfiguration(query_parameters=RepliesRequestBuilder.RepliesRequestBuilderGetQueryParameters(
        top=PAGE))
    requests = {str(n): messages.by_chat_message_id(rid).replies.to_get_request_information(config)
                for n, rid in enumerate(root_ids)}
    answers = await w.session.batch(requests, what, PERMISSION)
    out: dict[str, list[dict[str, Any]] | Failure] = {}
    for n, rid in enumerate(root_ids):
        answer = answers[str(n)]
        if answer.status in (401, 403):
            raise translate(answer.status, "", "", what, PERMISSION)
        if answer.status != 200:
            out[rid] = Failure(external_id=ids.channel_thread(team_id, channel.id, rid), retryable=answer.status != 404,
                               message=f"{what}: Graph answered {answer.status} for the replies of {rid}")
            continue
        found = list((answer.body or {}).get("value") or [])
        next_link = (answer.body or {}).get("@odata.nextLink")
        while next_link:  # a thread longer than one page
            more = await w.session.json(next_link, what, PERMISSION)
            found += more.get("value") or []
            next_link = more.get("@odata.nextLink")
        out[rid] = found
    w.stats["replies_read"] += len(root_ids)
    return out


async def _recheck(w: Walker, team: Any, channel: Any, cp: GraphCheckpoint, touched: set[str]) -> AsyncIterator[Any]:
    """Re-read the replies of known threads this run did not return; write those whose replies changed.
    A thread whose replies cannot be found any more (404) is gone; another failure is retried next run."""
    known = cp.threads.setdefault(scope_key(team.id, channel.id), {})
    stale = [rid for rid in known if rid not in touched]
    for start in range(0, len(stale), RECHECK_CHUNK):
        chunk = stale[start:start + RECHECK_CHUNK]
        changed: dict[str, list[dict[str, Any]]] = {}
        for rid, got in (await _read_replies(w, team.id, channel, chunk)).items():
            if isinstance(got, Failure):
                if not got.retryable:
                    known.pop(rid, None)
                yield got if got.retryable else _gone(team.id, channel.id, rid)
            elif fingerprint(got) != known.get(rid):
                changed[rid] = got
        roots = await _read_roots(w, team.id, channel, list(changed))
        for rid, got in changed.items():
            root = roots.get(rid)
            if isinstance(root, Failure):
                yield root
                continue
            record = _gone(team.id, channel.id, rid) if root is None else thread_record(w, team, channel, root, got)
            if isinstance(record, Interaction):
                known[rid] = fingerprint(got)
            else:
                known.pop(rid, None)
            if record is not None:
                yield record
        w.stats["threads_rechecked"] += len(chunk)
        w.stats["threads_with_new_replies"] += len(changed)
        yield w.mark(cp)


def _gone(team_id: str, channel_id: str, root_id: str) -> Tombstone:
    return Tombstone(external_id=ids.channel_thread(team_id, channel_id, root_id), reason="deleted")


async def _read_roots(w: Walker, team_id: str, channel: Any, root_ids: list[str]
                      ) -> dict[str, dict[str, Any] | Failure | None]:
    """Root messages by id with `$batch` (None: gone)."""
    if not root_ids:
        return {}
    what = f"messages in channel {channel.display_name}"
    messages = w.client.teams.by_team_id(team_id).channels.by_channel_id(channel.id).messages
    requests = {str(n): messages.by_chat_message_id(rid).to_get_request_information()
                for n, rid in enumerate(root_ids)}
    answers = await w.session.batch(requests, what, PERMISSION)
    out: dict[str, dict[str, Any] | Failure | None] = {}
    for n, rid in enumerate(root_ids):
        answer = answers[str(n)]
        if answer.status in (401, 403):
            raise translate(answer.status, "", "", what, PERMISSION)
        if answer.status == 404:
            out[rid] = None
        elif answer.status != 200:
            out[rid] = Failure(external_id=ids.channel_thread(team_id, channel.id, rid), retryable=True,
                               message=f"{what}: Graph answered {answer.status} for {rid}")
        else:
            out[rid] = answer.body or {}
    return out


def thread_record(w: Walker, team: Any, channel: Any, root: dict[str, Any],
                  replies: list[dict[str, Any]]) -> Interaction | Tombstone | None:
    """A root message and its replies as one thread; a deleted root is a tombstone; system events are skipped."""
    external_id = ids.channel_thread(team.id, channel.id, root["id"])
    if root.get("deletedDateTime"):
        return Tombstone(external_id=external_id, reason="deleted")
    if (root.get("messageType") or "message") != "message":
        return None
    asker = _author(root)
    said: list[Message] = []
    for m in [root, *sorted(replies, key=lambda r: (r.get("createdDateTime") or "", r.get("id") or ""))]:
        if m.get("deletedDateTime") or (m.get("messageType") or "message") != "message":
            continue
        body = m.get("body") or {}
        text = body_text(body.get("content"), body.get("contentType") or "html")
        if text:
            author = _author(m)
            said.append(Message(author=author, role="user" if author == asker else "assistant", text=text,
                                at=parse_time(m.get("createdDateTime"))))
    if not said:
        return Tombstone(external_id=external_id, reason="empty thread")
    w.stats["channel_threads"] += 1
    return Interaction(
        external_id=external_id, kind="thread", messages=said, acl=[f"group:{team.id}"],
        metadata={"source": "teams", "team_id": team.id, "team": team.display_name or "", "channel_id": channel.id,
                  "channel": channel.display_name or "", "channel_url": channel.web_url, "subject": root.get("subject"),
                  "url": root.get("webUrl"), "messages": len(said)},
    )


def _author(m: dict[str, Any]) -> str:
    ident = m.get("from") or {}
    who = ident.get("user") or ident.get("application") or {}
    return str(who.get("displayName") or who.get("id") or "")


async def fetch_thread(w: Walker, team_id: str, channel_id: str, root_id: str,
                       teams: dict[str, tuple[Any, list[Any]]]) -> Any:
    """Re-read one thread (after a change notification): its Interaction, or a Tombstone when gone."""
    external_id = ids.channel_thread(team_id, channel_id, root_id)
    if team_id not in teams:
        teams[team_id] = await channels_of(w, team_id)
    team, channels = teams[team_id]
    channel = next((c for c in channels if c.id == channel_id), None)
    if channel is None:
        return Tombstone(external_id=external_id, reason="channel gone")
    params = ChatMessageItemRequestBuilder.ChatMessageItemRequestBuilderGetQueryParameters(expand=["replies"])
    info = (w.client.teams.by_team_id(team_id).channels.by_channel_id(channel_id).messages
            .by_chat_message_id(root_id).to_get_request_information(RequestConfiguration(query_parameters=params)))
    try:
        root = await w.session.json(info, f"message in channel {channel.display_name}", PERMISSION)
    except NotFound:
        return Tombstone(external_id=external_id, reason="deleted")
    replies = (await replies_of(w, team_id, channel, [root])).get(root["id"], [])
    if isinstance(replies, Failure):
        return replies
    return thread_record(w, team, channel, root, replies)
