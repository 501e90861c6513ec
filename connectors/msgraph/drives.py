"""SharePoint and OneDrive: drives of sites, groups, users and teams, walked with `/delta`.

Per drive: follow `@odata.nextLink` page by page (a checkpoint after each page), keep the
`@odata.deltaLink` for the next run; 410 Gone → that drive starts over from scratch
(https://learn.microsoft.com/graph/api/driveitem-delta "Response: 410 Gone ... resyncRequired").
Items with the `deleted` facet become tombstones. Files are streamed under a size cap and
converted to Markdown; other types are skipped and counted. Permissions of a page's files are
read with JSON `$batch` (≤ 20 a round trip) and become ACL principals.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.models.permission_collection_response import PermissionCollectionResponse

from connectors.base import AuthError, CheckpointExpired, ConfigError, Document, Failure, Tombstone
from connectors.msgraph import ids
from connectors.msgraph.client import NotFound, translate
from connectors.msgraph.convert import CONVERTERS, Unreadable, Unsupported, kind_of, to_markdown
from connectors.msgraph.settings import GraphCheckpoint
from connectors.msgraph.walker import Walker, email_of, who

PERMISSION = "Files.Read.All"
MAX_RESTARTS = 2


@dataclass(frozen=True)
class DriveScope:
    """A drive to walk, with where it lives (for metadata)."""

    id: str
    name: str
    web_url: str
    owner: str  # "site:<name>", "group:<id>", "user:<id>"
    site_id: str | None = None
    site_name: str | None = None
    site_url: str | None = None

    @property
    def key(self) -> str:
        return f"drive:{self.id}"


# --------------------------------------------------------------------------- resolution
async def resolve_drives(w: Walker) -> list[DriveScope]:
    """Every drive the source's sites, groups, users and teams name, each once."""
    s, client = w.settings, w.client
    found: dict[str, DriveScope] = {}

    def add(drive: Any, owner: str, site: Any = None) -> None:
        if drive.id and drive.id not in found:
            found[drive.id] = DriveScope(drive.id, drive.name or "", drive.web_url or "", owner,
                                         site.id if site else None,
                                         (site.display_name or site.name) if site else None,
                                         site.web_url if site else None)

    for ref in s.sites:
        site = await _site(w, ref)
        drives = await w.session.call(f"drives of site {ref}", "Sites.Read.All",
                                      lambda site=site: client.sites.by_site_id(site.id).drives.get())
        for drive in drives.value or []:
            add(drive, f"site:{site.name}", site)
    for group in s.groups:
        drives = await _owned(w, f"drives of group {group}", lambda g=group: client.groups.by_group_id(g).drives.get())
        for drive in drives.value or []:
            add(drive, f"group:{group}")
    for user in s.users:
        drives = await _owned(w, f"drives of user {user}", lambda u=user: client.users.by_user_id(u).drives.get())
        for drive in drives.value or []:
            add(drive, f"user:{user}")
    for team in s.teams:  # files shared in a team's channels live in the team's group drive
        try:
            drive = await w.session.call(f"files drive of team {team}", PERMISSION,
                                         lambda t=team: client.groups.by_group_id(t).drive.get())
        except NotFound:
            continue
        add(drive, f"group:{team}")
    return list(found.values())


async def _site(w: Walker, ref: str) -> Any:
    client = w.client
    if ":/" in ref:  # host:/sites/path  (https://learn.microsoft.com/graph/api/site-getbypath)
        host, _, path = ref.partition(":")
        url = f"{w.settings.api_url}/sites/{quote(host)}:{quote(path.rstrip('/').rstrip(':'))}"
        fetch = lambda: client.sites.by_site_id(host).with_url(url).get()  # noqa: E731
    else:
        fetch = lambda: client.sites.by_site_id(ref).get()  # noqa: E731
    try:
        return await w.session.call(f"site {ref}", "Sites.Read.All", fetch)
    except NotFound:
        raise ConfigError(f"sites: no SharePoint site {ref!r} (use a site id or host:/sites/path)") from None


async def _owned(w: Walker, what: str, fetch: Any) -> Any:
    try:
        return await w.session.call(what, PERMISSION, fetch)
    except NotFound:
        raise ConfigError(f"{what}: not found") from None


