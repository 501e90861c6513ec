"""Outlook mail: message delta per folder; each changed conversation is re-read whole.

A conversation becomes one `Interaction` of kind `thread`: the messages in the order they were
sent, bodies turned from HTML to text with quoted history removed, the first sender in the
role `user` and everyone else `assistant`. With `mail_as_documents`, a long message (at least
`mail_document_min_chars` of its own text) is also written as a `Document`.

The delta of a folder only says which messages changed; the conversations they belong to are
re-read with `$filter=conversationId eq '…'` (https://learn.microsoft.com/graph/api/user-list-messages),
twenty conversations per `$batch`. A removed message (`@removed`) names no conversation: its
long-form document is tombstoned, and its thread is rewritten the next time the conversation changes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.users.item.mail_folders.item.messages.delta.delta_request_builder import (
    DeltaRequestBuilder,
)
from msgraph.generated.users.item.messages.messages_request_builder import MessagesRequestBuilder

from connectors.base import Document, Failure, Interaction, Tombstone
from connectors.base import Message as Said
from connectors.msgraph import delta, ids
from connectors.msgraph.client import translate
from connectors.msgraph.mailtext import body_text
from connectors.msgraph.settings import GraphCheckpoint
from connectors.msgraph.walker import Walker, parse_time

PERMISSION = "Mail.Read"
FIELDS = ["id", "subject", "body", "from", "sender", "toRecipients", "sentDateTime", "receivedDateTime",
          "lastModifiedDateTime", "conversationId", "webLink", "isDraft"]
CONVERSATION_PAGE = 50


def scope_key(mailbox: str, folder: str) -> str:
    return f"mail:{mailbox.lower()}:{folder}"


async def sync_mailbox(w: Walker, mailbox: str, cp: GraphCheckpoint) -> AsyncIterator[Any]:
    for folder in w.settings.mail_folders:
        async for record in _sync_folder(w, mailbox, folder, cp):
            yield record


async def _sync_folder(w: Walker, mailbox: str, folder: str, cp: GraphCheckpoint) -> AsyncIterator[Any]:
    builder = w.client.users.by_user_id(mailbox).mail_folders.by_mail_folder_id(folder).messages.delta
    config = RequestConfiguration(query_parameters=DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(
        select=["id", "conversationId", "lastModifiedDateTime"]))

    async def handle(page: dict[str, Any]) -> AsyncIterator[Any]:
        conversations: list[str] = []
        for message in page.get("value") or []:
            cid = message.get("conversationId")
            if "@removed" in message:
                yield Tombstone(external_id=ids.mail_message(mailbox, message["id"]), reason="deleted")
            elif cid and cid not in w.seen_conversations:
                w.seen_conversations.add(cid)
                conversations.append(cid)
        for record in await read_conversations(w, mailbox, conversations):
            yield record

    async for record in delta.walk(w, cp, scope_key(mailbox, folder),
                                   lambda: builder.to_get_request_information(config),
                                   what=f"mail delta of {mailbox}/{folder}", permission=PERMISSION, handle=handle,
                                   missing=f"mailboxes: no mailbox or folder {mailbox}/{folder}"):
        yield record


async def read_conversations(w: Walker, mailbox: str, conversation_ids: list[str]) -> list[Any]:
    """Each conversation's records (thread, long-form documents), read with `$batch`.

    The answers are read as JSON: the SDK's model deserialisation costs more than the request
    (https://github.com/microsoftgraph/msgraph-sdk-python/issues/584).
    """
    if not conversation_ids:
        return []
    messages = w.client.users.by_user_id(mailbox).messages
    requests = {}
    for n, cid in enumerate(conversation_ids):
        params = MessagesRequestBuilder.MessagesRequestBuilderGetQueryParameters(
            filter="conversationId eq '{}'".format(cid.replace("'", "''")), select=FIELDS, top=CONVERSATION_PAGE)
        requests[str(n)] = messages.to_get_request_information(RequestConfiguration(query_parameters=params))
    answers = await w.session.batch(requests, f"conversations in {mailbox}", PERMISSION)
    out: list[Any] = []
    for n, cid in enumerate(conversation_ids):
        answer = answers[str(n)]
        external_id = ids.conversation(mailbox, cid)
        if answer.status in (401, 403):
            raise translate(answer.status, "", "", f"conversation in {mailbox}", PERMISSION)
        if answer.status != 200:
            out.append(Failure(external_id=external_id, retryable=True,
                               message=f"conversation in {mailbox}: Graph answered {answer.status}"))
            continue
        page = answer.body or {}
        found = list(page.get("value") or [])
        next_link = page.get("@odata.nextLink")
        while next_link:  # a conversation longer than one page
            more = await w.session.json(next_link, f"conversation in {mailbox}", PERMISSION)
            found += more.get("value") or []
            next_link = more.get("@odata.nextLink")
        out += conversation_records(w, mailbox, cid, found)
    w.stats["conversations"] += len(conversation_ids)
    return out


def conversation_records(w: Walker, mailbox: str, cid: str, messages: list[dict[str, Any]]) -> list[Any]:
    """A conversation's thread (and long-form documents) from its `message` objects (JSON)."""
    external_id = ids.conversation(mailbox, cid)
    messages = sorted((m for m in messages if not m.get("isDraft")),
                      key=lambda m: (m.get("sentDateTime") or m.get("receivedDateTime") or "", m.get("id") or ""))
    said: list[Said] = []
    docs: list[Any] = []
    first_sender: str | None = None
    for m in messages:
        sender = _address(m)
        body = m.get("body") or {}
        text = body_text(body.get("content"), body.get("contentType") or "html")
        sent = parse_time(m.get("sentDateTime"))
        if first_sender is None:
            first_sender = sender
        if text:
            said.append(Said(author=sender or "", role="user" if sender == first_sender else "assistant", text=text,
                             at=sent))
        if w.settings.mail_as_documents and len(text) >= w.settings.mail_document_min_chars:
            docs.append(Document(external_id=ids.mail_message(mailbox, m.get("id") or ""), title=m.get("subject") or "",
                                 text=text, url=m.get("webLink"), authors=[sender] if sender else [],
                                 created_at=sent, updated_at=parse_time(m.get("lastModifiedDateTime")),
                                 acl=[f"group:{mailbox.lower()}"],
                                 metadata={"source": "mail", "mailbox": mailbox.lower(), "conversation_id": cid,
                                           "subject": m.get("subject") or ""}))
    if not said:
        return [Tombstone(external_id=external_id, reason="conversation is empty or gone"), *docs]
    subject = (messages[0].get("subject") or "") if messages else ""
    thread = Interaction(external_id=external_id, kind="thread", messages=said, acl=[f"group:{mailbox.lower()}"],
                         metadata={"source": "mail", "mailbox": mailbox.lower(), "conversation_id": cid,
                                   "subject": subject, "messages": len(said)})
    return [thread, *docs]


def _address(m: dict[str, Any]) -> str | None:
    ident = m.get("from") or m.get("sender") or {}
    email = ident.get("emailAddress") or {}
    return (email.get("address") or email.get("name") or "").lower() or None


async def fetch_conversation(w: Walker, mailbox: str, cid: str) -> list[Any]:
    return await read_conversations(w, mailbox, [cid])


async def fetch_message(w: Walker, mailbox: str, message_id: str) -> list[Any]:
    """Re-read one long-form message: its document, or a tombstone when it is gone or short."""
    external_id = ids.mail_message(mailbox, message_id)
    info = w.client.users.by_user_id(mailbox).messages.by_message_id(message_id).to_get_request_information()
    (answer,) = (await w.session.batch({"0": info}, f"message in {mailbox}", PERMISSION)).values()
    if answer.status == 404:
        return [Tombstone(external_id=external_id, reason="deleted")]
    if answer.status != 200:
        raise translate(answer.status, "", "", f"message in {mailbox}", PERMISSION)
    m = answer.body or {}
    records = conversation_records(w, mailbox, m.get("conversationId") or "", [m])
    return [r for r in records if r.external_id == external_id] or [
        Tombstone(external_id=external_id, reason="not a long-form message")]
