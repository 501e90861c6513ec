"""What the fake Graph holds: sites, drives and files, mailboxes and mail, teams, channels and messages.

Every change takes the next number of one global sequence. A delta token is "changes after
sequence N in scope S", so `/delta` answers exactly what changed since the token was issued,
with deleted items flagged (`deleted` facet for files, `@removed` for mail, `deletedDateTime`
for channel messages). `expire_tokens()` bumps an epoch: older tokens answer 410 Gone, as Graph
does when a delta token is too old.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.sandbox.graph.files import mime_for

EPOCH = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


def iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def stable_id(*parts: str) -> str:
    """A deterministic GUID-shaped id, so a rebuilt workspace has the same ids."""
    return str(uuid.UUID(hashlib.sha256("/".join(parts).encode()).hexdigest()[:32]))


def user_id(email: str) -> str:
    """The directory id of the user (or shared mailbox) with this address."""
    return stable_id("user", email.lower())


@dataclass
class Identity:
    name: str
    email: str
    id: str = ""

    def as_user(self) -> dict[str, Any]:
        return {"user": {"id": self.id or user_id(self.email), "displayName": self.name,
                         "email": self.email}}


@dataclass
class Site:
    id: str
    host: str
    path: str
    name: str
    display_name: str
    drive_ids: list[str] = field(default_factory=list)

    @property
    def web_url(self) -> str:
        return f"https://{self.host}{self.path}"


@dataclass
class Drive:
    id: str
    name: str
    drive_type: str  # documentLibrary | business
    web_url: str
    site_id: str | None = None
    group_id: str | None = None
    user_id: str | None = None
    root_id: str = ""


@dataclass
class Item:
    id: str
    drive_id: str
    name: str
    parent_id: str | None
    is_folder: bool
    seq: int
    created: datetime
    modified: datetime
    author: Identity
    content: bytes = b""
    mime: str = ""
    permissions: list[dict[str, Any]] = field(default_factory=list)
    deleted: bool = False
    version: int = 1


@dataclass
class Folder:
    id: str
    name: str
    well_known: str


@dataclass
class Mailbox:
    id: str
    address: str
    name: str
    folders: dict[str, Folder] = field(default_factory=dict)

    def folder(self, well_known: str) -> Folder:
        return next(f for f in self.folders.values() if f.well_known == well_known)


@dataclass
class Mail:
    id: str
    mailbox: str  # address
    folder_id: str
    conversation_id: str
    subject: str
    html: str
    sender: Identity
    to: list[Identity]
    sent: datetime
    seq: int
    modified: datetime
    deleted: bool = False


@dataclass
class Channel:
    id: str
    team_id: str
    name: str
    description: str
    delta_supported: bool = True


@dataclass
class Team:
    id: str
    name: str
    description: str
    mail: str
    drive_id: str | None = None
    channels: dict[str, Channel] = field(default_factory=dict)


@dataclass
class ChatMessage:
    id: str
    team_id: str
    channel_id: str
    reply_to: str | None
    html: str
    author: Identity
    created: datetime
    # The last change of this message itself. A reply does not change its root: the root's
    # `lastModifiedDateTime` is "created (initial setting) or modified, including when a reaction is
    # added or removed" (https://learn.microsoft.com/graph/api/resources/chatmessage), and nothing in
    # https://learn.microsoft.com/graph/api/chatmessage-delta says a reply brings its root back.
    seq: int
    modified: datetime
    subject: str | None = None
    deleted: bool = False
    message_type: str = "message"


class SandboxState:
    """The fake tenant's content. Methods are thread-safe: tests edit while the server serves."""

    def __init__(self, tenant_id: str = "lumen-tenant") -> None:
        self.tenant_id = tenant_id
        self.lock = threading.RLock()
        self.seq = 0
        self.epoch = 1
        self.clock = EPOCH
        self.sites: dict[str, Site] = {}
        self.drives: dict[str, Drive] = {}
        self.items: dict[str, Item] = {}
        self.mailboxes: dict[str, Mailbox] = {}  # by address (lower case)
        self.mails: dict[str, Mail] = {}
        self.teams: dict[str, Team] = {}
        self.messages: dict[str, ChatMessage] = {}
        self.listeners: list[Any] = []  # called with (resource, change_type, resource_id) on each change

    # ------------------------------------------------------------------ helpers
    def _next(self) -> tuple[int, datetime]:
        self.seq += 1
        self.clock += timedelta(minutes=1)
        return self.seq, self.clock

    def _emit(self, resource: str, change: str, rid: str) -> None:
        for listener in list(self.listeners):
            listener(resource, change, rid)

    def expire_tokens(self) -> None:
        """Every delta token issued so far now answers 410 Gone."""
        with self.lock:
            self.epoch += 1

    def token(self, scope: str, since: int, **extra: Any) -> str:
        raw = json.dumps({"s": scope, "n": since, "e": self.epoch, **extra}, separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @staticmethod
    def read_token(token: str) -> dict[str, Any]:
        pad = "=" * (-len(token) % 4)
        return json.loads(base64.urlsafe_b64decode(token + pad))

    # ------------------------------------------------------------------ sites and drives
    def add_site(self, host: str, path: str, display_name: str) -> Site:
        with self.lock:
            name = path.rstrip("/").rsplit("/", 1)[-1]
            site = Site(f"{host},{stable_id('site', host, path)},{stable_id('web', host, path)}", host, path, name,
                        display_name)
            self.sites[site.id] = site
            return site

    def add_drive(self, name: str, *, site: Site | None = None, group_id: str | None = None,
                  user_id: str | None = None, web_url: str = "") -> Drive:
        with self.lock:
            key = site.id if site else group_id or user_id or name
            drive_id = "b!" + base64.urlsafe_b64encode(hashlib.sha256(f"drive/{key}/{name}".encode()).digest()[:24]
                                                      ).decode().rstrip("=")
            drive = Drive(drive_id, name, "documentLibrary" if site or group_id else "business",
                          web_url or (f"{site.web_url}/{name.replace(' ', '%20')}" if site else f"https://lumenlabs"
                                      f"-my.sharepoint.com/personal/{key}/Documents"),
                          site_id=site.id if site else None, group_id=group_id, user_id=user_id)
            seq, now = self._next()
            root = Item(stable_id("root", drive_id), drive_id, "root", None, True, seq, now, now,
                        Identity("System", "system@lumenlabs.example"))
            drive.root_id = root.id
            self.items[root.id] = root
            self.drives[drive.id] = drive
            if site:
                site.drive_ids.append(drive.id)
            return drive

    def folder_path(self, item: Item) -> str:
        """`/drives/{id}/root:/A/B` for an item in folder A/B (Graph's parentReference.path)."""
        parts: list[str] = []
        parent = self.items.get(item.parent_id or "")
        while parent is not None and parent.parent_id is not None:
            parts.append(parent.name)
            parent = self.items.get(parent.parent_id)
        return f"/drives/{item.drive_id}/root:" + ("/" + "/".join(reversed(parts)) if parts else "")

    def ensure_folder(self, drive_id: str, path: str, author: Identity) -> Item:
        with self.lock:
            parent = self.items[self.drives[drive_id].root_id]
            for name in [p for p in path.strip("/").split("/") if p]:
                found = next((i for i in self.items.values() if i.parent_id == parent.id and i.name == name
                              and not i.deleted), None)
                if found is None:
                    seq, now = self._next()
                    found = Item(stable_id("item", drive_id, parent.id, name), drive_id, name, parent.id, True, seq,
                                 now, now, author)
                    self.items[found.id] = found
                parent = found
            return parent

    def add_file(self, drive_id: str, path: str, content: bytes, *, author: Identity,
                 permissions: list[dict[str, Any]] | None = None, mime: str | None = None) -> Item:
        """Add a file at `path` (folders are created); returns the new item."""
        with self.lock:
            folder, _, name = path.strip("/").rpartition("/")
            parent = self.ensure_folder(drive_id, folder, author)
            seq, now = self._next()
            item = Item(stable_id("item", drive_id, parent.id, name), drive_id, name, parent.id, False, seq, now, now,
                        author, content=content, mime=mime or mime_for(name), permissions=list(permissions or []))
            self.items[item.id] = item
        self._emit(f"drives/{drive_id}/root", "updated", item.id)
        return item

    def edit_file(self, item_id: str, content: bytes) -> Item:
        with self.lock:
            item = self.items[item_id]
            item.seq, item.modified = self._next()
            item.content = content
            item.version += 1
        self._emit(f"drives/{item.drive_id}/root", "updated", item.id)
        return item

    def set_permissions(self, item_id: str, permissions: list[dict[str, Any]]) -> None:
        with self.lock:
            item = self.items[item_id]
            item.seq, item.modified = self._next()
            item.permissions = list(permissions)
        self._emit(f"drives/{item.drive_id}/root", "updated", item.id)

    def rename_item(self, item_id: str, name: str, *, parent_id: str | None = None) -> Item:
        """Rename (and optionally move) a file or folder. Only the item itself changes: its descendants
        are not returned by the next delta (https://learn.microsoft.com/graph/api/driveitem-delta#remarks)."""
        with self.lock:
            item = self.items[item_id]
            item.seq, item.modified = self._next()
            item.name = name
            if parent_id is not None:
                item.parent_id = parent_id
            item.version += 1
        self._emit(f"drives/{item.drive_id}/root", "updated", item.id)
        return item

    def delete_item(self, item_id: str) -> None:
        """Delete a file or a folder with everything under it."""
        with self.lock:
            item = self.items[item_id]
            stack = [item]
            while stack:
                current = stack.pop()
                current.deleted = True
                current.seq, current.modified = self._next()
                stack += [i for i in self.items.values() if i.parent_id == current.id and not i.deleted]
        self._emit(f"drives/{item.drive_id}/root", "deleted", item.id)

    def drive_changes(self, drive_id: str, since: int, upto: int) -> list[Item]:
        with self.lock:
            items = [i for i in self.items.values() if i.drive_id == drive_id and since < i.seq <= upto
                     and not (since == 0 and i.deleted)]
            return sorted(items, key=lambda i: i.seq)

    # ------------------------------------------------------------------ mail
    def add_mailbox(self, address: str, name: str) -> Mailbox:
        with self.lock:
            box = Mailbox(user_id(address), address.lower(), name)
            for well_known, display in (("inbox", "Inbox"), ("sentitems", "Sent Items"), ("drafts", "Drafts"),
                                        ("deleteditems", "Deleted Items"), ("junkemail", "Junk Email")):
                fid = "AAMk" + hashlib.sha256(f"{address}/{well_known}".encode()).hexdigest()[:40]
                box.folders[fid] = Folder(fid, display, well_known)
            self.mailboxes[box.address] = box
            return box

    def mailbox(self, ref: str) -> Mailbox | None:
        ref = ref.lower()
        return self.mailboxes.get(ref) or next((m for m in self.mailboxes.values() if m.id == ref), None)

    def add_mail(self, mailbox: str, folder: str, *, subject: str, html: str, sender: Identity,
                 to: list[Identity], conversation_id: str | None = None, key: str | None = None) -> Mail:
        """Put a message in a mailbox folder (`inbox`, `sentitems`, ...); returns it."""
        with self.lock:
            box = self.mailboxes[mailbox.lower()]
            seq, now = self._next()
            mid = "AAMkAGm" + hashlib.sha256(f"{mailbox}/{key or seq}".encode()).hexdigest()[:44]
            conv = conversation_id or "AAQkAGc" + hashlib.sha256(f"{mailbox}/conv/{key or seq}".encode()).hexdigest()[:40]
            mail = Mail(mid, box.address, box.folder(folder).id, conv, subject, html, sender, to, now, seq, now)
            self.mails[mid] = mail
        self._emit(f"users/{box.id}/messages", "created", mid)
        return mail

    def edit_mail(self, mail_id: str, html: str) -> Mail:
        with self.lock:
            mail = self.mails[mail_id]
            mail.seq, mail.modified = self._next()
            mail.html = html
        self._emit(f"users/{self.mailboxes[mail.mailbox].id}/messages", "updated", mail_id)
        return mail

    def delete_mail(self, mail_id: str) -> None:
        with self.lock:
            mail = self.mails[mail_id]
            mail.deleted = True
            mail.seq, mail.modified = self._next()
        self._emit(f"users/{self.mailboxes[mail.mailbox].id}/messages", "deleted", mail_id)

    def folder_changes(self, mailbox: str, folder_id: str, since: int, upto: int) -> list[Mail]:
        with self.lock:
            mails = [m for m in self.mails.values() if m.mailbox == mailbox and m.folder_id == folder_id
                     and since < m.seq <= upto and not (since == 0 and m.deleted)]
            return sorted(mails, key=lambda m: m.seq)

    # ------------------------------------------------------------------ teams
    def add_team(self, name: str, description: str, mail: str, drive_id: str | None = None) -> Team:
        with self.lock:
            team = Team(stable_id("team", name), name, description, mail, drive_id)
            self.teams[team.id] = team
            return team

    def add_channel(self, team_id: str, name: str, description: str = "", *, delta_supported: bool = True) -> Channel:
        with self.lock:
            cid = f"19:{hashlib.sha256(f'{team_id}/{name}'.encode()).hexdigest()[:32]}@thread.tacv2"
            channel = Channel(cid, team_id, name, description, delta_supported)
            self.teams[team_id].channels[cid] = channel
            return channel

    def post_message(self, team_id: str, channel_id: str, html: str, *, author: Identity,
                     reply_to: str | None = None, subject: str | None = None) -> ChatMessage:
        with self.lock:
            seq, now = self._next()
            mid = str(int(now.timestamp() * 1000) + seq)
            msg = ChatMessage(mid, team_id, channel_id, reply_to, html, author, now, seq, now, subject=subject)
            self.messages[mid] = msg
        self._emit(self._message_resource(msg), "created", mid)
        return msg

    def edit_message(self, message_id: str, html: str) -> ChatMessage:
        with self.lock:
            msg = self.messages[message_id]
            seq, now = self._next()
            msg.html, msg.seq, msg.modified = html, seq, now
        self._emit(self._message_resource(msg), "updated", message_id)
        return msg

    def delete_message(self, message_id: str) -> None:
        """Soft-delete, as Teams does: the message stays, with `deletedDateTime` set."""
        with self.lock:
            msg = self.messages[message_id]
            seq, now = self._next()
            msg.deleted, msg.seq, msg.modified = True, seq, now
        self._emit(self._message_resource(msg), "deleted", message_id)

    @staticmethod
    def _message_resource(msg: ChatMessage) -> str:
        base = f"teams('{msg.team_id}')/channels('{msg.channel_id}')/messages"
        return f"{base}('{msg.reply_to}')/replies('{msg.id}')" if msg.reply_to else f"{base}('{msg.id}')"

    def replies(self, root_id: str) -> list[ChatMessage]:
        with self.lock:
            return sorted((m for m in self.messages.values() if m.reply_to == root_id), key=lambda m: m.created)

    def chain_modified(self, root: ChatMessage) -> datetime:
        return max([root.modified] + [r.modified for r in self.replies(root.id)])

    def channel_changes(self, team_id: str, channel_id: str, since: int, upto: int) -> list[ChatMessage]:
        with self.lock:
            roots = [m for m in self.messages.values() if m.team_id == team_id and m.channel_id == channel_id
                     and m.reply_to is None and since < m.seq <= upto and not (since == 0 and m.deleted)]
            return sorted(roots, key=lambda m: m.seq)

    def channel_roots(self, team_id: str, channel_id: str) -> list[ChatMessage]:
        """Root messages newest first (the order `GET .../messages` uses)."""
        with self.lock:
            roots = [m for m in self.messages.values() if m.team_id == team_id and m.channel_id == channel_id
                     and m.reply_to is None]
            return sorted(roots, key=lambda m: m.created, reverse=True)
