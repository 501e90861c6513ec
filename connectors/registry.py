"""Connector kinds → classes, from the `tacit.connectors` entry points.

Adding a connector = a new folder, one entry point line in `pyproject.toml` (or a line in
`BUILTIN` below for a checkout that is not installed), fixtures in its fake server, and a pass
of the contract suite in `tests/connectors/test_contract.py`.
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from connectors.base import Connector

GROUP = "tacit.connectors"
BUILTIN = {
    "notion": "connectors.notion:NotionConnector",
    "msgraph": "connectors.msgraph:GraphConnector",
    "webhook": "connectors.webhook:WebhookConnector",
}


class UnknownConnector(LookupError):
    pass


@cache
def _targets() -> dict[str, str]:
    targets = dict(BUILTIN)
    for ep in entry_points(group=GROUP):
        targets[ep.name] = ep.value
    return targets


def kinds() -> list[str]:
    return sorted(_targets())


@cache
def connector_class(kind: str) -> type[Connector]:
    target = _targets().get(kind)
    if target is None:
        raise UnknownConnector(f"unknown connector kind {kind!r} (known: {', '.join(kinds())})")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise UnknownConnector(f"connector kind {kind!r} is not available: {exc}") from None
