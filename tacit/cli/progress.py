"""The terminal the commands write to: `console` (stderr, for people), `out` (stdout, for pipes), progress bars.

Shared by every command module and by the demo, so they draw progress the same way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

console = Console(stderr=True)
out = Console(highlight=False, soft_wrap=True)


@contextmanager
def progress_bar(description: str, total: float | None = None) -> Iterator[Callable[..., None]]:
    """Rich progress on stderr; yields `update(completed=…, description=…)`."""
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.completed:.0f}"), TimeElapsedColumn(), console=console,
                  transient=False, disable=not console.is_terminal and os.environ.get("TACIT_PROGRESS") != "1") as bar:
        task = bar.add_task(description, total=total)

        def update(**kwargs: Any) -> None:
            bar.update(task, **kwargs)

        yield update