# --------------------------------------------------------------------------- delta walk
async def sync_drive(w: Walker, drive: DriveScope, cp: GraphCheckpoint) -> AsyncIterator[Any]:
    builder = w.client.drives.by_drive_id(drive.id).items.by_drive_item_id("root").delta
    url = cp.pending.get(drive.key) or cp.delta.get(drive.key)
    restarts = 0
    while True:
        try:
            page = await w.session.call(f"delta of drive {drive.name or drive.id}", PERMISSION,
                                        lambda u=url: (builder.with_url(u) if u else builder).get())
        except CheckpointExpired:
            if restarts >= MAX_RESTARTS:
                raise
            restarts += 1
            w.stats["delta_restarts"] += 1
            cp.pending.pop(drive.key, None)
            cp.delta.pop(drive.key, None)
            url = None
            continue
        async for record in _page_records(w, drive, page.value or []):
            yield record
        if page.odata_next_link:
            url = cp.pending[drive.key] = page.odata_next_link
            yield w.mark(cp)
            continue
        cp.pending.pop(drive.key, None)
        if page.odata_delta_link:
            cp.delta[drive.key] = page.odata_delta_link
        yield w.mark(cp)
        return


def skip_reason(w: Walker, item: Any) -> str | None:
    """Why a file is not converted (type, size), or None."""
    kind = kind_of(item.name or "", item.file.mime_type if item.file else None)
    if kind not in CONVERTERS:
        return f"unsupported type .{kind}" if "/" not in kind else f"unsupported type {kind}"
    if item.size is not None and item.size > w.settings.max_file_bytes:
        return "larger than max_file_bytes"
    return None


async def _page_records(w: Walker, drive: DriveScope, items: list[Any]) -> AsyncIterator[Any]:
    files: list[Any] = []
    out: list[Any] = []  # records in page order; a file's slot is filled after its download
    for item in items:
        external_id = ids.drive_item(drive.id, item.id)
        if item.deleted is not None:
            out.append(Tombstone(external_id=external_id, reason="deleted"))
        elif item.file is None:
            continue  # folders, the root, OneNote packages
        elif (reason := skip_reason(w, item)) is not None:
            w.skip(reason)
            out.append(Tombstone(external_id=external_id, reason=f"skipped: {reason}"))
        else:
            files.append(item)
            out.append(item)
    if not files:
        for record in out:
            yield record
        return
    perms = await permissions(w, drive, [f.id for f in files])
    semaphore = asyncio.Semaphore(w.settings.download_concurrency)

    async def read(item: Any) -> Any:
        async with semaphore:
            return await file_record(w, drive, item, perms.get(item.id))

    converted = await asyncio.gather(*(read(f) for f in files))
    by_id = {f.id: r for f, r in zip(files, converted, strict=True)}
    for record in out:
        yield record if isinstance(record, Tombstone) else by_id[record.id]


async def permissions(w: Walker, drive: DriveScope, item_ids: list[str]) -> dict[str, list[str] | Failure]:
    """ACL principals per item, read with `$batch`; an item whose answer failed gets a Failure."""
    items = w.client.drives.by_drive_id(drive.id).items
    config = RequestConfiguration()
    requests = {str(n): items.by_drive_item_id(i).permissions.to_get_request_information(config)
                for n, i in enumerate(item_ids)}
    answers = await w.session.batch(requests, f"permissions in drive {drive.name or drive.id}", PERMISSION)
    out: dict[str, list[str] | Failure] = {}
    for n, item_id in enumerate(item_ids):
        answer = answers[str(n)]
        if answer.status == 200:
            out[item_id] = principals(answer.parse(PermissionCollectionResponse).value or [])
        elif answer.status in (401, 403):
            raise translate(answer.status, "", "", f"permissions of item {item_id}", PERMISSION)
        else:
            out[item_id] = Failure(external_id=ids.drive_item(drive.id, item_id), retryable=answer.status != 404,
                                   message=f"permissions of {item_id}: Graph answered {answer.status}")
    return out


