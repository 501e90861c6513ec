from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from connectors.base import Checkpoint, Connector, SyncGenerator


class WebhookSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Standard Webhooks secret(s), `whsec_…`; several (a list) while rotating keys.
    secret: SecretStr | list[SecretStr] | None = None
    #: GitHub-style `X-Hub-Signature-256` secret, for senders that sign that way.
    github_secret: SecretStr | None = None
    #: Map any JSON to the record format: field name → JMESPath expression (see the README).
    mapping: dict[str, str] | None = None
    max_body_bytes: int | None = Field(None, ge=1024)
    tolerance_s: int = Field(300, ge=1)


class WebhookConnector(Connector):
    """A source that is pushed to: nothing to pull, so `sync` only confirms there is nothing."""

    kind: ClassVar[str] = "webhook"
    Settings: ClassVar[type[BaseModel]] = WebhookSettings
    push_only: ClassVar[bool] = True

    def check(self) -> None:
        return None

    def sync(self, checkpoint: Checkpoint | None) -> SyncGenerator:
        return checkpoint or Checkpoint()
        yield  # pragma: no cover  (makes this a generator)

    def fetch(self, external_ids: Sequence[str]):  # type: ignore[no-untyped-def]
        return iter(())
