"""Fixtures shared by the Notion connector's tests: `sandbox` is the suite's `notion_sandbox`."""

from __future__ import annotations

import pytest

from connectors.sandbox.notion import NotionSandbox


@pytest.fixture
def sandbox(notion_sandbox: NotionSandbox) -> NotionSandbox:
    """A fresh Notion sandbox (the local server that serves Notion's API) for one test."""
    return notion_sandbox
