"""The fake Graph's v1.0 resources: one dispatcher shared by plain HTTP requests and `$batch`.

`GraphApi.dispatch(method, path, query, headers, body)` answers one request the way Graph
does: OData collections with `@odata.nextLink` / `@odata.deltaLink`, Graph error bodies,
a 302 from `/content` to a pre-authenticated download URL, 410 Gone for an expired delta
token. Paths are relative to `/v1.0`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote, unquote

from connectors.sandbox.graph.state import ChatMessage, Item, Mail, SandboxState, iso, user_id


class Sandbox(Protocol):
    """What the routes use of `GraphSandbox` (a protocol: the package builds its app from this module)."""

    state: SandboxState
    subscriptions: Any  # notify.Subscriptions, whose module imports this one
    revoked: set[str]
    page_size: int
    download_key: bytes

    @property
    def download_base(self) -> str: ...
    def authorized(self, header: str) -> bool: ...


@dataclass
class Reply:
    status: int
    body: Any = None  # a JSON-able value, or bytes
    headers: dict[str, str] = field(default_factory=dict)

    def json_bytes(self) -> bytes:
        return json.dumps(self.body).encode() if not isinstance(self.body, bytes) else self.body


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Reply:
    body = {"error": {"code": code, "message": message,
                      "innerError": {"date": "2025-03-03T09:00:00", "request-id": "sandbox"}}}
    return Reply(status, body, headers or {})


ERROR_CODES = {400: "BadRequest", 401: "InvalidAuthenticationToken", 403: "accessDenied", 404: "itemNotFound",
               410: "resyncRequired", 429: "TooManyRequests", 500: "generalException",
               503: "serviceNotAvailable", 504: "UnknownError"}
ERROR_TEXT = {401: "Access token is empty or invalid.", 403: "Access is denied. Check credentials and try again.",
              429: "Too many requests.", 503: "Service unavailable.", 504: "Gateway timeout.",
              500: "General exception while processing."}

Handler = Callable[..., Reply]


class GraphApi:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sb = sandbox
        self.state: SandboxState = sandbox.state
        s = r"([^/]+)"
        # (method, pattern, handler, permission the route needs)
        self.routes: list[tuple[str, re.Pattern[str], Handler, str]] = [
            ("GET", rf"sites/{s}/drives", self.site_drives, "Sites.Read.All"),
            ("GET", r"sites/(.+)", self.site, "Sites.Read.All"),
            ("GET", rf"groups/{s}/drive", self.group_drive, "Files.Read.All"),
            ("GET", rf"groups/{s}/drives", self.group_drives, "Files.Read.All"),
            ("GET", rf"users/{s}/drive", self.user_drive, "Files.Read.All"),
            ("GET", rf"users/{s}/drives", self.user_drives, "Files.Read.All"),
            ("GET", rf"drives/{s}", self.drive, "Files.Read.All"),
            ("GET", rf"drives/{s}/root/delta", self.drive_delta, "Files.Read.All"),
            ("GET", rf"drives/{s}/items/{s}/delta", self.drive_delta, "Files.Read.All"),
            ("GET", rf"drives/{s}/items/{s}", self.drive_item, "Files.Read.All"),
            ("GET", rf"drives/{s}/items/{s}/content", self.content, "Files.Read.All"),
            ("GET", rf"drives/{s}/items/{s}/children", self.children, "Files.Read.All"),
            ("GET", rf"drives/{s}/items/{s}/permissions", self.permissions, "Files.Read.All"),
            ("GET", rf"users/{s}/mailFolders/{s}/messages/delta", self.mail_delta, "Mail.Read"),
            ("GET", rf"users/{s}/messages", self.messages, "Mail.Read"),
            ("GET", rf"users/{s}/messages/{s}", self.message, "Mail.Read"),
            ("GET", rf"teams/{s}", self.team, "Team.ReadBasic.All"),
            ("GET", rf"teams/{s}/channels", self.channels, "Channel.ReadBasic.All"),
            ("GET", rf"teams/{s}/channels/{s}/messages/delta", self.channel_delta, "ChannelMessage.Read.All"),
            ("GET", rf"teams/{s}/channels/{s}/messages", self.channel_messages, "ChannelMessage.Read.All"),
            ("GET", rf"teams/{s}/channels/{s}/messages/{s}", self.channel_message, "ChannelMessage.Read.All"),
            ("GET", rf"teams/{s}/channels/{s}/messages/{s}/replies", self.channel_replies,
             "ChannelMessage.Read.All"),
            ("POST", r"subscriptions", self.sb.subscriptions.create, ""),
            ("GET", r"subscriptions", self.sb.subscriptions.list, ""),
            ("PATCH", rf"subscriptions/{s}", self.sb.subscriptions.update, ""),
            ("DELETE", rf"subscriptions/{s}", self.sb.subscriptions.delete, ""),
        ]
        self.routes = [(m, re.compile(p + r"/?$"), h, perm) for m, p, h, perm in self.routes]

    # ------------------------------------------------------------------ dispatch
    def dispatch(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
                 body: bytes | None, base: str) -> Reply:
        path = path.strip("/").replace("delta()", "delta").replace("delta%28%29", "delta")
        if not self.sb.authorized(headers.get("authorization", "")):
            return error(401, "InvalidAuthenticationToken", ERROR_TEXT[401])
        for route_method, pattern, handler, permission in self.routes:
            match = pattern.match(path)
            if match and route_method == method:
                if permission and permission in self.sb.revoked:
                    return error(403, "accessDenied", f"{ERROR_TEXT[403]} Missing role: {permission}.")
                args = [unquote(a) for a in match.groups()]
                try:
                    return handler(*args, query=query, body=body, base=base)
                except KeyError as exc:
                    return error(404, "itemNotFound", f"The resource could not be found: {exc}")
        return error(400, "BadRequest", f"Resource not found for the segment '{path}'.")

    def _page(self, values: list[Any], query: dict[str, str], base: str, path: str, *, default_top: int) -> Reply:
        top = int(query.get("$top", default_top))
        skip = int(query.get("$skiptoken", "0") or 0)
        out: dict[str, Any] = {"value": values[skip:skip + top]}
        if skip + top < len(values):
            rest = {k: v for k, v in query.items() if k != "$skiptoken"}
            rest["$skiptoken"] = str(skip + top)
            out["@odata.nextLink"] = f"{base}/v1.0/{path}?" + "&".join(f"{k}={quote(v)}" for k, v in rest.items())
        return Reply(200, out)

    def _delta(self, scope: str, query: dict[str, str], base: str, path: str,
               changes: Callable[[int, int], list[Any]],
               render: Callable[[Any, dict[str, str]], dict[str, Any]]) -> Reply:
        """One page of a delta round; tokens carry (scope, since, upto, offset, epoch).

        Graph encodes the first request's query options into its nextLink/deltaLink and a client
        follows those links unchanged (https://learn.microsoft.com/graph/delta-query-overview); a
        token that is too old answers 410 Gone with `resyncRequired` and a `Location` to start over
        (https://learn.microsoft.com/graph/api/driveitem-delta#response-1)."""
        st = self.state
        token = query.get("$deltatoken") or query.get("$skiptoken") or query.get("token")
        since, upto, offset = 0, st.seq, 0
        # Graph encodes the first request's query options ($expand, $top, $select) into its tokens.
        options = {k: v for k, v in query.items() if k in ("$expand", "$top", "$select")}
        if token:
            try:
                data = st.read_token(token)
            except ValueError:
                return error(400, "BadRequest", "Invalid delta token.")
            if data.get("s") != scope:
                return error(400, "BadRequest", "The delta token belongs to another resource.")
            if data.get("e") != st.epoch:
                return error(410, "resyncRequired", "Resync required. Replace any local items with the server's "
                             "version (including deletes) if you're sure that the service was up to date with "
                             "your local changes when you last sync'd. Upload any local changes that the server "
                             "doesn't know about.", {"Location": f"{base}/v1.0/{path}"})
            since = data["n"]
            options = data.get("q", {})
            if "$skiptoken" in query:
                upto, offset = data["u"], data["o"]
            else:
                upto = st.seq
        top = min(int(options.get("$top", self.sb.page_size)), 999)
        found = changes(since, upto)
        page = found[offset:offset + top]
        out: dict[str, Any] = {"value": [render(x, options) for x in page]}
        if offset + top < len(found):
            out["@odata.nextLink"] = f"{base}/v1.0/{path}?$skiptoken=" + st.token(scope, since, u=upto, o=offset + top,
                                                                                 q=options)
        else:
            out["@odata.deltaLink"] = f"{base}/v1.0/{path}?$deltatoken=" + st.token(scope, upto, q=options)
        return Reply(200, out)

    # ------------------------------------------------------------------ sites and drives
    def _site(self, ref: str) -> Any:
        st = self.state
        if ref in st.sites:
            return st.sites[ref]
        m = re.match(r"([^:/]+):(/.+?):?$", ref)
        if m:
            host, path = m.group(1), m.group(2).rstrip("/")
            for site in st.sites.values():
                if site.host == host and site.path.rstrip("/") == path:
                    return site
        raise KeyError(ref)

    def site(self, ref: str, **_: Any) -> Reply:
        site = self._site(ref)
        return Reply(200, {"id": site.id, "name": site.name, "displayName": site.display_name,
                           "webUrl": site.web_url, "siteCollection": {"hostname": site.host}})

    def _drive_json(self, drive_id: str) -> dict[str, Any]:
        d = self.state.drives[drive_id]
        return {"id": d.id, "name": d.name, "driveType": d.drive_type, "webUrl": d.web_url}

    def site_drives(self, ref: str, **_: Any) -> Reply:
        return Reply(200, {"value": [self._drive_json(d) for d in self._site(ref).drive_ids]})

    def _owned(self, attr: str, owner: str) -> list[str]:
        drives = [d.id for d in self.state.drives.values() if getattr(d, attr) == owner]
        if attr == "group_id":
            drives += [t.drive_id for t in self.state.teams.values() if t.id == owner and t.drive_id]
        if not drives:
            raise KeyError(owner)
        return list(dict.fromkeys(drives))

    def group_drive(self, gid: str, **_: Any) -> Reply:
        return Reply(200, self._drive_json(self._owned("group_id", gid)[0]))

    def group_drives(self, gid: str, **_: Any) -> Reply:
        return Reply(200, {"value": [self._drive_json(d) for d in self._owned("group_id", gid)]})

    def _user(self, ref: str) -> str:
        return user_id(ref) if "@" in ref else ref

    def user_drive(self, uid: str, **_: Any) -> Reply:
        return Reply(200, self._drive_json(self._owned("user_id", self._user(uid))[0]))

    def user_drives(self, uid: str, **_: Any) -> Reply:
        return Reply(200, {"value": [self._drive_json(d) for d in self._owned("user_id", self._user(uid))]})

    def drive(self, drive_id: str, **_: Any) -> Reply:
        return Reply(200, self._drive_json(drive_id))

    def item_json(self, item: Item, *, with_path: bool = True) -> dict[str, Any]:
        """A driveItem. `with_path=False` for delta answers: "The parentReference property on items will not
        include a value for path ... When using delta you should always track items by id"
        (https://learn.microsoft.com/graph/api/driveitem-delta#remarks); `/items/{id}` and children
        carry it (https://learn.microsoft.com/graph/api/resources/itemreference)."""
        st = self.state
        drive = st.drives[item.drive_id]
        ref = {"driveId": drive.id, "driveType": drive.drive_type}
        if drive.site_id:
            ref["siteId"] = drive.site_id
        if item.parent_id:
            ref["id"] = item.parent_id
            if with_path:
                ref["path"] = st.folder_path(item)
        if item.deleted:
            return {"id": item.id, "deleted": {"state": "deleted"}, "parentReference": ref,
                    "lastModifiedDateTime": iso(item.modified)}
        out: dict[str, Any] = {
            "id": item.id, "name": item.name, "eTag": f'"{{{item.id}}},{item.version}"',
            "cTag": f'"c:{{{item.id}}},{item.version}"', "createdDateTime": iso(item.created),
            "lastModifiedDateTime": iso(item.modified), "size": len(item.content),
            "webUrl": f"{drive.web_url}{st.folder_path(item).split(':', 1)[1]}/{quote(item.name)}",
            "parentReference": ref, "createdBy": item.author.as_user(), "lastModifiedBy": item.author.as_user(),
        }
        if item.parent_id is None:
            out["root"] = {}
            out["name"] = "root"
            out["webUrl"] = drive.web_url
        if item.is_folder:
            out["folder"] = {"childCount": sum(1 for i in st.items.values() if i.parent_id == item.id
                                               and not i.deleted)}
        else:
            out["file"] = {"mimeType": item.mime,
                           "hashes": {"sha256Hash": hashlib.sha256(item.content).hexdigest().upper()}}
        return out

    def drive_delta(self, drive_id: str, item_ref: str = "root", *, query: dict[str, str], base: str,
                    **_: Any) -> Reply:
        drive = self.state.drives[drive_id]
        # "In OneDrive for Business and SharePoint, delta is only supported on the root folder"
        # (https://learn.microsoft.com/graph/api/driveitem-delta); a deleted item carries the `deleted`
        # facet; an expired token answers 410 Gone `resyncRequired` (see `_delta`).
        if item_ref not in ("root", drive.root_id):
            return error(400, "invalidRequest", "Delta is only supported on the root of a drive.")
        path = f"drives/{quote(drive_id)}/root/delta"
        return self._delta(f"drive:{drive_id}", query, base, path,
                           lambda a, b: self.state.drive_changes(drive_id, a, b),
                           lambda x, _: self.item_json(x, with_path=False))

    def _item(self, drive_id: str, item_ref: str) -> Item:
        st = self.state
        item = st.items[st.drives[drive_id].root_id if item_ref == "root" else item_ref]
        if item.deleted or item.drive_id != drive_id:
            raise KeyError(item_ref)
        return item

    def drive_item(self, drive_id: str, item_ref: str, **_: Any) -> Reply:
        return Reply(200, self.item_json(self._item(drive_id, item_ref)))

    def children(self, drive_id: str, item_ref: str, *, query: dict[str, str], base: str, **_: Any) -> Reply:
        """https://learn.microsoft.com/graph/api/driveitem-list-children: the items in a folder, paged."""
        folder = self._item(drive_id, item_ref)
        kids = sorted((i for i in self.state.items.values() if i.parent_id == folder.id and not i.deleted),
                      key=lambda i: i.name.lower())
        return self._page([self.item_json(i) for i in kids], query, base,
                          f"drives/{quote(drive_id)}/items/{quote(folder.id)}/children", default_top=200)

    def download_token(self, item: Item) -> str:
        sig = hmac.new(self.sb.download_key, f"{item.id}/{item.version}".encode(), hashlib.sha256).hexdigest()[:32]
        return f"{item.id}.{item.version}.{sig}"

    def content(self, drive_id: str, item_ref: str, **_: Any) -> Reply:
        item = self._item(drive_id, item_ref)
        if item.is_folder:
            return error(400, "invalidRequest", "A folder has no content.")
        # A pre-authenticated URL on another origin (localhost, not 127.0.0.1): a client that
        # forwards its bearer token there leaks it; the download route refuses such requests.
        # Shaped like SharePoint's: the `tempauth` query parameter is the credential.
        return Reply(302, None, {"Location": f"{self.sb.download_base}/_layouts/15/download.aspx?UniqueId={item.id}"
                                             f"&tempauth={self.download_token(item)}"})

    def permissions(self, drive_id: str, item_ref: str, **_: Any) -> Reply:
        """https://learn.microsoft.com/graph/api/driveitem-list-permissions: `permission` objects with
        `grantedToV2` / `grantedToIdentitiesV2` and sharing `link`s (https://learn.microsoft.com/graph/api/resources/permission)."""
        return Reply(200, {"value": list(self._item(drive_id, item_ref).permissions)})

    # ------------------------------------------------------------------ mail
    def _mailbox(self, ref: str) -> Any:
        box = self.state.mailbox(ref)
        if box is None:
            raise KeyError(ref)
        return box

    def mail_json(self, mail: Mail, select: str = "") -> dict[str, Any]:
        """A message; with `$select`, only the selected properties (and `id`), as Graph answers
        (https://learn.microsoft.com/graph/query-parameters#select-parameter): a client cannot rely on
        a property it did not ask for."""
        full = self._mail_json(mail)
        fields = {f.strip() for f in select.split(",") if f.strip()}
        if not fields or mail.deleted:
            return full
        return {k: v for k, v in full.items() if k in fields or k in ("id", "@odata.type", "@odata.etag")}

    def _mail_json(self, mail: Mail) -> dict[str, Any]:
        if mail.deleted:
            return {"@odata.type": "#microsoft.graph.message", "id": mail.id, "@removed": {"reason": "deleted"}}
        addr = [{"emailAddress": {"name": p.name, "address": p.email}} for p in mail.to]
        sender = {"emailAddress": {"name": mail.sender.name, "address": mail.sender.email}}
        text = re.sub(r"<[^>]+>", " ", mail.html)
        return {
            "@odata.type": "#microsoft.graph.message", "id": mail.id, "createdDateTime": iso(mail.sent),
            "lastModifiedDateTime": iso(mail.modified), "receivedDateTime": iso(mail.sent),
            "sentDateTime": iso(mail.sent), "subject": mail.subject, "bodyPreview": " ".join(text.split())[:255],
            "body": {"contentType": "html", "content": mail.html}, "from": sender, "sender": sender,
            "toRecipients": addr, "conversationId": mail.conversation_id, "parentFolderId": mail.folder_id,
            "isDraft": False, "isRead": True, "internetMessageId": f"<{mail.id[-20:]}@lumenlabs.example>",
            "webLink": f"https://outlook.office365.com/owa/?ItemID={quote(mail.id)}&exvsurl=1&viewmodel=ReadMessageItem",
        }

    def mail_delta(self, mbx: str, folder_ref: str, *, query: dict[str, str], base: str, **_: Any) -> Reply:
        box = self._mailbox(mbx)
        folder = box.folders.get(folder_ref) or next(
            (f for f in box.folders.values() if f.well_known == folder_ref.lower()), None)
        if folder is None:
            raise KeyError(folder_ref)
        # "Delta query is a per-folder operation" (https://learn.microsoft.com/graph/delta-query-messages);
        # a removed message comes back as its id with `@removed` (https://learn.microsoft.com/graph/api/message-delta).
        path = f"users/{quote(mbx)}/mailFolders/{quote(folder_ref)}/messages/delta"
        return self._delta(f"mail:{box.address}:{folder.id}", query, base, path,
                           lambda a, b: self.state.folder_changes(box.address, folder.id, a, b),
                           lambda x, options: self.mail_json(x, options.get("$select", "")))

    def messages(self, mbx: str, *, query: dict[str, str], base: str, **_: Any) -> Reply:
        box = self._mailbox(mbx)
        mails = [m for m in self.state.mails.values() if m.mailbox == box.address and not m.deleted]
        flt = query.get("$filter", "")
        if flt:
            m = re.fullmatch(r"\s*conversationId eq '([^']*)'\s*", flt)
            if not m:
                return error(400, "ErrorInvalidUrlQueryFilter", "The filter is not supported by the sandbox.")
            mails = [x for x in mails if x.conversation_id == m.group(1)]
        # https://learn.microsoft.com/graph/api/user-list-messages: `$filter`, `$select`, `$top` (default 10)
        mails.sort(key=lambda x: x.sent)
        select = query.get("$select", "")
        return self._page([self.mail_json(x, select) for x in mails], query, base, f"users/{quote(mbx)}/messages",
                          default_top=10)

    def message(self, mbx: str, mid: str, *, query: dict[str, str], **_: Any) -> Reply:
        box = self._mailbox(mbx)
        mail = self.state.mails[mid]
        if mail.deleted or mail.mailbox != box.address:
            raise KeyError(mid)
        return Reply(200, self.mail_json(mail, query.get("$select", "")))

    # ------------------------------------------------------------------ teams
    def team(self, tid: str, **_: Any) -> Reply:
        t = self.state.teams[tid]
        return Reply(200, {"id": t.id, "displayName": t.name, "description": t.description,
                           "webUrl": f"https://teams.microsoft.com/l/team/{quote(t.id)}"})

    def channels(self, tid: str, **_: Any) -> Reply:
        t = self.state.teams[tid]
        return Reply(200, {"value": [
            {"id": c.id, "displayName": c.name, "description": c.description, "membershipType": "standard",
             "webUrl": f"https://teams.microsoft.com/l/channel/{quote(c.id)}/{quote(c.name)}?groupId={t.id}"}
            for c in t.channels.values()]})

    def chat_json(self, msg: ChatMessage, *, expand: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "@odata.type": "#microsoft.graph.chatMessage", "id": msg.id, "replyToId": msg.reply_to,
            "etag": str(msg.seq), "messageType": msg.message_type, "createdDateTime": iso(msg.created),
            "lastModifiedDateTime": iso(msg.modified),
            "deletedDateTime": iso(msg.modified) if msg.deleted else None, "subject": msg.subject,
            "importance": "normal", "locale": "en-us",
            "webUrl": f"https://teams.microsoft.com/l/message/{quote(msg.channel_id)}/{msg.id}?groupId={msg.team_id}",
            "from": {"user": {"@odata.type": "#microsoft.graph.teamworkUserIdentity", "id": msg.author.id or None,
                              "displayName": msg.author.name, "userIdentityType": "aadUser"}},
            "body": {"contentType": "html", "content": "" if msg.deleted else msg.html},
            "channelIdentity": {"teamId": msg.team_id, "channelId": msg.channel_id},
            "attachments": [], "mentions": [], "reactions": [],
        }
        if expand:
            replies = [self.chat_json(r) for r in self.state.replies(msg.id)]
            out["replies@odata.context"] = "sandbox"
            out["replies"] = replies
        return out

    def _channel(self, tid: str, cid: str) -> Any:
        return self.state.teams[tid].channels[cid]

    def channel_delta(self, tid: str, cid: str, *, query: dict[str, str], base: str, **_: Any) -> Reply:
        channel = self._channel(tid, cid)
        if not channel.delta_supported:
            return error(400, "BadRequest", "Delta query is not supported for this channel.")
        # "Retrieve the list of messages (without the replies) in a channel of a team ... To get the
        # replies for a message, use the list message replies or the get message reply operation"
        # (https://learn.microsoft.com/graph/api/chatmessage-delta): roots only, `$expand` or not.
        path = f"teams/{quote(tid)}/channels/{quote(cid)}/messages/delta"
        return self._delta(f"channel:{tid}:{cid}", query, base, path,
                           lambda a, b: self.state.channel_changes(tid, cid, a, b),
                           lambda m, _: self.chat_json(m))

    def channel_messages(self, tid: str, cid: str, *, query: dict[str, str], base: str, **_: Any) -> Reply:
        """https://learn.microsoft.com/graph/api/channel-list-messages: root messages, `$top` 20 by default and
        at most 50; `$expand=replies` is documented here (up to 1,000 replies, then `replies@odata.nextLink`;
        the sandbox's threads stay far below that)."""
        self._channel(tid, cid)
        if int(query.get("$top", "20")) > 50:
            return error(400, "BadRequest", "The page size must be between 1 and 50.")
        expand = "replies" in query.get("$expand", "")
        roots = [self.chat_json(m, expand=expand) for m in self.state.channel_roots(tid, cid)]
        return self._page(roots, query, base, f"teams/{quote(tid)}/channels/{quote(cid)}/messages", default_top=20)

    def channel_message(self, tid: str, cid: str, mid: str, *, query: dict[str, str], **_: Any) -> Reply:
        """https://learn.microsoft.com/graph/api/chatmessage-get: one message; `$expand=replies` honoured."""
        self._channel(tid, cid)
        msg = self.state.messages[mid]
        if msg.channel_id != cid:
            raise KeyError(mid)
        return Reply(200, self.chat_json(msg, expand="replies" in query.get("$expand", "")))

    def channel_replies(self, tid: str, cid: str, mid: str, *, query: dict[str, str], base: str, **_: Any) -> Reply:
        self._channel(tid, cid)
        self.state.messages[mid]
        # https://learn.microsoft.com/graph/api/chatmessage-list-replies: `$top` up to 50, the rest
        # behind `@odata.nextLink`; only the replies, not the message itself.
        if int(query.get("$top", "50")) > 50:
            return error(400, "BadRequest", "The page size must be between 1 and 50.")
        replies = [self.chat_json(r) for r in self.state.replies(mid)]
        return self._page(replies, query, base, f"teams/{quote(tid)}/channels/{quote(cid)}/messages/{mid}/replies",
                          default_top=20)
