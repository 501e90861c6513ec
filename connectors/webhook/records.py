"""The record format (one JSON object per line): parsing that never raises for one bad item."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from connectors.base import Document, Failure, Interaction, Tombstone, parse_record

Parsed = Document | Interaction | Tombstone | Failure


def records_from_payload(payload: Any, where: str = "body") -> Iterator[Parsed]:
    """One record object, or a list of them; a bad item becomes a `Failure` naming it."""
    items = payload if isinstance(payload, list) else [payload]
    for i, item in enumerate(items):
        label = f"{where}[{i}]" if isinstance(payload, list) else where
        try:
            yield parse_record(item)
        except ValueError as exc:
            ext = item.get("external_id") if isinstance(item, dict) and isinstance(item.get("external_id"), str) else None
            yield Failure(external_id=ext, message=f"{label}: {exc}")


def read_jsonl(path: str | Path) -> Iterator[Parsed]:
    """Read a JSONL file of records; a line that is not valid JSON or not a record is a `Failure`."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.strip()
            if not line:
                continue
            try:
                data = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError:
                yield Failure(message=f"line {lineno}: not valid UTF-8")
                continue
            except json.JSONDecodeError as exc:
                yield Failure(message=f"line {lineno}: invalid JSON: {exc.msg}")
                continue
            yield from records_from_payload(data, where=f"line {lineno}")
