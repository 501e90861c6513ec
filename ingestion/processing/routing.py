"""Which team a document or interaction feeds: exactly one, decided by its source and its ACL.

Sources often cover a shared workspace (one Notion integration, one SharePoint site) whose pages
belong to different teams. The rule, applied to every document and interaction:

1. The principals in its ACL are looked up among the teams' principals: each team's
   `principals` from `tacit.toml`, plus `team:<name>` for every configured team.
2. No team is named → the source's team.
3. The source's team is among those named → the source's team.
4. Otherwise → the named team that comes first in `tacit.toml` (usually the only one).

So a page of the platform team's workspace whose ACL says `team:support` feeds support only,
and a page with no team principal feeds the team that owns the source. An interaction with no
team principal of its own follows the document it belongs to, if that document is known.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from tacit.config import TacitConfig


class TeamRouter:
    def __init__(self, config: TacitConfig, source_teams: Mapping[int, str]) -> None:
        self.order = [t.name for t in config.teams]
        self.principals: dict[str, list[str]] = {}
        for team in config.teams:
            for principal in [f"team:{team.name}", *team.principals]:
                owners = self.principals.setdefault(principal.strip().lower(), [])
                if team.name not in owners:
                    owners.append(team.name)
        self.source_teams = dict(source_teams)

    def named_teams(self, acl: Iterable[Any] | None) -> list[str]:
        named: set[str] = set()
        for principal in acl or []:
            named.update(self.principals.get(str(principal).strip().lower(), ()))
        return [t for t in self.order if t in named]

    def team_for(self, source_id: int, acl: Iterable[Any] | None, fallback: str | None = None) -> str:
        """The one team a record of `source_id` with this ACL feeds (`fallback`: the team of
        the document an interaction belongs to, used when the ACL names no team)."""
        own = self.source_teams[source_id]
        named = self.named_teams(acl)
        if not named:
            return fallback or own
        return own if own in named else named[0]

    def fingerprint(self) -> str:
        """Changes whenever the mapping would route some record differently."""
        raw = json.dumps([self.order, sorted(self.principals.items()), sorted(self.source_teams.items())])
        return hashlib.sha256(raw.encode()).hexdigest()[:16]
