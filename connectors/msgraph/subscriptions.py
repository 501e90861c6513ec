"""Change-notification subscriptions for a Graph source: which resources, how long, create/renew/delete.

Resources watched: each drive's root (`drives/{id}/root`, only `updated` is supported there),
each mailbox's messages, each team channel's messages. A notification is only a signal; the
receiver (`connectors.msgraph.webhooks`) runs a delta sync or a targeted fetch.

Maximum lifetimes, from "Subscription lifetime" in Microsoft Graph's change-notification docs
(microsoftgraph/microsoft-graph-docs-contrib, concepts/includes/change-notifications-subscription-lifetime.md,
checked for this module): OneDrive/SharePoint driveItem 42,300 minutes (under 30 days);
Outlook message 4,230 minutes (under three days); Teams chatMessage 4,320 minutes (three days).
"Requests to create or renew a subscription beyond the maximum value will fail."
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from msgraph.generated.models.subscription import Subscription

from connectors.msgraph import teams
from connectors.msgraph.drives import resolve_drives
from connectors.msgraph.walker import Walker

MAX_LIFETIME_MINUTES = {"driveItem": 42_300, "message": 4_230, "chatMessage": 4_320}
#: Ask for a little less than the maximum, so clock skew never makes a request exceed it.
SAFETY = timedelta(minutes=15)


def resource_type(resource: str) -> str:
    """`driveItem`, `message` or `chatMessage` for a subscription resource path."""
    path = re.sub(r"\('([^']*)'\)", r"/\1", resource.strip("/")).lower()
    if path.startswith(("drives/", "sites/")) or "/drive/" in path:
        return "driveItem"
    if path.startswith(("teams/", "chats/")) and "messages" in path:
        return "chatMessage"
    if path.startswith(("users/", "me/")) and "messages" in path:
        return "message"
    raise ValueError(f"no known subscription lifetime for resource {resource!r}")


def lifetime_minutes(resource: str) -> int:
    return MAX_LIFETIME_MINUTES[resource_type(resource)]


def expiry(resource: str, now: datetime) -> datetime:
    """The latest expiration Graph accepts for `resource`, less a safety margin."""
    return now + timedelta(minutes=lifetime_minutes(resource)) - SAFETY


async def resources(w: Walker) -> list[tuple[str, str]]:
    """(resource, changeType) for every drive, mailbox and channel the source reads."""
    out: list[tuple[str, str]] = []
    for drive in await resolve_drives(w):
        out.append((f"drives/{drive.id}/root", "updated"))  # drive roots support only `updated`
    for mailbox in w.settings.mailboxes:
        out.append((f"users/{mailbox}/messages", "created,updated,deleted"))
    for team_id in w.settings.teams:
        _, channels = await teams.channels_of(w, team_id)
        for channel in channels:
            out.append((f"teams/{team_id}/channels/{channel.id}/messages", "created,updated,deleted"))
    return out


def _permission(resource: str) -> str:
    return {"driveItem": "Files.Read.All", "message": "Mail.Read",
            "chatMessage": "ChannelMessage.Read.All"}[resource_type(resource)]


async def create(w: Walker, resource: str, change_type: str, notification_url: str, lifecycle_url: str,
                 client_state: str, expires: datetime) -> tuple[str, datetime]:
    """Create a subscription (Graph validates both URLs before answering); returns (id, expiry)."""
    body = Subscription(resource=resource, change_type=change_type, notification_url=notification_url,
                        lifecycle_notification_url=lifecycle_url, client_state=client_state,
                        expiration_date_time=expires, latest_supported_tls_version="v1_2")
    sub = await w.session.call(f"subscribe to {resource}", _permission(resource),
                               lambda: w.client.subscriptions.post(body))
    return sub.id, sub.expiration_date_time or expires


async def renew(w: Walker, subscription_id: str, resource: str, expires: datetime) -> datetime:
    """Move a subscription's expiry (this also reauthorizes it); NotFound if Graph removed it."""
    sub = await w.session.call(f"renew subscription to {resource}", _permission(resource),
                               lambda: w.client.subscriptions.by_subscription_id(subscription_id).patch(
                                   Subscription(expiration_date_time=expires)))
    return (sub.expiration_date_time if sub is not None else None) or expires


async def delete(w: Walker, subscription_id: str, resource: str) -> None:
    await w.session.call(f"delete subscription to {resource}", _permission(resource),
                         lambda: w.client.subscriptions.by_subscription_id(subscription_id).delete())
