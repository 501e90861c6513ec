"""Subscriptions and change notifications of the fake Graph.

Creating a subscription POSTs `?validationToken=…` to the notification URL (and to the
lifecycle URL when given) and requires the token echoed back as `text/plain` with 200 within
10 seconds, as Graph does (https://learn.microsoft.com/graph/change-notifications-delivery-webhooks#notificationurl-validation);
`clientState` is at most 128 characters and lifetimes are capped per resource
(https://learn.microsoft.com/graph/api/resources/subscription#subscription-lifetime); lifecycle events
follow https://learn.microsoft.com/graph/change-notifications-lifecycle-events. Content changes queue basic notifications (no resource data) for
matching subscriptions; `deliver()` POSTs them. `send_lifecycle()` sends `reauthorizationRequired`,
`subscriptionRemoved` or `missed`. Maximum lifetimes follow Graph's table (see
`connectors.msgraph.subscriptions.MAX_LIFETIME_MINUTES`).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx

from connectors.sandbox.graph.api import Reply, error


class Sandbox(Protocol):
    """What subscriptions use of `GraphSandbox` (a protocol: the package imports this module)."""

    tenant_id: str

    def now(self) -> datetime: ...
    def resource_exists(self, resource: str) -> bool: ...

VALIDATION_TIMEOUT_S = 10.0


def max_lifetime_minutes(resource: str) -> int:
    from connectors.msgraph.subscriptions import lifetime_minutes

    return lifetime_minutes(resource)


def _norm(resource: str) -> str:
    """`teams('a')/channels('b')/messages` and `/teams/a/channels/b/messages` compare equal."""
    resource = re.sub(r"\('([^']*)'\)", r"/\1", resource.strip("/"))
    return resource.lower()


@dataclass
class Subscription:
    id: str
    resource: str
    change_type: str
    notification_url: str
    lifecycle_url: str | None
    client_state: str | None
    expires: datetime
    needs_reauthorization: bool = False
    pending: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "resource": self.resource, "changeType": self.change_type,
                "notificationUrl": self.notification_url, "lifecycleNotificationUrl": self.lifecycle_url,
                "clientState": self.client_state, "applicationId": "tacit-sandbox-app",
                "expirationDateTime": self.expires.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "latestSupportedTlsVersion": "v1_2"}


class Subscriptions:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sb = sandbox
        self.items: dict[str, Subscription] = {}
        self.lock = threading.Lock()
        self.validations: list[tuple[str, bool]] = []  # (url, passed)
        self.deliveries: list[tuple[str, int]] = []  # (url, status)

    # ------------------------------------------------------------------ REST
    def create(self, *, body: bytes | None, **_: Any) -> Reply:
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return error(400, "BadRequest", "Invalid JSON body.")
        for key in ("changeType", "notificationUrl", "resource", "expirationDateTime"):
            if not data.get(key):
                return error(400, "BadRequest", f"Missing required property '{key}'.")
        if data.get("clientState") and len(data["clientState"]) > 128:
            return error(400, "BadRequest", "clientState must be at most 128 characters.")
        expires = _parse_time(data["expirationDateTime"])
        problem = self._check_expiry(data["resource"], expires)
        if problem:
            return problem
        resource = _norm(data["resource"])
        # "Drive root item and list change notifications support only the updated changeType"
        # (changeType, https://learn.microsoft.com/graph/api/resources/subscription#properties).
        if resource.startswith("drives/") and set(data["changeType"].split(",")) != {"updated"}:
            return error(400, "InvalidRequest", "The changeType for driveItem subscriptions must be 'updated'.")
        # Teams resources: "If you request a subscription expirationDateTime that is more than 1 hour in the
        # future, you must subscribe to lifecycle notifications by including a lifecycleNotificationUrl"
        # (https://learn.microsoft.com/graph/teams-changenotifications-chatmessage).
        if resource.startswith("teams/") and not data.get("lifecycleNotificationUrl") and \
                expires > self.sb.now() + timedelta(hours=1):
            return error(400, "InvalidRequest", "lifecycleNotificationUrl is a required property for subscription "
                         "creation on this resource when the expirationDateTime value is set to greater than 1 hour.")
        if not self.sb.resource_exists(data["resource"]):
            return error(404, "ResourceNotFound", f"Resource '{data['resource']}' does not exist.")
        for url in filter(None, (data["notificationUrl"], data.get("lifecycleNotificationUrl"))):
            if not self._validate(url):
                return error(400, "ValidationError", "Subscription validation request failed. Notification "
                             "endpoint must respond with 200 OK to validation request.")
        sub = Subscription(secrets.token_hex(16), data["resource"], data["changeType"], data["notificationUrl"],
                           data.get("lifecycleNotificationUrl"), data.get("clientState"), expires)
        with self.lock:
            self.items[sub.id] = sub
        return Reply(201, sub.as_json())

    def list(self, **_: Any) -> Reply:
        return Reply(200, {"value": [s.as_json() for s in self.items.values()]})

    def update(self, sid: str, *, body: bytes | None, **_: Any) -> Reply:
        sub = self.items.get(sid)
        if sub is None:
            return error(404, "ResourceNotFound", f"The object was not found: subscription {sid}.")
        data = json.loads(body or b"{}")
        if "expirationDateTime" in data:
            expires = _parse_time(data["expirationDateTime"])
            problem = self._check_expiry(sub.resource, expires)
            if problem:
                return problem
            sub.expires = expires
        if data.get("notificationUrl"):
            sub.notification_url = data["notificationUrl"]
        sub.needs_reauthorization = False
        return Reply(200, sub.as_json())

    def delete(self, sid: str, **_: Any) -> Reply:
        with self.lock:
            if self.items.pop(sid, None) is None:
                return error(404, "ResourceNotFound", f"The object was not found: subscription {sid}.")
        return Reply(204)

    def _check_expiry(self, resource: str, expires: datetime) -> Reply | None:
        now = self.sb.now()
        limit = max_lifetime_minutes(resource)
        if expires <= now:
            return error(400, "ExpirationDateTimeInPast", "Subscription expiration can only be in the future.")
        if expires > now + timedelta(minutes=limit, seconds=60):
            return error(400, "InvalidRequest", f"Subscription expiration can only be {limit} minutes in the "
                         "future for this resource.")
        return None

    def _validate(self, url: str) -> bool:
        token = "Validation: Testing client application reachability for subscription Request-Id: " + \
            secrets.token_hex(8)
        try:
            resp = httpx.post(url, params={"validationToken": token}, headers={"Content-Type": "text/plain"},
                              timeout=VALIDATION_TIMEOUT_S)
            ok = (resp.status_code == 200 and resp.text == token
                  and resp.headers.get("content-type", "").startswith("text/plain"))
        except httpx.HTTPError:
            ok = False
        self.validations.append((url, ok))
        return ok

    # ------------------------------------------------------------------ notifications
    def on_change(self, resource: str, change: str, rid: str) -> None:
        """Queue a basic notification for every live subscription watching `resource`."""
        target = _norm(resource)
        now = self.sb.now()
        with self.lock:
            for sub in self.items.values():
                watched = _norm(sub.resource)
                if sub.expires <= now or not (target == watched or target.startswith(watched + "/")):
                    continue
                if change not in sub.change_type.split(",") and not (change == "deleted" and
                                                                        "updated" in sub.change_type):
                    continue
                item: dict[str, Any] = {
                    "subscriptionId": sub.id, "subscriptionExpirationDateTime": sub.as_json()["expirationDateTime"],
                    "changeType": change, "resource": resource, "clientState": sub.client_state,
                    "tenantId": self.sb.tenant_id,
                }
                if not watched.startswith("drives/"):
                    item["resourceData"] = {"id": rid, "@odata.id": resource}
                sub.pending.append(item)

    def deliver(self) -> list[int]:
        """POST every queued notification (one request per subscription); returns the statuses."""
        statuses = []
        with self.lock:
            batches = [(s.notification_url, s.pending[:]) for s in self.items.values() if s.pending]
            for s in self.items.values():
                s.pending.clear()
        for url, values in batches:
            statuses.append(self._post(url, {"value": values}))
        return statuses

    def send_lifecycle(self, subscription_id: str, event: str) -> int:
        """Send a lifecycle notification (`reauthorizationRequired`, `subscriptionRemoved`, `missed`)."""
        sub = self.items[subscription_id]
        if event == "reauthorizationRequired":
            sub.needs_reauthorization = True
        if event == "subscriptionRemoved":
            with self.lock:
                self.items.pop(subscription_id, None)
        body = {"value": [{"subscriptionId": sub.id, "subscriptionExpirationDateTime":
                           sub.as_json()["expirationDateTime"], "tenantId": self.sb.tenant_id,
                           "clientState": sub.client_state, "lifecycleEvent": event}]}
        return self._post(sub.lifecycle_url or sub.notification_url, body)

    def _post(self, url: str, body: dict[str, Any]) -> int:
        try:
            status = httpx.post(url, json=body, timeout=120).status_code
        except httpx.HTTPError:
            status = 0
        self.deliveries.append((url, status))
        return status

    def for_resource(self, resource: str) -> list[Subscription]:
        return [s for s in self.items.values() if _norm(s.resource) == _norm(resource)]


def _parse_time(value: str) -> datetime:
    value = value.replace("Z", "+00:00")
    if "." in value:  # Graph accepts 7 fractional digits; Python takes 6
        head, _, rest = value.partition(".")
        digits = re.match(r"\d+", rest)
        frac = digits.group(0)[:6] if digits else "0"
        value = f"{head}.{frac}{rest[digits.end() if digits else 0:]}"
    when = datetime.fromisoformat(value)
    return when if when.tzinfo else when.replace(tzinfo=UTC)
