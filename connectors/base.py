"""The connector contract: records, checkpoints, errors and the `Connector` base class.

A connector is pure: it talks to its source through `connectors.http` and yields records.
It knows nothing of the database, Celery or training. The runner owns transactions.

`sync()` is a generator that yields `Document`, `Interaction`, `Tombstone` or `Failure`
records and *returns* the next checkpoint (read it from `StopIteration.value`, or use
`drive()`). A connector may also yield a `CheckpointMark` between records: a checkpoint
that is safe to persist once every record yielded before it is stored, so a crashed sync
resumes from there instead of from the start.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from connectors.http import HttpBudget


# --------------------------------------------------------------------------- storable text
def clean_text(value: str) -> str:
    """Without NUL characters and lone surrogates: what every database can store."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value


def clean_strings(value: Any) -> Any:
    """`value` with `clean_text` applied to every string inside it (lists, dicts, records), recursively.

    Returns the very same object when nothing needed cleaning, so the common case copies nothing.
    """
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, list):
        items = [clean_strings(v) for v in value]
        return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
    if isinstance(value, dict):
        pairs = [(clean_strings(k), clean_strings(v)) for k, v in value.items()]
        changed = any(k2 is not k or v2 is not v for (k2, v2), (k, v) in zip(pairs, value.items(), strict=True))
        return dict(pairs) if changed else value
    if isinstance(value, BaseModel):
        changes = {k: c for k, v in value.__dict__.items() if (c := clean_strings(v)) is not v}
        return value.model_copy(update=changes) if changes else value
    return value


#: What a team or source name may be (it appears in URLs, paths and Celery task arguments).
NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"


class SourceConfig(BaseModel):
    """The keys every source has; each connector validates its own extra keys (`Settings`)."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(pattern=NAME_PATTERN)
    kind: str
    team: str
    schedule: str | None = None
    enabled: bool = True

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


# --------------------------------------------------------------------------- errors
class ConnectorError(Exception):
    """Base of every error a connector raises (never for one bad item: yield a Failure)."""

    retryable: ClassVar[bool] = False


class AuthError(ConnectorError):
    """The credentials were refused or lack a permission; retrying will not help."""


class ConfigError(ConnectorError):
    """The source's settings are wrong (unknown site, missing key); retrying will not help."""


class TransientError(ConnectorError):
    """The source failed in a way that may pass (5xx after retries, timeouts, rate limits)."""

    retryable = True


class CheckpointExpired(ConnectorError):
    """A stored cursor is no longer accepted (e.g. Graph 410 Gone): restart that part from scratch."""


