"""Error types the command line and the API map to exit codes and HTTP statuses.

An unknown name (team, source, adapter version) is a `NotFound`: exit 4 on the command line,
distinct from a bad argument (exit 2). A `Refused` operation is one the registry will not do
without `--force` (exit 5), e.g. making active a version that still carries deleted documents.
"""

from __future__ import annotations


class NotFound(LookupError):
    """Something named on the command line or in a request does not exist."""


class UnknownTeam(NotFound):
    """No team of that name in tacit.toml."""


class UnknownSource(NotFound):
    """No source of that name in tacit.toml."""


class UnknownVersion(NotFound):
    """The team has no adapter version of that number (or no active one)."""


class Refused(Exception):
    """An operation that would undo a guarantee (forgetting on request); `--force` overrides it."""
