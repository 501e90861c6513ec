"""`GraphConnector`: Microsoft 365 files, mail and Teams through Microsoft Graph (kind "msgraph").

`sync()` walks, in order, every drive (SharePoint sites, groups, users' OneDrive, teams' files),
every mailbox folder, every team channel, each with its own delta link in the checkpoint and a
`CheckpointMark` after every page, so a killed sync resumes at the page it had reached.
`fetch(ids)` re-reads single items after a change notification. Counters (files skipped and why,
`$batch` round trips, delta restarts) are in `sync_stats` after a run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

from pydantic import BaseModel

from connectors.base import (
    Checkpoint,
    Connector,
    Failure,
    SourceConfig,
    SyncGenerator,
    Tombstone,
)
from connectors.http import HttpBudget
from connectors.msgraph import drives, ids, mail, teams
from connectors.msgraph.auth import make_credential
from connectors.msgraph.client import GraphSession
from connectors.msgraph.settings import GraphCheckpoint, GraphSettings
from connectors.msgraph.walker import Walker

log = logging.getLogger(__name__)


class GraphConnector(Connector):
    kind: ClassVar[str] = "msgraph"
    rate_limit: ClassVar[tuple[float | None, int]] = (20.0, 20)
    #: Webhook routes, event handlers and more: the platform half, in `connectors.msgraph.webhooks`.
    contributes: ClassVar[str | None] = "connectors.msgraph.webhooks:CONTRIBUTIONS"
    Checkpoint: ClassVar[type[Checkpoint]] = GraphCheckpoint
    Settings: ClassVar[type[BaseModel]] = GraphSettings

    def __init__(self, source: SourceConfig, http: HttpBudget) -> None:
        super().__init__(source, http)
        self.settings: GraphSettings  # narrowed
        self.sync_stats: dict[str, Any] = {}
        self._drives: list[drives.DriveScope] | None = None
        self._credential: Any = None  # azure-identity caches its token: one per connector, not per session

    def _walker(self) -> Walker:
        if self._credential is None:
            self._credential = make_credential(self.settings)
        return Walker(GraphSession(self.settings, self.http, self._credential), self.settings)

    @contextmanager
    def graph(self) -> Iterator[Walker]:
        """A session for one-off calls (subscriptions): `w.session.run(coroutine)` inside."""
        w = self._walker()
        try:
            yield w
        finally:
            w.session.close()
            self.close()

    def close(self) -> None:
        """Release the credential's HTTP session (the end of a sync or fetch does it too)."""
        if self._credential is not None:
            self._credential.close()
            self._credential = None

    def check(self) -> None:
        """Get a token and resolve the configured drives (the first requests a sync makes anyway)."""
        w = self._walker()
        try:
            self._drives = w.session.run(drives.resolve_drives(w))
        finally:
            w.session.close()

    def sync(self, checkpoint: Checkpoint | None) -> SyncGenerator:
        cp = checkpoint.model_copy(deep=True) if isinstance(checkpoint, GraphCheckpoint) else GraphCheckpoint()
        w = self._walker()
        visited: set[str] = set()
        try:
            scopes = self._drives if self._drives is not None else w.session.run(drives.resolve_drives(w))
            for drive in scopes:
                visited.add(drive.key)
                yield from w.session.iterate(drives.sync_drive(w, drive, cp))
            for mailbox in self.settings.mailboxes:
                visited.update(mail.scope_key(mailbox, f) for f in self.settings.mail_folders)
                yield from w.session.iterate(mail.sync_mailbox(w, mailbox, cp))
            for team_id in self.settings.teams:
                yield from w.session.iterate(teams.sync_team(w, team_id, cp, visited))
            _prune(cp, visited)
            return cp
        finally:
            self.sync_stats = w.summary()
            w.session.close()
            self._drives = None
            self.close()

    def fetch(self, external_ids: Sequence[str]) -> Iterator[Any]:
        """Re-read items by external id; gone items come back as tombstones."""
        w = self._walker()
        try:
            yield from w.session.iterate(self._fetch(w, list(dict.fromkeys(external_ids))))
        finally:
            self.sync_stats = w.summary()
            w.session.close()
            self.close()

    async def _fetch(self, w: Walker, wanted: list[str]) -> Any:
        scopes: dict[str, drives.DriveScope] | None = None
        team_cache: dict[str, Any] = {}
        for external_id in wanted:
            parsed = ids.parse(external_id)
            if parsed is None:
                yield Failure(external_id=external_id, message="not an id of a Microsoft Graph source")
                continue
            if parsed.kind == "driveitem":
                if scopes is None:
                    scopes = {d.id: d for d in await drives.resolve_drives(w)}
                drive = scopes.get(parsed.parts[0])
                if drive is None:
                    yield Tombstone(external_id=external_id, reason="drive no longer configured")
                    continue
                yield await drives.fetch_item(w, drive, parsed.parts[1])
            elif parsed.kind == "conversation":
                for record in await mail.fetch_conversation(w, *parsed.parts):
                    yield record
            elif parsed.kind == "message":
                for record in await mail.fetch_message(w, *parsed.parts):
                    yield record
            else:
                team_id, channel_id, root_id = parsed.parts
                record = await teams.fetch_thread(w, team_id, channel_id, root_id, team_cache)
                if record is not None:
                    yield record


def _prune(cp: GraphCheckpoint, visited: set[str]) -> None:
    """Forget cursors of drives, folders and channels no longer configured."""
    for table in (cp.delta, cp.pending, cp.watermarks):
        for key in [k for k in table if k not in visited]:
            del table[key]
