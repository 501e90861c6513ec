"""Fixtures shared by the Notion connector's tests: the local Notion sandbox, defined once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectors.sandbox.notion import NotionSandbox


@pytest.fixture
def sandbox() -> Iterator[NotionSandbox]:
    """A fresh Notion sandbox (the local server that serves Notion's API) for one test."""
    with NotionSandbox() as sb:
        yield sb
