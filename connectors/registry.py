"""Connector kinds → classes, from the `tacit.connectors` entry points: the one plugin mechanism.

Adding a connector = a new folder with a `Connector` subclass and one entry point line
(`[project.entry-points."tacit.connectors"]` in `pyproject.toml`, or any installed distribution's
`entry_points.txt`). Everything else the platform needs from it — its rate limit, webhook routes,
event handlers, beat entries and status fields — the class declares (`Connector.rate_limit`,
`Connector.contributions()`); the platform asks the registry and never names a kind. A new kind
passes the contract suite in `tests/connectors/test_contract.py`.
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points

from connectors.base import Connector

GROUP = "tacit.connectors"


class UnknownConnector(LookupError):
    pass


@cache
def _targets() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=GROUP)}


def refresh() -> None:
    """Forget what was discovered, so distributions put on `sys.path` since are seen."""
    _targets.cache_clear()
    connector_class.cache_clear()


def kinds() -> list[str]:
    return sorted(_targets())


@cache
def connector_class(kind: str) -> type[Connector]:
    target = _targets().get(kind)
    if target is None:
        raise UnknownConnector(f"unknown connector kind {kind!r} (known: {', '.join(kinds())})")
    module_name, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UnknownConnector(f"connector kind {kind!r} cannot be loaded from {target!r}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Connector)):
        raise UnknownConnector(f"connector kind {kind!r}: {target!r} is not a Connector class")
    return cls


def used_classes(used: list[str] | set[str] | tuple[str, ...]) -> list[type[Connector]]:
    """The classes of the given kinds, each once, in kind order (unknown kinds raise `UnknownConnector`)."""
    return [connector_class(kind) for kind in sorted(set(used))]