# --------------------------------------------------------------------------- records
MAX_ID_BYTES = 1024  # PostgreSQL's unique index refuses much longer keys (~2.7 kB a row)


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)

    external_id: str = Field(min_length=1, max_length=1024)

    @field_validator("external_id")
    @classmethod
    def _id_fits(cls, value: str) -> str:
        if len(value.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
            raise ValueError(f"external_id is longer than {MAX_ID_BYTES} bytes")
        if "\x00" in value:
            raise ValueError("external_id contains a NUL character")
        return value


class Document(_Record):
    type: Literal["document"] = "document"
    title: str = ""
    text: str = ""  # Markdown
    url: str | None = None
    authors: list[str] = []
    created_at: datetime | None = None
    updated_at: datetime | None = None
    parent_external_id: str | None = None
    acl: list[str] = []  # principals: "team:platform", "user:ada@example.com", "group:…", "public"
    metadata: dict[str, Any] = {}

    @field_validator("text", "title")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        return clean_text(value)

    def content_hash(self) -> str:
        """Hash of everything that, when changed, makes a new version of the document."""
        payload = {
            "title": self.title,
            "text": self.text,
            "url": self.url,
            "authors": self.authors,
            "parent": self.parent_external_id,
            "acl": sorted(self.acl),
            "metadata": self.metadata,
        }
        return _hash(payload)


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    author: str = ""
    role: Literal["user", "assistant", "other"] = "other"
    text: str
    at: datetime | None = None

    @field_validator("text")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        return clean_text(value)


class Interaction(_Record):
    type: Literal["interaction"] = "interaction"
    kind: Literal["comment", "thread", "chat", "feedback"]
    messages: list[Message] = Field(min_length=1)
    document_external_id: str | None = None
    rating: float | None = None  # feedback: -1..1 or 1..5, as the source gives it
    correction: str | None = None  # feedback: the answer the user says was right
    acl: list[str] = []
    metadata: dict[str, Any] = {}

    def content_hash(self) -> str:
        return _hash(self.model_dump(mode="json", exclude={"type", "external_id"}))


class Tombstone(_Record):
    type: Literal["tombstone"] = "tombstone"
    reason: str | None = None


class Failure(BaseModel):
    """One item could not be read. Yielded, never raised: the rest of the sync goes on."""

    type: Literal["failure"] = "failure"
    external_id: str | None = None
    message: str
    retryable: bool = False


class CheckpointMark(BaseModel):
    """A checkpoint that may be persisted once every record yielded before it is stored."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    checkpoint: BaseModel


Record = Document | Interaction | Tombstone | Failure
RECORD_TYPES: dict[str, type[BaseModel]] = {
    "document": Document,
    "interaction": Interaction,
    "tombstone": Tombstone,
}


def parse_record(data: Any) -> Document | Interaction | Tombstone:
    """Parse one object of the record format; raises `ValueError` with a readable reason."""
    if not isinstance(data, dict):
        raise ValueError("a record must be a JSON object")
    kind = data.get("type")
    cls = RECORD_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"unknown record type {kind!r} (expected document, interaction or tombstone)")
    from pydantic import ValidationError

    try:
        return cls.model_validate(data)  # type: ignore[return-value]
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "record"
        raise ValueError(f"{loc}: {err['msg']}") from None


def _hash(payload: Any) -> str:
    raw = json.dumps(payload, sort_keys=True, default=str, ensure_ascii=False).encode()
    return hashlib.sha256(raw).hexdigest()


# --------------------------------------------------------------------------- connector
class Checkpoint(BaseModel):
    """Base of connector checkpoints: small, versioned, JSON-serialisable."""

    model_config = ConfigDict(extra="forbid")
    version: int = 1


class NoSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")


SyncGenerator = Generator["Record | CheckpointMark", None, Checkpoint]


@dataclass(frozen=True)
class BeatEntry:
    """A periodic Celery task a connector needs (e.g. renewing webhook subscriptions)."""

    name: str
    task: str  # a Celery task name the connector's platform module registers
    cron: str  # five cron fields, UTC
    args: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Contributions:
    """What a connector adds to the platform besides syncing (`Connector.contributes`), found through the registry.

    `routers` are FastAPI routers mounted by `tacit serve` before the generic webhook route;
    `event_handlers` map a stored webhook event's channel to the function that turns it into
    records (called as `handler(ctx, event, source_name)`); `beat` lists the periodic tasks for
    the configured sources of this kind (given them and `[api] public_url`); `status` adds
    fields to `tacit sources show` and the admin API (called as `status(ctx, source_name)`).
    """

    routers: tuple[Any, ...] = ()
    event_handlers: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    beat: Callable[[Sequence[SourceConfig], str | None], list[BeatEntry]] | None = None
    status: Callable[[Any, str], dict[str, Any]] | None = None


NO_CONTRIBUTIONS = Contributions()


class Connector(ABC):
    """A source kind. Subclasses are listed under the `tacit.connectors` entry points (`connectors.registry`)."""

    kind: ClassVar[str]
    Checkpoint: ClassVar[type[Checkpoint]] = Checkpoint
    Settings: ClassVar[type[BaseModel]] = NoSettings
    #: Sources of this kind are pushed to (webhooks, import) rather than pulled.
    push_only: ClassVar[bool] = False
    #: Requests a second (None: unlimited) and burst, shared by every source with the same
    #: credentials (`HttpBudget`); a source's `rate_limit` setting overrides the rate.
    rate_limit: ClassVar[tuple[float | None, int]] = (None, 1)

    #: Where this kind's `Contributions` are, as "module:attribute" (entry-point syntax), or None.
    #: The registry resolves it when the platform asks (`connectors.registry.contributions`), so
    #: a vendor's platform half — webhook routes on the web and worker layers — stays out of a
    #: sync or a configuration check, and the pure connector never imports upward.
    contributes: ClassVar[str | None] = None

    def __init__(self, source: SourceConfig, http: HttpBudget) -> None:
        self.source = source
        self.http = http
        self.settings = self.Settings.model_validate(source.settings)

    @abstractmethod
    def check(self) -> None:
        """Verify credentials and settings; raises AuthError / ConfigError, never retried."""

    @abstractmethod
    def sync(self, checkpoint: Checkpoint | None) -> SyncGenerator:
        """Yield every record changed since `checkpoint`; return the next checkpoint."""

    def fetch(self, external_ids: Sequence[str]) -> Iterator[Record]:
        """Re-read the given items (after a webhook signal); gone items are tombstones."""
        raise NotImplementedError(f"{self.kind} connector cannot fetch single items")

    def load_checkpoint(self, raw: dict[str, Any] | None) -> Checkpoint | None:
        """Parse a stored checkpoint; one of an older version (or unreadable) means start over."""
        if not raw:
            return None
        try:
            checkpoint = self.Checkpoint.model_validate(raw)
        except Exception:
            return None
        if checkpoint.version != self.Checkpoint().version if _has_defaults(self.Checkpoint) else False:
            return None
        return checkpoint


def _has_defaults(cls: type[BaseModel]) -> bool:
    return all(not f.is_required() for f in cls.model_fields.values())


def drive(gen: SyncGenerator) -> tuple[list[Record | CheckpointMark], Checkpoint]:
    """Run a sync generator to the end (for tests): the records and the returned checkpoint."""
    items: list[Record | CheckpointMark] = []
    while True:
        try:
            items.append(next(gen))
        except StopIteration as stop:
            return items, stop.value
