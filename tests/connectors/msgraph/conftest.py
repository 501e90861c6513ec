"""Fixtures shared by the Microsoft Graph connector's tests: the local Graph sandbox, defined once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectors.sandbox.graph import GraphSandbox
from connectors.sandbox.graph.workspace import Workspace, build_company


@pytest.fixture
def sandbox(request: pytest.FixtureRequest) -> Iterator[tuple[GraphSandbox, Workspace]]:
    """A fresh Graph sandbox with the sample company built in it, for one test.

    Its page size is the test module's `GRAPH_PAGE_SIZE` (6 by default): small pages make every
    listing span several pages, so paging and delta links are exercised.
    """
    with GraphSandbox(page_size=getattr(request.module, "GRAPH_PAGE_SIZE", 6)) as sb:
        yield sb, build_company(sb)