def principals(perms: list[Any]) -> list[str]:
    """ACL principals: `user:<email>`, `group:<email or id>`, `group:everyone` (organization links), `public`."""
    out: set[str] = set()
    for perm in perms:
        link = perm.link
        if link is not None and link.scope == "anonymous":
            out.add("public")
        elif link is not None and link.scope == "organization":
            out.add("group:everyone")
        sets = [perm.granted_to_v2, *(perm.granted_to_identities_v2 or [])]
        for identity_set in filter(None, sets):
            user = getattr(identity_set, "user", None) or getattr(identity_set, "site_user", None)
            group = getattr(identity_set, "group", None) or getattr(identity_set, "site_group", None)
            if user is not None and (email_of(user) or user.id):
                out.add(f"user:{(email_of(user) or user.id or '').lower()}")
            if group is not None and (email_of(group) or group.id or group.display_name):
                out.add(f"group:{(email_of(group) or group.id or group.display_name or '').lower()}")
    return sorted(out)


async def file_record(w: Walker, drive: DriveScope, item: Any, acl: list[str] | Failure | None) -> Any:
    """One file as a Document, or a Failure (unreadable, download failed), or a Tombstone (gone)."""
    external_id = ids.drive_item(drive.id, item.id)
    if isinstance(acl, Failure):
        return acl
    what = f"file {item.name}"
    try:
        data = await w.session.download(drive.id, item.id, w.settings.max_file_bytes, what)
    except NotFound:
        return Tombstone(external_id=external_id, reason="deleted")
    except AuthError:
        raise
    except Exception as exc:  # one file that cannot be downloaded does not stop the sync
        return Failure(external_id=external_id, message=f"{what}: {exc}", retryable=True)
    w.stats["downloads"] += 1
    if data is None:
        w.skip("larger than max_file_bytes")
        return Tombstone(external_id=external_id, reason="skipped: larger than max_file_bytes")
    try:
        text = await asyncio.to_thread(to_markdown, item.name or "", item.file.mime_type if item.file else None,
                                       data)
    except Unsupported as exc:
        w.skip(str(exc))
        return Tombstone(external_id=external_id, reason=f"skipped: {exc}")
    except Unreadable as exc:
        w.stats["unreadable"] += 1
        return Failure(external_id=external_id, message=f"{what}: {exc}", retryable=False)
    return Document(
        external_id=external_id, title=item.name or "", text=text, url=item.web_url,
        authors=_authors(item), created_at=item.created_date_time, updated_at=item.last_modified_date_time,
        acl=acl or [], metadata=file_metadata(drive, item),
    )


def _authors(item: Any) -> list[str]:
    return list(dict.fromkeys(a for a in (who(item.created_by), who(item.last_modified_by)) if a))


def folder_of(item: Any) -> str:
    """`/Handbook/Policies` from parentReference.path `/drives/{id}/root:/Handbook/Policies`."""
    path = (item.parent_reference.path if item.parent_reference else None) or ""
    return "/" + path.split("root:", 1)[1].strip("/") if "root:" in path else "/"


def file_metadata(drive: DriveScope, item: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "source": "drive", "drive_id": drive.id, "drive": drive.name, "drive_url": drive.web_url,
        "owner": drive.owner, "item_id": item.id, "folder": folder_of(item),
        "path": (folder_of(item).rstrip("/") + "/" + (item.name or "")),
        "file_type": kind_of(item.name or "", item.file.mime_type if item.file else None),
        "mime_type": item.file.mime_type if item.file else None, "size": item.size,
    }
    if drive.site_id:
        meta.update(site_id=drive.site_id, site=drive.site_name, site_url=drive.site_url)
    return meta


async def fetch_item(w: Walker, drive: DriveScope, item_id: str) -> Any:
    """Re-read one file (after a change notification): Document, Failure or Tombstone."""
    external_id = ids.drive_item(drive.id, item_id)
    try:
        item = await w.session.call(f"item {item_id}", PERMISSION,
                                    lambda: w.client.drives.by_drive_id(drive.id).items.by_drive_item_id(item_id).get())
    except NotFound:
        return Tombstone(external_id=external_id, reason="deleted")
    if item.deleted is not None:
        return Tombstone(external_id=external_id, reason="deleted")
    if item.file is None:
        return Failure(external_id=external_id, message=f"item {item_id} is not a file")
    if (reason := skip_reason(w, item)) is not None:
        w.skip(reason)
        return Tombstone(external_id=external_id, reason=f"skipped: {reason}")
    perms = await permissions(w, drive, [item.id])
    return await file_record(w, drive, item, perms.get(item.id))
