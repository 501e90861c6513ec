"""SharePoint and OneDrive: drives of sites, groups, users and teams, walked with `/delta`.

Per drive: follow `@odata.nextLink` page by page (a checkpoint after each page), keep the
`@odata.deltaLink` for the next run; 410 Gone → that drive starts over from scratch
(https://learn.microsoft.com/graph/api/driveitem-delta "Response: 410 Gone ... resyncRequired").
Items with the `deleted` facet become tombstones. Delta items carry no `parentReference.path`: a
file's folder comes from the folder items the delta returns, kept by id in the checkpoint
(`folders.FolderMap`); a renamed or moved folder re-writes the files under it with the new path.
Each document's metadata names its site, drive and folder, and its Markdown has a `Location:` line. Files are streamed under a size cap and
converted to Markdown; other types are skipped and counted. Permissions of a page's files are
read with JSON `$batch` (≤ 20 a round trip) and become ACL principals.

A change of permissions alone does not put an item in the delta feed unless the app sends
`Prefer: deltashowsharingchanges`, which needs `Sites.FullControl.All`
(https://learn.microsoft.com/onedrive/developer/rest-api/concepts/scan-guidance); this connector
asks for read permissions only, so ACLs are refreshed when a file changes, or by `tacit sync --full`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from kiota_abstractions.base_request_configuration import RequestConfiguration

from connectors.base import AuthError, ConfigError, Document, Failure, Tombstone
from connectors.msgraph import delta, folders, ids
from connectors.msgraph.client import NotFound, translate
from connectors.msgraph.convert import CONVERTERS, Unreadable, Unsupported, kind_of, to_markdown
from connectors.msgraph.folders import FolderMap
from connectors.msgraph.settings import GraphCheckpoint
from connectors.msgraph.walker import Walker, parse_time

PERMISSION = "Files.Read.All"


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
    tree = FolderMap(cp, drive.key)

    async def handle(page: dict[str, Any]) -> AsyncIterator[Any]:
        async for record in _page_records(w, drive, tree, page.get("value") or []):
            yield record

    def restart() -> None:  # 410: the server's view replaces ours, folders included
        tree.folders.clear()

    async for record in delta.walk(w, cp, drive.key, builder.to_get_request_information,
                                   what=f"delta of drive {drive.name or drive.id}", permission=PERMISSION,
                                   handle=handle, on_restart=restart):
        yield record


def _mime(item: dict[str, Any]) -> str | None:
    return (item.get("file") or {}).get("mimeType")


def skip_reason(w: Walker, item: dict[str, Any]) -> str | None:
    """Why a file is not converted (type, size), or None."""
    kind = kind_of(item.get("name") or "", _mime(item))
    if kind not in CONVERTERS:
        return f"unsupported type .{kind}" if "/" not in kind else f"unsupported type {kind}"
    size = item.get("size")
    if isinstance(size, int) and size > w.settings.max_file_bytes:
        return "larger than max_file_bytes"
    return None


async def _page_records(w: Walker, drive: DriveScope, tree: FolderMap, items: list[dict[str, Any]]
                        ) -> AsyncIterator[Any]:
    """The records of one delta page, in page order; then the files under folders the page renamed or moved."""
    out: list[Any] = []  # records in page order; a file's slot is filled once it is read
    files: list[dict[str, Any]] = []
    moved: list[str] = []
    for item in items:  # folders first: a file's path may need a folder later in the page
        if item.get("deleted") is not None or "@removed" in item:
            tree.forget(item["id"])
        elif FolderMap.is_folder(item) and tree.learn(item):
            moved.append(item["id"])
    for item in items:
        external_id = ids.drive_item(drive.id, item["id"])
        if item.get("deleted") is not None or "@removed" in item:
            out.append(Tombstone(external_id=external_id, reason="deleted"))
        elif item.get("file") is None:
            continue  # folders, the root, OneNote packages
        elif (reason := skip_reason(w, item)) is not None:
            w.skip(reason)
            out.append(Tombstone(external_id=external_id, reason=f"skipped: {reason}"))
        else:
            files.append(item)
            out.append(item["id"])
    by_id = await _read_files(w, drive, tree, files)
    for record in out:
        yield record if isinstance(record, Tombstone) else by_id[record]
    in_page = {f["id"] for f in files}
    for folder_id in moved:  # "renaming a folder does not result in any descendants ... being returned"
        w.stats["folders_moved"] += 1
        under = [f async for f in folders.files_under(w, drive.id, tree, folder_id)
                 if f["id"] not in in_page and skip_reason(w, f) is None]
        in_page.update(f["id"] for f in under)
        w.stats["files_repathed"] += len(under)
        for start in range(0, len(under), 200):
            chunk = under[start:start + 200]
            again = await _read_files(w, drive, tree, chunk)
            for f in chunk:
                yield again[f["id"]]


async def _read_files(w: Walker, drive: DriveScope, tree: FolderMap, files: list[dict[str, Any]]) -> dict[str, Any]:
    """Each file's record by item id: permissions with `$batch`, downloads a few at a time."""
    if not files:
        return {}
    for f in files:
        await folders.complete(w, drive.id, tree, (f.get("parentReference") or {}).get("id"))
    perms = await permissions(w, drive, [f["id"] for f in files])
    semaphore = asyncio.Semaphore(w.settings.download_concurrency)

    async def read(item: dict[str, Any]) -> Any:
        parent = (item.get("parentReference") or {}).get("id")
        folder = tree.path(parent) or folder_of(item)
        async with semaphore:
            return await file_record(w, drive, item, perms.get(item["id"]), folder)

    converted = await asyncio.gather(*(read(f) for f in files))
    return {f["id"]: r for f, r in zip(files, converted, strict=True)}


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
            out[item_id] = principals((answer.body or {}).get("value") or [])
        elif answer.status in (401, 403):
            raise translate(answer.status, "", "", f"permissions of item {item_id}", PERMISSION)
        else:
            out[item_id] = Failure(external_id=ids.drive_item(drive.id, item_id), retryable=answer.status != 404,
                                   message=f"permissions of {item_id}: Graph answered {answer.status}")
    return out


