"""The official `notion-client` SDK on the project's HTTP layer, with Notion's errors mapped.

Retries, `Retry-After` and the rate budget live in `connectors.http`; the SDK's own retry loop
is switched off (`retry=False`) so a 429 is never retried twice over. The SDK's logger is
replaced by a module logger that never sees the token (the SDK logs paths and error codes).

Error mapping (https://developers.notion.com/reference/status-codes):
401 `unauthorized` → `AuthError`; 404 `object_not_found` → `NotFound` (gone, or no longer shared);
other 4xx → `ItemError` (this object cannot be read; the rest goes on); 429/5xx that survived
every retry, timeouts and dropped connections → `TransientError`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import notion_client
from notion_client.errors import APIResponseError, HTTPResponseError, NotionClientErrorBase

from connectors.base import AuthError, ConnectorError, TransientError
from connectors.http import HttpBudget

log = logging.getLogger(__name__)
NOTION_VERSION = "2025-09-03"
PAGE_SIZE = 100  # the most Notion returns per request


class NotFound(ConnectorError):
    """The object does not exist or is not shared with the integration (404 object_not_found)."""


class ItemError(ConnectorError):
    """One object cannot be read (403, 400, an unexpected payload); other objects still can."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NotionApi:
    """Thin, typed-at-the-edges access to the endpoints the connector reads."""

    def __init__(self, token: str, base_url: str, http: HttpBudget, timeout_s: float = 60.0) -> None:
        self.http = http
        self.sdk = notion_client.Client(
            auth=token,
            base_url=base_url.rstrip("/"),
            client=http.client(base_url),
            notion_version=NOTION_VERSION,
            timeout_ms=int(timeout_s * 1000),
            retry=False,
            # The SDK logs every non-2xx (a 404 while checking for deleted pages is expected);
            # this module turns them into exceptions that say what they mean instead.
            logger=logging.getLogger("connectors.notion.sdk"),
            log_level=logging.ERROR,
        )

    # ------------------------------------------------------------------ calls
    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            result = fn(*args, **kwargs)
        except (APIResponseError, HTTPResponseError) as exc:
            raise _mapped(exc) from None
        except NotionClientErrorBase as exc:  # the SDK's own timeout
            raise TransientError(f"Notion request failed: {exc}") from None
        except httpx.HTTPError as exc:  # retries exhausted on a dropped connection or timeout
            raise TransientError(f"Notion is unreachable: {type(exc).__name__}: {exc}") from None
        except ValueError as exc:  # a response that is not JSON after every retry
            raise TransientError(f"Notion sent an unreadable response: {exc}") from None
        if not isinstance(result, dict):
            raise ItemError(f"Notion answered {type(result).__name__}, not an object")
        return result

    def paginate(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Every result of a list endpoint: `start_cursor` → `next_cursor` until `has_more` is false."""
        cursor: str | None = None
        while True:
            extra = {"start_cursor": cursor} if cursor else {}
            page = self.call(fn, *args, page_size=PAGE_SIZE, **kwargs, **extra)
            results = page.get("results")
            if not isinstance(results, list):
                raise ItemError("a list response without `results`")
            yield from results
            cursor = page.get("next_cursor")
            if not page.get("has_more") or not cursor:
                return

    # ------------------------------------------------------------------ endpoints
    def me(self) -> dict[str, Any]:
        return self.call(self.sdk.users.me)

    def search(self, **body: Any) -> Iterator[dict[str, Any]]:
        return self.paginate(self.sdk.search, **body)

    def page(self, page_id: str) -> dict[str, Any]:
        return self.call(self.sdk.pages.retrieve, page_id)

    def block(self, block_id: str) -> dict[str, Any]:
        return self.call(self.sdk.blocks.retrieve, block_id)

    def children(self, block_id: str) -> Iterator[dict[str, Any]]:
        return self.paginate(self.sdk.blocks.children.list, block_id)

    def data_source(self, data_source_id: str) -> dict[str, Any]:
        return self.call(self.sdk.data_sources.retrieve, data_source_id)

    def database(self, database_id: str) -> dict[str, Any]:
        return self.call(self.sdk.databases.retrieve, database_id)

    def query(self, data_source_id: str, **body: Any) -> Iterator[dict[str, Any]]:
        return self.paginate(self.sdk.data_sources.query, data_source_id, **body)

    def comments(self, block_id: str) -> Iterator[dict[str, Any]]:
        return self.paginate(self.sdk.comments.list, block_id=block_id)

    def users(self) -> Iterator[dict[str, Any]]:
        return self.paginate(self.sdk.users.list)

    def user(self, user_id: str) -> dict[str, Any]:
        return self.call(self.sdk.users.retrieve, user_id)

    def close(self) -> None:
        self.sdk.close()


def _mapped(exc: HTTPResponseError) -> ConnectorError:
    status = getattr(exc, "status", 0)
    code = getattr(exc.code, "value", exc.code)
    message = str(exc) or code
    if status == 401 or code == "unauthorized":
        # The token never appears here: Notion's message is "API token is invalid."
        return AuthError(f"Notion refused the integration token (401 {code}): {message}")
    if status == 404 or code == "object_not_found":
        return NotFound(message)
    if status in (429, 409) or status >= 500 or status == 0:
        return TransientError(f"Notion answered {status} {code} after every retry: {message}")
    return ItemError(f"Notion answered {status} {code}: {message}", status)
