"""Data-source row properties → readable Markdown lines (`- **Owner**: Chen Liu`).

Every property type of https://developers.notion.com/reference/page-property-values is
rendered as a person would read it: people by name, relations by the related page's title,
rollups and formulas by their computed value, dates as ranges, selects by option name.
Properties are sorted by name so a row's text does not depend on the order Notion sends them in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from connectors.notion.blocks import file_url
from connectors.notion.richtext import PayloadError, plain


class PropertyRenderer:
    def __init__(self, user_name: Callable[[Any], str], page_title: Callable[[str], str]) -> None:
        self.user_name = user_name
        self.page_title = page_title

    def lines(self, properties: Any) -> list[str]:
        if not isinstance(properties, dict):
            raise PayloadError("page properties should be an object")
        out: list[str] = []
        for name in sorted(properties):
            value = properties[name]
            if not isinstance(value, dict):
                raise PayloadError(f"property {name!r} should be an object")
            if value.get("type") == "title":
                continue
            text = self.value(value)
            if text:
                out.append(f"- **{name}**: {text}")
        return out

    def value(self, prop: dict[str, Any]) -> str:
        """One property value (or a rollup array item) as text; empty when it holds nothing."""
        kind = prop.get("type")
        if not isinstance(kind, str):
            raise PayloadError("a property value without a type")
        data = prop.get(kind)
        if data is None:
            return ""
        if kind in ("title", "rich_text"):
            return plain(data)
        if kind == "number":
            return _number(data)
        if kind in ("select", "status"):
            return str(data.get("name", "")) if isinstance(data, dict) else ""
        if kind == "multi_select":
            return ", ".join(str(o.get("name", "")) for o in _list(data, kind))
        if kind == "date":
            return _date(data)
        if kind == "people":
            return ", ".join(self.user_name(u) for u in _list(data, kind))
        if kind in ("created_by", "last_edited_by"):
            return self.user_name(data)
        if kind in ("created_time", "last_edited_time", "url", "email", "phone_number"):
            return str(data)
        if kind == "checkbox":
            return "Yes" if data else "No"
        if kind == "files":
            return ", ".join(_file(f) for f in _list(data, kind))
        if kind == "relation":
            titles = [self.page_title(str(r.get("id", ""))) for r in _list(data, kind)]
            more = " (and more)" if prop.get("has_more") else ""
            return ", ".join(titles) + more
        if kind == "formula":
            return self.value(data) if isinstance(data, dict) else ""
        if kind == "rollup":
            return self._rollup(data)
        if kind == "unique_id":
            prefix = data.get("prefix")
            return f"{prefix}-{data.get('number')}" if prefix else str(data.get("number", ""))
        if kind == "verification":
            return str(data.get("state", "")) if isinstance(data, dict) else ""
        if kind in ("string", "boolean"):  # inside formulas
            if kind == "boolean":
                return "Yes" if data else "No"
            return str(data)
        return ""  # button, and types added after this was written

    def _rollup(self, data: Any) -> str:
        if not isinstance(data, dict):
            raise PayloadError("a rollup value should be an object")
        kind = data.get("type")
        if kind == "array":
            parts = [self.value(item) for item in _list(data.get("array"), "rollup")]
            return ", ".join(p for p in parts if p)
        if kind == "number":
            return _number(data.get("number"))
        if kind == "date":
            return _date(data.get("date"))
        return self.value(data) if isinstance(kind, str) else ""


def _list(value: Any, kind: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise PayloadError(f"a {kind} value should be a list")
    return [v for v in value if isinstance(v, dict)]


def _number(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _date(value: Any) -> str:
    if not isinstance(value, dict) or not value.get("start"):
        return ""
    start, end = value["start"], value.get("end")
    return f"{start} → {end}" if end else str(start)


def _file(value: dict[str, Any]) -> str:
    url = file_url(value)
    name = str(value.get("name") or url.rsplit("/", 1)[-1])
    return f"[{name}]({url})" if url else name