def principals(perms: list[dict[str, Any]]) -> list[str]:
    """ACL principals of `permission` objects (JSON, as `$batch` returns them): `user:<email>`,
    `group:<email or id>`, `group:everyone` (organization-wide links), `public` (anonymous links)."""
    out: set[str] = set()
    for perm in perms:
        scope = (perm.get("link") or {}).get("scope")
        if scope == "anonymous":
            out.add("public")
        elif scope == "organization":
            out.add("group:everyone")
        for identity_set in [perm.get("grantedToV2"), *(perm.get("grantedToIdentitiesV2") or [])]:
            if not isinstance(identity_set, dict):
                continue
            user = identity_set.get("user") or identity_set.get("siteUser")
            group = identity_set.get("group") or identity_set.get("siteGroup")
            if isinstance(user, dict) and (key := _principal_key(user)):
                out.add(f"user:{key}")
            if isinstance(group, dict) and (key := _principal_key(group)):
                out.add(f"group:{key}")
    return sorted(out)


def _principal_key(identity: dict[str, Any]) -> str:
    return str(identity.get("email") or identity.get("loginName") or identity.get("id")
               or identity.get("displayName") or "").lower()


async def file_record(w: Walker, drive: DriveScope, item: dict[str, Any], acl: list[str] | Failure | None,
                      folder: str) -> Any:
    """One file as a Document, or a Failure (unreadable, download failed), or a Tombstone (gone);
    `folder` is where it lives in the drive (`/A/B`)."""
    external_id = ids.drive_item(drive.id, item["id"])
    if isinstance(acl, Failure):
        return acl
    name = item.get("name") or ""
    what = f"file {name}"
    try:
        data = await w.session.download(drive.id, item["id"], w.settings.max_file_bytes, what)
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
        text = await asyncio.to_thread(to_markdown, name, _mime(item), data)
    except Unsupported as exc:
        w.skip(str(exc))
        return Tombstone(external_id=external_id, reason=f"skipped: {exc}")
    except Unreadable as exc:
        w.stats["unreadable"] += 1
        return Failure(external_id=external_id, message=f"{what}: {exc}", retryable=False)
    meta = file_metadata(drive, item, folder)
    return Document(
        external_id=external_id, title=name, text=with_location(text, location(meta)), url=item.get("webUrl"),
        authors=_authors(item), created_at=parse_time(item.get("createdDateTime")),
        updated_at=parse_time(item.get("lastModifiedDateTime")), acl=acl or [], metadata=meta,
    )


