"""Contract-suite harness for the Notion connector: the sandbox workspace over real HTTP."""

from __future__ import annotations

from connectors.sandbox.notion import NotionSandbox

#: Fast enough for the suite, slow enough that a sync can be killed in the middle (~500 requests).
RATE = 250.0


class NotionHarness:
    kind = "notion"

    def __init__(self, sandbox: NotionSandbox) -> None:
        self.sandbox = sandbox

    def source_block(self, name: str, team: str) -> str:
        return self.sandbox.source_block(name, team, rate_limit=RATE, comments="blocks")

    def inject(self, status: int, count: int = 1, retry_after: float | None = None) -> None:
        self.sandbox.inject(status, count, retry_after)

    def expected_ids(self) -> set[str]:
        return self.sandbox.expected_ids("blocks")

    def requests_served(self) -> int:
        return self.sandbox.request_count


def harness(sandbox: NotionSandbox) -> NotionHarness:
    """The harness over the `notion_sandbox` fixture's sandbox."""
    return NotionHarness(sandbox)
