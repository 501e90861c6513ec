"""Notion JSON → Markdown, without a server: rich text, every block type, row properties, checkpoints."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.notion.blocks import Node, Renderer, file_url
from connectors.notion.checkpoint import KnownPage, NotionCheckpoint, to_minutes
from connectors.notion.hierarchy import norm_id
from connectors.notion.properties import PropertyRenderer
from connectors.notion.richtext import PayloadError, markdown, plain
from connectors.sandbox.notion.model import (
    equation,
    mention_date,
    mention_link,
    mention_page,
    mention_user,
    text,
)


def block(kind: str, payload: dict[str, Any], children: list[Node] | None = None, bid: str = "b") -> Node:
    return Node({"object": "block", "id": bid, "type": kind, kind: payload, "has_children": bool(children)},
                children or [])


def para(*parts: Any, children: list[Node] | None = None) -> Node:
    return block("paragraph", {"rich_text": [text(p) if isinstance(p, str) else p for p in parts]}, children)


def render(*nodes: Node) -> str:
    return Renderer(lambda pid: {"p1": "Deploy policy"}.get(pid, "")).render(list(nodes))


def test_rich_text_keeps_what_a_reader_sees() -> None:
    items = [
        text("Ask "), mention_user("u1", "Ada Moreau"), text(" about "), mention_page("p1", "Deploy policy"),
        text(" before "), mention_date("2025-03-12", "2025-03-14"), text(": "),
        mention_link("https://harbor.example/changelog", "Harbor changelog"), text(", where "), equation("E = mc^2"),
        text(" and "), text("bold", bold=True), text(" "), text("it ", italic=True), text("x", code=True),
        text(" "), text("gone", strikethrough=True), text(" "), text("link", link="https://x.example"),
    ]
    assert markdown(items) == (
        "Ask @Ada Moreau about Deploy policy before 2025-03-12 → 2025-03-14: "
        "[Harbor changelog](https://harbor.example/changelog), where $E = mc^2$ and **bold** *it* `x` "
        "~~gone~~ [link](https://x.example)")
    assert plain(items).startswith("Ask @Ada Moreau about Deploy policy before 2025-03-12")


def test_rich_text_that_is_not_a_list_is_a_payload_error() -> None:
    with pytest.raises(PayloadError):
        markdown(42)
    with pytest.raises(PayloadError):
        render(block("paragraph", {"rich_text": "oops"}))


def test_headings_shift_below_the_title_and_lists_nest() -> None:
    out = render(
        block("heading_1", {"rich_text": [text("Overview")]}),
        block("heading_2", {"rich_text": [text("Details")]}),
        block("heading_3", {"rich_text": [text("Toggle heading")], "is_toggleable": True}, [para("inside")]),
        block("bulleted_list_item", {"rich_text": [text("one")]}, [
            block("bulleted_list_item", {"rich_text": [text("one.a")]}, [
                block("bulleted_list_item", {"rich_text": [text("one.a.i")]})])]),
        block("bulleted_list_item", {"rich_text": [text("two")]}),
        block("numbered_list_item", {"rich_text": [text("first")]}),
        block("numbered_list_item", {"rich_text": [text("second")]}, [
            block("numbered_list_item", {"rich_text": [text("nested")]})]),
        para("between"),
        block("numbered_list_item", {"rich_text": [text("restart")]}),
        block("to_do", {"rich_text": [text("done")], "checked": True}),
        block("to_do", {"rich_text": [text("open")], "checked": False}),
    )
    assert out == (
        "## Overview\n\n### Details\n\n#### Toggle heading\n\ninside\n\n"
        "- one\n  - one.a\n    - one.a.i\n- two\n1. first\n2. second\n   1. nested\n\nbetween\n\n"
        "1. restart\n- [x] done\n- [ ] open"
    )


def test_toggles_quotes_callouts_code_and_equations() -> None:
    out = render(
        block("toggle", {"rich_text": [text("More")]}, [para("hidden detail")]),
        block("quote", {"rich_text": [text("Ship small.")]}, [para("Really.")]),
        block("callout", {"rich_text": [text("Careful")], "icon": {"type": "emoji", "emoji": "🚨"}}),
        block("code", {"rich_text": [text("print(1)\nprint(2)")], "language": "python",
                       "caption": [text("A script")]}),
        block("code", {"rich_text": [text("plain")], "language": "plain text", "caption": []}),
        block("equation", {"expression": "a^2 + b^2 = c^2"}),
        block("divider", {}),
    )
    assert out == (
        "- More\n  hidden detail\n\n> Ship small.\n>\n> Really.\n\n> 🚨 Careful\n\n"
        "```python\nprint(1)\nprint(2)\n```\nA script\n\n```\nplain\n```\n\n$$\na^2 + b^2 = c^2\n$$\n\n---"
    )


def test_tables_media_links_and_child_pages() -> None:
    rows = [block("table_row", {"cells": [[text("Plan")], [text("First | response")]]}),
            block("table_row", {"cells": [[text("Enterprise")], [text("2 business hours")]]})]
    hosted = {"type": "file", "file": {"url": "https://s3.example/a/guide.pdf?X-Amz-Signature=abc&X-Amz-Expires=3600",
                                       "expiry_time": "2026-01-01T00:00:00.000Z"}}
    out = render(
        block("table", {"table_width": 2, "has_column_header": True}, rows),
        block("image", {"type": "external", "external": {"url": "https://img.example/a.png"},
                        "caption": [text("Architecture")]}),
        block("file", {**hosted, "caption": [], "name": "guide.pdf"}),
        block("bookmark", {"url": "https://docs.example", "caption": [text("Docs")]}),
        block("embed", {"url": "https://status.example", "caption": []}),
        block("child_page", {"title": "Drill"}, bid="0f3a2b1c-0000-4000-8000-000000000001"),
        block("link_to_page", {"type": "page_id", "page_id": "p1"}),
    )
    assert out == (
        "| Plan | First \\| response |\n|---|---|\n| Enterprise | 2 business hours |\n\n"
        "![Architecture](https://img.example/a.png)\n\n[guide.pdf](https://s3.example/a/guide.pdf)\n\n"
        "[Docs](https://docs.example)\n\n[https://status.example](https://status.example)\n\n"
        "[Drill](https://www.notion.so/0f3a2b1c000040008000000000000001)\n\n[Deploy policy](https://www.notion.so/p1)"
    )
    assert file_url(hosted) == "https://s3.example/a/guide.pdf"  # the expiring signature is dropped


def test_unknown_blocks_are_skipped_and_counted() -> None:
    renderer = Renderer()
    out = renderer.render([para("kept"), block("ai_block", {"prompt": "x"}), block("unsupported", {}),
                           block("breadcrumb", {}), block("ai_block", {})])
    assert out == "kept"
    assert renderer.skipped == {"ai_block": 2, "unsupported": 1}
    assert renderer.blocks == 2  # the paragraph and the (silent, known) breadcrumb


def test_synced_block_cycle_is_skipped_and_counted() -> None:
    renderer = Renderer()
    cyclic = Node({"id": "s", "type": "synced_block", "synced_block": {"synced_from": {"block_id": "s"}}}, cycle=True)
    assert renderer.render([para("before"), cyclic]) == "before"
    assert renderer.skipped == {"synced_block_cycle": 1}


def test_row_properties_render_every_type_sorted_by_name() -> None:
    users = {"u1": "Chen Liu", "u2": "Dana Whitfield"}
    titles = {"r1": "Nimbus", "r2": "Atlas"}
    props = PropertyRenderer(lambda u: users[u["id"] if isinstance(u, dict) else u], lambda pid: titles[pid])
    values = {
        "Name": {"type": "title", "title": [text("Skylark")]},
        "Owner": {"type": "people", "people": [{"object": "user", "id": "u1"}]},
        "Tier": {"type": "select", "select": {"name": "Tier 1"}},
        "Status": {"type": "status", "status": {"name": "Live"}},
        "Tags": {"type": "multi_select", "multi_select": [{"name": "deploy"}, {"name": "ci"}]},
        "Window": {"type": "date", "date": {"start": "2025-04-01", "end": "2025-04-03"}},
        "Depends on": {"type": "relation", "relation": [{"id": "r1"}, {"id": "r2"}], "has_more": False},
        "Count": {"type": "rollup", "rollup": {"type": "number", "number": 2.0, "function": "count"}},
        "Names": {"type": "rollup", "rollup": {"type": "array", "array": [
            {"type": "title", "title": [text("Nimbus")]}, {"type": "people", "people": [{"id": "u2"}]}]}},
        "Label": {"type": "formula", "formula": {"type": "string", "string": "35 days"}},
        "Big": {"type": "formula", "formula": {"type": "boolean", "boolean": True}},
        "Freeze": {"type": "formula", "formula": {"type": "date", "date": {"start": "2025-04-01"}}},
        "Quota": {"type": "number", "number": 8},
        "Empty": {"type": "number", "number": None},
        "Paged": {"type": "checkbox", "checkbox": False},
        "Runbook": {"type": "url", "url": "https://runbooks.example/skylark"},
        "ID": {"type": "unique_id", "unique_id": {"prefix": "SVC", "number": 4}},
        "Guide": {"type": "files", "files": [{"name": "guide.pdf", "type": "external",
                                              "external": {"url": "https://f.example/guide.pdf"}}]},
        "Created by": {"type": "created_by", "created_by": {"object": "user", "id": "u2"}},
        "Go": {"type": "button", "button": {}},
    }
    assert props.lines(values) == [
        "- **Big**: Yes", "- **Count**: 2", "- **Created by**: Dana Whitfield", "- **Depends on**: Nimbus, Atlas",
        "- **Freeze**: 2025-04-01", "- **Guide**: [guide.pdf](https://f.example/guide.pdf)", "- **ID**: SVC-4",
        "- **Label**: 35 days", "- **Names**: Nimbus, Dana Whitfield", "- **Owner**: Chen Liu", "- **Paged**: No",
        "- **Quota**: 8", "- **Runbook**: https://runbooks.example/skylark", "- **Status**: Live",
        "- **Tags**: deploy, ci", "- **Tier**: Tier 1", "- **Window**: 2025-04-01 → 2025-04-03",
    ]
    with pytest.raises(PayloadError):
        props.lines({"Owner": {"type": "people", "people": "nobody"}})


def test_checkpoint_packs_pages_and_discussions() -> None:
    known = {
        "0f3a2b1c-0000-4000-8000-000000000001": KnownPage(to_minutes("2025-03-12T09:04:00.000Z"),
                                                          ("0f3a2b1c-0000-4000-8000-0000000000d1",)),
        "0f3a2b1c-0000-4000-8000-000000000002": KnownPage(None, ()),
    }
    cp = NotionCheckpoint.build(known, partial_listings=1)
    assert cp.pages == 2
    again = NotionCheckpoint.model_validate(cp.model_dump(mode="json"))
    assert again.known_pages() == known
    assert NotionCheckpoint.build({}).known == "" and NotionCheckpoint().known_pages() == {}


def test_ids_are_normalised() -> None:
    assert norm_id("0F3A2B1C000040008000000000000001") == "0f3a2b1c-0000-4000-8000-000000000001"
    assert norm_id("not-an-id") == "not-an-id"
