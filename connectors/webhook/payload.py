"""From a pushed body to records, all or nothing: used to validate before accepting and to process.

The webhook service runs `records_from_body` before it answers 202, and the event processor runs
it again on the stored body, so what was accepted is what gets ingested. A delivery is atomic: if
one item is not a valid record, the whole delivery is refused with the reasons (a sender gets one
clear answer instead of a partial write it cannot see).

Rules beyond the record format, so that everything accepted can be stored on every database:
- JSON is strict: UTF-8, no `NaN`/`Infinity`, no number that overflows a float, no integers
  beyond 4300 digits, nesting at most `MAX_DEPTH` deep.
- NUL characters are removed from every string (PostgreSQL text and JSONB cannot hold them) and
  lone UTF-16 surrogates (`"\\ud800"`) become U+FFFD.
- Ids fit their columns: at most 1024 bytes in UTF-8, since a longer key does not fit a
  PostgreSQL index entry; times are within years 1-9999 once converted to UTC.
- When several records of one delivery share an external id, the last one wins (order of the
  list is the order of the changes).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from connectors.base import Document, Interaction, Tombstone, clean_strings, clean_text, parse_record
from connectors.webhook.mapping import JsonMapping, MappingError

MAX_DEPTH = 64
MAX_ID_BYTES = 1024
MAX_REASONS = 5

Parsed = Document | Interaction | Tombstone


class PayloadError(ValueError):
    """The body cannot be ingested; `reason` is `malformed` (JSON) or `invalid` (records, mapping)."""

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


def parse_json(body: bytes | str) -> Any:
    """Strict JSON (see the module docstring); raises `PayloadError(reason="malformed")`."""
    if isinstance(body, bytes):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PayloadError(f"malformed JSON: not valid UTF-8 at byte {exc.start}", "malformed") from None
    else:
        text = body
    text = text.removeprefix("\ufeff")
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                           "malformed") from None
    except RecursionError:
        raise PayloadError(f"malformed JSON: nested deeper than {MAX_DEPTH} levels", "malformed") from None
    except ValueError as exc:  # NaN/Infinity, float overflow, integers over 4300 digits
        raise PayloadError(f"malformed JSON: {exc}", "malformed") from None
    return _clean(value, 0)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _clean(value: Any, depth: int) -> Any:
    _check_depth(value, depth)
    return clean_strings(value)


def _check_depth(value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise PayloadError(f"malformed JSON: nested deeper than {MAX_DEPTH} levels", "malformed")
    for child in value.values() if isinstance(value, dict) else value if isinstance(value, list) else ():
        _check_depth(child, depth + 1)


def records_from_body(payload: Any, mapping: JsonMapping | None = None) -> list[Parsed]:
    """Every record of a parsed body, or `PayloadError` naming the items that are not valid."""
    if mapping is not None:
        try:
            items: list[Any] = mapping.apply(payload)
        except MappingError as exc:
            raise PayloadError(f"mapping failed: {exc}") from None
        label = "mapped item"
    else:
        items = payload if isinstance(payload, list) else [payload]
        label = "item"
    records: dict[str, Parsed] = {}
    errors: list[str] = []
    for index, item in enumerate(items):
        where = f"{label} {index}" if isinstance(payload, list) or mapping is not None else "body"
        try:
            record = parse_record(item)
            _check_storable(record)
        except ValueError as exc:
            errors.append(f"{where}: {exc}")
            if len(errors) >= MAX_REASONS:
                break
            continue
        records.pop(record.external_id, None)  # the last record for an id wins, in its position
        records[record.external_id] = record
    if errors:
        more = " (and more)" if len(errors) >= MAX_REASONS and len(items) > MAX_REASONS else ""
        raise PayloadError("; ".join(errors) + more)
    return list(records.values())


def _check_storable(record: Parsed) -> None:
    for field in ("external_id", "document_external_id", "parent_external_id"):
        value = getattr(record, field, None)
        if isinstance(value, str) and len(value.encode("utf-8")) > MAX_ID_BYTES:
            raise ValueError(f"{field}: longer than {MAX_ID_BYTES} bytes in UTF-8")
    times: list[tuple[str, datetime | None]] = []
    if isinstance(record, Document):
        times = [("created_at", record.created_at), ("updated_at", record.updated_at)]
    elif isinstance(record, Interaction):
        times = [(f"messages.{i}.at", m.at) for i, m in enumerate(record.messages)]
        if record.rating is not None and not math.isfinite(record.rating):
            raise ValueError("rating: must be a finite number")
    for name, value in times:
        if value is None:
            continue
        try:
            value.replace(tzinfo=value.tzinfo or UTC).astimezone(UTC)
        except (OverflowError, ValueError):
            raise ValueError(f"{name}: out of range once converted to UTC") from None


def headers_snapshot(headers: Mapping[str, str], names: tuple[str, ...]) -> dict[str, str]:
    """The named request headers that are worth keeping with an event (never signatures)."""
    out = {}
    for name in names:
        value = headers.get(name)
        if value:
            out[name] = clean_text(value)[:512]
    return out
