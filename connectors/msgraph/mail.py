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
from msgraph.generated.models.message import Message
from msgraph.generated.models.message_collection_response import MessageCollectionResponse
from msgraph.generated.users.item.mail_folders.item.messages.delta.delta_request_builder import (
    DeltaRequestBuilder,
)
from msgraph.generated.users.item.messages.messages_request_builder import MessagesRequestBuilder

from connectors.base import CheckpointExpired, ConfigError, Document, Failure, Interaction, Message as Said, Tombstone
from connectors.msgraph import ids
from connectors.msgraph.client import NotFound, translate
from connectors.msgraph.mailtext import body_text
from connectors.msgraph.settings import GraphCheckpoint
from connectors.msgraph.walker import Walker

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
    key = scope_key(mailbox, folder)
    builder = w.client.users.by_user_id(mailbox).mail_folders.by_mail_folder_id(folder).messages.delta
    config = RequestConfiguration(query_parameters=DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(
        select=["id", "conversationId", "lastModifiedDateTime"]))
    url = cp.pending.get(key) or cp.delta.get(key)
    restarted = False
    while True:
        try:
            page = await w.session.call(f"mail delta of {mailbox}/{folder}", PERMISSION,
                                        lambda u=url: builder.with_url(u).get() if u else builder.get(config))
        except CheckpointExpired:
            if restarted:
                raise
            restarted = True
            w.stats["delta_restarts"] += 1
            cp.pending.pop(key, None)
            cp.delta.pop(key, None)
            url = None
            continue
        except NotFound:
            raise ConfigError(f"mailboxes: no mailbox or folder {mailbox}/{folder}") from None
        conversations: list[str] = []
        for message in page.value or []:
            removed = (message.additional_data or {}).get("@removed")
            if removed is not None:
                yield Tombstone(external_id=ids.mail_message(mailbox, message.id), reason="deleted")
            elif message.conversation_id and message.conversation_id not in w.seen_conversations:
                w.seen_conversations.add(message.conversation_id)
                conversations.append(message.conversation_id)
        for record in await read_conversations(w, mailbox, conversations):
            yield record
        if page.odata_next_link:
            url = cp.pending[key] = page.odata_next_link
            yield w.mark(cp)
            continue
        cp.pending.pop(key, None)
        if page.odata_delta_link:
            cp.delta[key] = page.odata_delta_link
        yield w.mark(cp)
        return


async def read_conversations(w: Walker, mailbox: str, conversation_ids: list[str]) -> list[Any]:
    """Each conversation's records (thread, long-form documents), read with `$batch`."""
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
        page = answer.parse(MessageCollectionResponse)
        found = list(page.value or [])
        next_link = page.odata_next_link
        while next_link:  # a conversation longer than one page
            more = await w.session.call(f"conversation in {mailbox}", PERMISSION,
                                        lambda u=next_link: messages.with_url(u).get())
            found += more.value or []
            next_link = more.odata_next_link
        out += conversation_records(w, mailbox, cid, found)
    w.stats["conversations"] += len(conversation_ids)
    return out


def conversation_records(w: Walker, mailbox: str, cid: str, messages: list[Message]) -> list[Any]:
    external_id = ids.conversation(mailbox, cid)
    messages = sorted((m for m in messages if not m.is_draft),
                      key=lambda m: (m.sent_date_time or m.received_date_time, m.id or ""))
    said: list[Said] = []
    docs: list[Any] = []
    first_sender: str | None = None
    for m in messages:
        sender = _address(m)
        text = body_text(m.body.content if m.body else "", _content_type(m))
        if first_sender is None:
            first_sender = sender
        if text:
            said.append(Said(author=sender or "", role="user" if sender == first_sender else "assistant", text=text,
                             at=m.sent_date_time))
        if w.settings.mail_as_documents and len(text) >= w.settings.mail_document_min_chars:
            docs.append(Document(external_id=ids.mail_message(mailbox, m.id or ""), title=m.subject or "", text=text, url=m.web_link,
                                 authors=[sender] if sender else [], created_at=m.sent_date_time,
                                 updated_at=m.last_modified_date_time, acl=[f"group:{mailbox.lower()}"],
                                 metadata={"source": "mail", "mailbox": mailbox.lower(), "conversation_id": cid,
                                           "subject": m.subject or ""}))
    if not said:
        return [Tombstone(external_id=external_id, reason="conversation is empty or gone"), *docs]
    subject = (messages[0].subject or "") if messages else ""
    thread = Interaction(external_id=external_id, kind="thread", messages=said, acl=[f"group:{mailbox.lower()}"],
                         metadata={"source": "mail", "mailbox": mailbox.lower(), "conversation_id": cid,
                                   "subject": subject, "messages": len(said)})
    return [thread, *docs]


def _address(m: Message) -> str | None:
    ident = m.from_ or m.sender
    if ident is None or ident.email_address is None:
        return None
    return (ident.email_address.address or ident.email_address.name or "").lower() or None


def _content_type(m: Message) -> str:
    kind = m.body.content_type if m.body else None
    return getattr(kind, "value", kind) or "html"


async def fetch_conversation(w: Walker, mailbox: str, cid: str) -> list[Any]:
    return await read_conversations(w, mailbox, [cid])


async def fetch_message(w: Walker, mailbox: str, message_id: str) -> list[Any]:
    """Re-read one long-form message: its document, or a tombstone when it is gone or short."""
    external_id = ids.mail_message(mailbox, message_id)
    try:
        m = await w.session.call(f"message in {mailbox}", PERMISSION,
                                 lambda: w.client.users.by_user_id(mailbox).messages.by_message_id(message_id).get())
    except NotFound:
        return [Tombstone(external_id=external_id, reason="deleted")]
    records = conversation_records(w, mailbox, m.conversation_id or "", [m])
    return [r for r in records if r.external_id == external_id] or [
        Tombstone(external_id=external_id, reason="not a long-form message")]
