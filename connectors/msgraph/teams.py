"""Microsoft Teams: channel messages with their replies, as threads linked to their channel.

Per channel, `GET .../messages/delta?$expand=replies` returns each reply chain created or
changed since the last round (https://learn.microsoft.com/graph/api/chatmessage-delta). Where
Graph refuses delta for a channel (400), the channel is listed instead
(`GET .../messages?$expand=replies`, newest first) and a chain is kept when its newest
`lastModifiedDateTime` is past the stored watermark (minus an overlap); the watermark only
moves once the whole listing is read, since the listing is not in ascending order.
A root message with `deletedDateTime` tombstones its thread; deleted replies are left out.
Files shared in channels live in the team's group drive, which `drives.resolve_drives` adds.
"""

from __future__ import annotations

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
from msgraph.generated.teams.item.channels.item.messages.messages_request_builder import (
    MessagesRequestBuilder,
)

from connectors.base import CheckpointExpired, ConfigError, Interaction, Message, Tombstone
from connectors.msgraph import ids
from connectors.msgraph.client import BadRequest, NotFound
from connectors.msgraph.mailtext import body_text
from connectors.msgraph.settings import GraphCheckpoint
from connectors.msgraph.walker import Walker, parse_time

PERMISSION = "ChannelMessage.Read.All"
OVERLAP = timedelta(minutes=5)
PAGE = 50  # the most `$top` allows on channel messages


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
        if key not in cp.watermarks:
            try:
                async for record in _delta(w, team, channel, cp):
                    yield record
                continue
            except BadRequest:
                w.stats["channels_without_delta"] += 1
                cp.pending.pop(key, None)
                cp.delta.pop(key, None)
                cp.watermarks[key] = ""
        async for record in _listing(w, team, channel, cp):
            yield record


async def _delta(w: Walker, team: Any, channel: Any, cp: GraphCheckpoint) -> AsyncIterator[Any]:
    key = scope_key(team.id, channel.id)
    builder = w.client.teams.by_team_id(team.id).channels.by_channel_id(channel.id).messages.delta
    config = RequestConfiguration(query_parameters=DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(
        expand=["replies"], top=PAGE))
    url = w.cursor(cp, key)
    restarted = False
    while True:
        try:
            page = await w.session.json(url or builder.to_get_request_information(config),
                                        f"messages of channel {channel.display_name}", PERMISSION)
        except CheckpointExpired:
            if restarted:
                raise
            restarted = True
            w.stats["delta_restarts"] += 1
            cp.pending.pop(key, None)
            cp.delta.pop(key, None)
            url = None
            continue
        for root in page.get("value") or []:
            record = await thread_record(w, team, channel, root)
            if record is not None:
                yield record
        if page.get("@odata.nextLink"):
            url = cp.pending[key] = page["@odata.nextLink"]
            yield w.mark(cp)
            continue
        cp.pending.pop(key, None)
        if page.get("@odata.deltaLink"):
            cp.delta[key] = page["@odata.deltaLink"]
        yield w.mark(cp)
        return


async def _listing(w: Walker, team: Any, channel: Any, cp: GraphCheckpoint) -> AsyncIterator[Any]:
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
        for root in page.get("value") or []:
            changed = _chain_modified(root)
            if changed is not None and (newest is None or changed > newest):
                newest = changed
            if since is not None and changed is not None and changed <= since:
                continue
            record = await thread_record(w, team, channel, root)
            if record is not None:
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


async def thread_record(w: Walker, team: Any, channel: Any, root: dict[str, Any]) -> Interaction | Tombstone | None:
    """A root message and its replies as one thread; a deleted root is a tombstone; system events are skipped."""
    external_id = ids.channel_thread(team.id, channel.id, root["id"])
    if root.get("deletedDateTime"):
        return Tombstone(external_id=external_id, reason="deleted")
    if (root.get("messageType") or "message") != "message":
        return None
    replies = list(root.get("replies") or [])
    next_link = root.get("replies@odata.nextLink")
    while next_link:  # more replies than one expansion holds
        more = await w.session.json(next_link, f"replies in channel {channel.display_name}", PERMISSION)
        replies += more.get("value") or []
        next_link = more.get("@odata.nextLink")
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
                  "url": root.get("webUrl")},
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
    return await thread_record(w, team, channel, root)
