"""Connector kinds → classes, from the `tacit.connectors` entry points: the one plugin mechanism.

Adding a connector = a new folder with a `Connector` subclass and one entry point line
(`[project.entry-points."tacit.connectors"]` in `pyproject.toml`, or any installed distribution's
`entry_points.txt`). Everything else the platform needs from it — its rate limit, webhook routes,
event handlers, beat entries and status fields — the class declares (`Connector.rate_limit`,
`Connector.contributes`); the platform asks the registry and never names a kind. A new kind
passes the contract suite in `tests/connectors/test_contract.py`.
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points

from connectors.base import NO_CONTRIBUTIONS, Connector, Contributions

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
    contributions.cache_clear()


def kinds() -> list[str]:
    return sorted(_targets())


@cache
def connector_class(kind: str) -> type[Connector]:
    target = _targets().get(kind)
    if target is None:
        raise UnknownConnector(f"unknown connector kind {kind!r} (known: {', '.join(kinds())})")
    try:
        cls = _resolve(target)
    except (ImportError, AttributeError) as exc:
        raise UnknownConnector(f"connector kind {kind!r} cannot be loaded from {target!r}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Connector)):
        raise UnknownConnector(f"connector kind {kind!r}: {target!r} is not a Connector class")
    return cls


@cache
def contributions(cls: type[Connector]) -> Contributions:
    """What `cls` adds to the platform: `cls.contributes` resolved, loaded on first use."""
    if cls.contributes is None:
        return NO_CONTRIBUTIONS
    found = _resolve(cls.contributes)
    if not isinstance(found, Contributions):
        raise TypeError(f"{cls.__name__}.contributes = {cls.contributes!r} is not a Contributions")
    return found


def _resolve(reference: str) -> object:
    """"module:attribute", as in an entry point's value."""
    module_name, _, attr = reference.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def used_classes(used: list[str] | set[str] | tuple[str, ...]) -> list[type[Connector]]:
    """The classes of the given kinds, each once, in kind order (unknown kinds raise `UnknownConnector`)."""
    return [connector_class(kind) for kind in sorted(set(used))]
