"""Discussions (comment threads) on a page or a block → `Interaction`s linked to their page.

`GET /v1/comments?block_id=` lists the open (un-resolved) comments of one page *or* one block:
a page id returns the page's own discussions, not the inline ones on its blocks, which need
one request per block (https://developers.notion.com/reference/list-comments). Comments are
grouped by `discussion_id`, oldest first. Roles: whoever opened the discussion asks (`user`);
everyone else answers (`assistant`), which is how a question and its replies train a model.
"""

from __future__ import annotations

from typing import Any

from connectors.base import Interaction, Message
from connectors.notion.client import NotionApi
from connectors.notion.richtext import PayloadError, markdown
from connectors.notion.users import UserDirectory


def discussions(api: NotionApi, users: UserDirectory, target_id: str, *, page_id: str, acl: list[str],
                on_block: bool = False) -> list[Interaction]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for comment in api.comments(target_id):
        if not isinstance(comment, dict) or not isinstance(comment.get("discussion_id"), str):
            raise PayloadError(f"an unexpected comment on {target_id}")
        groups.setdefault(comment["discussion_id"], []).append(comment)
    out: list[Interaction] = []
    for discussion_id, comments in groups.items():
        comments.sort(key=lambda c: (str(c.get("created_time", "")), str(c.get("id", ""))))
        opener = (comments[0].get("created_by") or {}).get("id")
        messages = []
        for comment in comments:
            body = markdown(comment.get("rich_text")).strip()
            if not body:
                continue
            author = (comment.get("created_by") or {}).get("id")
            messages.append(Message(author=users.name(author), role="user" if author == opener else "assistant",
                                    text=body, at=comment.get("created_time")))
        if not messages:
            continue
        metadata: dict[str, Any] = {"discussion_id": discussion_id, "on": "block" if on_block else "page"}
        if on_block:
            metadata["block_id"] = target_id
        out.append(Interaction(external_id=discussion_id, kind="thread" if len(messages) > 1 else "comment",
                               messages=messages, document_external_id=page_id, acl=list(acl), metadata=metadata))
    return out
