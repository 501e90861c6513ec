"""User ids → names, through a cache filled from the user directory.

Notion gives most objects only `{"object": "user", "id": …}` (page authors, comment authors,
some people properties). The directory (`GET /v1/users`, 100 per request) is read once, the
first time a name is needed; an id it does not hold (a guest, a removed member) is looked up
alone, once. https://developers.notion.com/reference/get-users
"""

from __future__ import annotations

import logging
from typing import Any

from connectors.notion.client import ItemError, NotFound, NotionApi

log = logging.getLogger(__name__)

UNKNOWN = "Unknown user"


class UserDirectory:
    def __init__(self, api: NotionApi) -> None:
        self.api = api
        self._names: dict[str, str] = {}
        self._emails: dict[str, str] = {}
        self._listed = False

    def remember(self, user: Any) -> None:
        """Keep what a full user object already says (people properties often carry names)."""
        if isinstance(user, dict) and isinstance(user.get("id"), str) and user.get("name"):
            self._names[user["id"]] = str(user["name"])
            email = (user.get("person") or {}).get("email")
            if email:
                self._emails[user["id"]] = str(email)

    def name(self, user: Any) -> str:
        """The display name of a user object or id; `Unknown user` when Notion will not say."""
        if isinstance(user, dict):
            self.remember(user)
            user = user.get("id")
        if not isinstance(user, str) or not user:
            return UNKNOWN
        if user not in self._names and not self._listed:
            self._listed = True
            try:
                for entry in self.api.users():
                    self.remember(entry)
            except ItemError as exc:  # an integration without "read user information" gets 403
                log.warning("notion: the user directory cannot be read (%s); names come from the objects", exc)
        if user not in self._names:
            try:
                self.remember(self.api.user(user))
            except (NotFound, ItemError):
                pass
            self._names.setdefault(user, UNKNOWN)
        return self._names[user]

    def email(self, user_id: str) -> str | None:
        self.name(user_id)
        return self._emails.get(user_id)