def _who(identity_set: dict[str, Any] | None) -> str | None:
    user = (identity_set or {}).get("user") or {}
    return (user.get("email") or "").lower() or user.get("displayName") or user.get("id")


def _authors(item: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(a for a in (_who(item.get("createdBy")), _who(item.get("lastModifiedBy"))) if a))


def folder_of(item: dict[str, Any]) -> str:
    """`/Handbook/Policies` from parentReference.path `/drives/{id}/root:/Handbook/Policies`; only
    non-delta reads carry that path (delta items are placed with `FolderMap`); `/` without one."""
    path = unquote((item.get("parentReference") or {}).get("path") or "")
    return "/" + path.split("root:", 1)[1].strip("/") if "root:" in path else "/"


def file_metadata(drive: DriveScope, item: dict[str, Any], folder: str) -> dict[str, Any]:
    """A drive document's metadata; the keys are listed in README.md ("Record metadata")."""
    return {
        "source": "drive", "site_id": drive.site_id, "site": drive.site_name, "site_url": drive.site_url,
        "drive_id": drive.id, "drive": drive.name, "drive_url": drive.web_url, "owner": drive.owner,
        "item_id": item["id"], "folder": folder, "path": folder.rstrip("/") + "/" + (item.get("name") or ""),
        "file_type": kind_of(item.get("name") or "", _mime(item)), "mime_type": _mime(item),
        "size": item.get("size"),
    }


def location(meta: dict[str, Any]) -> str:
    """Where a file lives, for people and for processing: `Site / Library / folder path / name`."""
    parts = [meta.get("site"), meta.get("drive") or meta.get("drive_id"), *meta["path"].split("/")]
    return " / ".join(p for p in parts if p)


def with_location(text: str, where: str) -> str:
    """The Markdown with a `Location:` line under its title (the first `# ` heading), or first when it has none."""
    line = f"Location: {where}"
    head, _, rest = text.partition("\n")
    if head.startswith("# "):
        rest = rest.lstrip("\n")
        return f"{head}\n\n{line}\n" + (f"\n{rest}" if rest else "")
    return f"{line}\n\n{text}"


async def fetch_item(w: Walker, drive: DriveScope, item_id: str) -> Any:
    """Re-read one file (after a change notification): Document, Failure or Tombstone."""
    external_id = ids.drive_item(drive.id, item_id)
    info = w.client.drives.by_drive_id(drive.id).items.by_drive_item_id(item_id).to_get_request_information()
    try:
        item = await w.session.json(info, f"item {item_id}", PERMISSION)
    except NotFound:
        return Tombstone(external_id=external_id, reason="deleted")
    if item.get("deleted") is not None:
        return Tombstone(external_id=external_id, reason="deleted")
    if item.get("file") is None:
        return Failure(external_id=external_id, message=f"item {item_id} is not a file")
    if (reason := skip_reason(w, item)) is not None:
        w.skip(reason)
        return Tombstone(external_id=external_id, reason=f"skipped: {reason}")
    perms = await permissions(w, drive, [item_id])
    return await file_record(w, drive, item, perms.get(item_id), folder_of(item))
