"""Fixtures shared by the Microsoft Graph connector's tests: `sandbox` is the suite's `msgraph_sandbox`."""

from __future__ import annotations

import pytest

from connectors.sandbox.graph import GraphSandbox
from connectors.sandbox.graph.workspace import Workspace


@pytest.fixture
def sandbox(msgraph_sandbox: tuple[GraphSandbox, Workspace]) -> tuple[GraphSandbox, Workspace]:
    """A fresh Graph sandbox with the sample company built in it, for one test (page size: the
    module's `GRAPH_PAGE_SIZE`, 6 by default)."""
    return msgraph_sandbox
