"""External ids of the records the Graph connector writes, and their parsing for `fetch()`.

    driveitem:{drive id}/{item id}                     a file (Document)
    mail:{mailbox}/conversation/{conversation id}       a mail conversation (Interaction, kind thread)
    mail:{mailbox}/message/{message id}                 a long-form mail (Document, when switched on)
    teams:{team id}/{channel id}/{root message id}      a channel thread (Interaction, kind thread)

Graph ids never contain "/" except conversation and message ids (base64), which come last.
"""

from __future__ import annotations

from typing import NamedTuple


class ParsedId(NamedTuple):
    kind: str  # driveitem | conversation | message | channel
    parts: tuple[str, ...]


def drive_item(drive_id: str, item_id: str) -> str:
    return f"driveitem:{drive_id}/{item_id}"


def conversation(mailbox: str, conversation_id: str) -> str:
    return f"mail:{mailbox.lower()}/conversation/{conversation_id}"


def mail_message(mailbox: str, message_id: str) -> str:
    return f"mail:{mailbox.lower()}/message/{message_id}"


def channel_thread(team_id: str, channel_id: str, message_id: str) -> str:
    return f"teams:{team_id}/{channel_id}/{message_id}"


def parse(external_id: str) -> ParsedId | None:
    """The kind and parts of an id written by this connector; None for anything else."""
    prefix, _, rest = external_id.partition(":")
    if prefix == "driveitem":
        drive_id, _, item_id = rest.partition("/")
        return ParsedId("driveitem", (drive_id, item_id)) if drive_id and item_id else None
    if prefix == "mail":
        mailbox, _, tail = rest.partition("/")
        what, _, ident = tail.partition("/")
        if mailbox and ident and what in ("conversation", "message"):
            return ParsedId(what, (mailbox, ident))
        return None
    if prefix == "teams":
        parts = rest.split("/")
        return ParsedId("channel", tuple(parts)) if len(parts) == 3 and all(parts) else None
    return None
