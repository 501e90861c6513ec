"""Map any JSON body to the record format with JMESPath expressions from `tacit.toml`.

A source whose sender cannot speak the record format (a ticketing system, a chat tool) gets a
`mapping` table: each key is a field of a record, each value a JMESPath expression
(https://jmespath.org/specification.html) evaluated on one item of the body. The optional
`items` expression splits a body into items (a list; a single object is one item; null is
none). Without `items`, a body that is a list maps each element, anything else is one item.

```toml
[sources.mapping]
items = "events[?type=='rating']"           # optional
type = "'interaction'"                       # a literal is quoted: 'interaction'
external_id = "id"
kind = "'feedback'"
messages = "[{role: 'user', text: question}, {role: 'assistant', text: answer}]"
rating = "score"
correction = "fix"
```

An expression that yields null leaves its field out (its default applies). Numbers given for
an id field (`external_id`, `document_external_id`, `parent_external_id`) become strings,
since ticket and message ids are often numeric. `type` and `external_id` are required.
"""

from __future__ import annotations

from collections.abc import Mapping as MappingABC
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError
from jmespath.parser import ParsedResult

#: Every field a record of any type may have (see `connectors.base`), plus `items`.
RECORD_FIELDS = frozenset({
    "type", "external_id", "title", "text", "url", "authors", "created_at", "updated_at",
    "parent_external_id", "acl", "metadata", "kind", "messages", "document_external_id", "rating",
    "correction", "reason",
})
ID_FIELDS = ("external_id", "document_external_id", "parent_external_id")
REQUIRED = ("type", "external_id")


class MappingError(ValueError):
    """The body does not fit the source's mapping (an expression failed or yields the wrong shape)."""


class JsonMapping:
    """A compiled mapping: `apply(body)` returns one record-format dict per item."""

    def __init__(self, spec: MappingABC[str, str]) -> None:
        unknown = sorted(set(spec) - RECORD_FIELDS - {"items"})
        if unknown:
            raise ValueError(f"unknown mapping field(s) {', '.join(unknown)} "
                             f"(known: items, {', '.join(sorted(RECORD_FIELDS))})")
        missing = [f for f in REQUIRED if f not in spec]
        if missing:
            raise ValueError(f"mapping needs {' and '.join(missing)}")
        self.items: ParsedResult | None = None
        self.fields: dict[str, ParsedResult] = {}
        for key, expr in spec.items():
            if not isinstance(expr, str) or not expr.strip():
                raise ValueError(f"mapping.{key}: expected a JMESPath expression")
            try:
                compiled = jmespath.compile(expr)
            except JMESPathError as exc:
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise ValueError(f"mapping.{key}: invalid JMESPath expression {expr!r}: {reason}") from None
            if key == "items":
                self.items = compiled
            else:
                self.fields[key] = compiled

    def split(self, body: Any) -> list[Any]:
        """The items of a body (see the module docstring)."""
        if self.items is None:
            return body if isinstance(body, list) else [body]
        found = _search(self.items, body, "items")
        if found is None:
            return []
        return found if isinstance(found, list) else [found]

    def apply(self, body: Any) -> list[dict[str, Any]]:
        records = []
        for index, item in enumerate(self.split(body)):
            record: dict[str, Any] = {}
            for key, expr in self.fields.items():
                value = _search(expr, item, key, index)
                if value is None:
                    continue
                if key in ID_FIELDS and isinstance(value, int | float) and not isinstance(value, bool):
                    value = str(int(value)) if float(value).is_integer() else str(value)
                record[key] = value
            for key in REQUIRED:
                if key not in record:
                    raise MappingError(f"item {index}: mapping.{key} yields null")
            records.append(record)
        return records


def _search(expr: ParsedResult, data: Any, key: str, index: int | None = None) -> Any:
    try:
        return expr.search(data)
    except (JMESPathError, TypeError, ValueError, AttributeError, RecursionError) as exc:
        where = f"item {index}: " if index is not None else ""
        raise MappingError(f"{where}mapping.{key} failed: {exc}") from None
