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
from msgraph.generated.teams.item.channels.item.messages.delta.delta_request_builder import DeltaRequestBuilder
from msgraph.generated.teams.item.channels.item.messages.item.chat_message_item_request_builder import (
    ChatMessageItemRequestBuilder,
)
from msgraph.generated.teams.item.channels.item.messages.messages_request_builder import MessagesRequestBuilder

from connectors.base import CheckpointExpired, ConfigError, Interaction, Message, Tombstone
from connectors.msgraph import ids
from connectors.msgraph.client import BadRequest, NotFound
from connectors.msgraph.mailtext import body_text
from connectors.msgraph.settings import GraphCheckpoint
from connectors.msgraph.walker import Walker

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
    url = cp.pending.get(key) or cp.delta.get(key)
    restarted = False
    while True:
        try:
            page = await w.session.call(f"messages of channel {channel.display_name}", PERMISSION,
                                        lambda u=url: builder.with_url(u).get() if u else builder.get(config))
        except CheckpointExpired:
            if restarted:
                raise
            restarted = True
            w.stats["delta_restarts"] += 1
            cp.pending.pop(key, None)
            cp.delta.pop(key, None)
            url = None
            continue
        for root in page.value or []:
            record = await thread_record(w, team, channel, root)
            if record is not None:
                yield record
        if page.odata_next_link:
            url = cp.pending[key] = page.odata_next_link
            yield w.mark(cp)
            continue
        cp.pending.pop(key, None)
        if page.odata_delta_link:
            cp.delta[key] = page.odata_delta_link
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
    url = cp.pending.get(key)
    while True:
        page = await w.session.call(f"messages of channel {channel.display_name}", PERMISSION,
                                    lambda u=url: builder.with_url(u).get() if u else builder.get(config))
        for root in page.value or []:
            changed = _chain_modified(root)
            if changed is not None and (newest is None or changed > newest):
                newest = changed
            if since is not None and changed is not None and changed <= since:
                continue
            record = await thread_record(w, team, channel, root)
            if record is not None:
                yield record
        if page.odata_next_link:
            url = cp.pending[key] = page.odata_next_link
            yield w.mark(cp)
            continue
        cp.pending.pop(key, None)
        cp.watermarks[key] = newest.isoformat() if newest else ""
        yield w.mark(cp)
        return


def _chain_modified(root: Any) -> datetime | None:
    times = [t for m in [root, *(root.replies or [])]
             for t in (m.last_modified_date_time, m.deleted_date_time, m.created_date_time) if t is not None]
    return max(times) if times else None


async def thread_record(w: Walker, team: Any, channel: Any, root: Any) -> Interaction | Tombstone | None:
    """A root message and its replies as one thread; a deleted root is a tombstone; system events are skipped."""
    external_id = ids.channel_thread(team.id, channel.id, root.id)
    if root.deleted_date_time is not None:
        return Tombstone(external_id=external_id, reason="deleted")
    if _kind(root) != "message":
        return None
    replies = list(root.replies or [])
    next_link = (root.additional_data or {}).get("replies@odata.nextLink")
    while next_link:  # more replies than one expansion holds
        more = await w.session.call(f"replies in channel {channel.display_name}", PERMISSION, lambda u=next_link: (
            w.client.teams.by_team_id(team.id).channels.by_channel_id(channel.id).messages
            .by_chat_message_id(root.id).replies.with_url(u).get()))
        replies += more.value or []
        next_link = more.odata_next_link
    asker = _author(root)
    said: list[Message] = []
    for m in [root, *sorted(replies, key=lambda r: (r.created_date_time, r.id or ""))]:
        if m.deleted_date_time is not None or _kind(m) != "message":
            continue
        text = body_text(m.body.content if m.body else "", _content_type(m))
        if text:
            author = _author(m)
            said.append(Message(author=author, role="user" if author == asker else "assistant", text=text,
                                at=m.created_date_time))
    if not said:
        return Tombstone(external_id=external_id, reason="empty thread")
    w.stats["channel_threads"] += 1
    return Interaction(
        external_id=external_id, kind="thread", messages=said, acl=[f"group:{team.id}"],
        metadata={"source": "teams", "team_id": team.id, "team": team.display_name or "", "channel_id": channel.id,
                  "channel": channel.display_name or "", "channel_url": channel.web_url, "subject": root.subject,
                  "url": root.web_url},
    )


def _kind(m: Any) -> str:
    kind = m.message_type
    return str(getattr(kind, "value", kind) or "message")


def _content_type(m: Any) -> str:
    kind = m.body.content_type if m.body else None
    return str(getattr(kind, "value", kind) or "html")


def _author(m: Any) -> str:
    ident = m.from_
    user = getattr(ident, "user", None) if ident else None
    app = getattr(ident, "application", None) if ident else None
    return (user.display_name or user.id or "") if user else (app.display_name or "") if app else ""


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
    try:
        root = await w.session.call(f"message in channel {channel.display_name}", PERMISSION, lambda: (
            w.client.teams.by_team_id(team_id).channels.by_channel_id(channel_id).messages
            .by_chat_message_id(root_id).get(RequestConfiguration(query_parameters=params))))
    except NotFound:
        return Tombstone(external_id=external_id, reason="deleted")
    return await thread_record(w, team, channel, root)
