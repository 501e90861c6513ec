"""The errors a user can act on: the command line shows each as one line with exit status 2, or 4
for something named that does not exist (`NotFound`: an unknown team, source or adapter version).

Only these (and `tacit.config.ConfigError`) are usage errors. Any other exception — a `KeyError`
from a bug included — is a fault: exit status 1, with a traceback under `TACIT_DEBUG=1`.
"""

from __future__ import annotations


class UsageError(Exception):
    """A bad argument, or a request the current state cannot answer."""


class NotFound(UsageError, LookupError):
    """Something the user named does not exist (the admin API answers 404, the command line exits 4)."""


class UnknownTeam(NotFound):
    """A team that is not configured, or not in the database (yet)."""


class UnknownSource(NotFound):
    """A source that is not configured, or not in the database (yet)."""


class NoAdapter(NotFound):
    """A team has no active adapter, or no adapter version by that number."""


class AdapterStateError(UsageError):
    """An adapter operation the team's versions do not allow (promote a rejected one, roll back the first)."""


class Refused(Exception):
    """An operation that would undo a guarantee (forgetting on request); `--force` overrides it.
    The command line shows it as one line with exit status 5."""
