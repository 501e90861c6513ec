"""The generic push source: records arrive by HTTP (`POST /webhooks/{source}`) or `tacit import`.

Its settings say how deliveries are authenticated (Standard Webhooks secrets, several while
rotating; or GitHub's `X-Hub-Signature-256`) and, optionally, how a body that is not in the
record format maps to records (JMESPath, see `connectors.webhook.mapping`). A source with no
secret at all accepts unsigned posts: that is the local, embedded default (the API listens on
127.0.0.1); set a secret before the endpoint is reachable from anywhere else.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from connectors.base import Checkpoint, Connector, SyncGenerator
from connectors.webhook.mapping import JsonMapping
from connectors.webhook.signatures import decode_secret


class WebhookSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", ignored_types=(cached_property,))

    #: Standard Webhooks secret(s), `whsec_…`; several (a list) while rotating keys.
    secret: SecretStr | list[SecretStr] | None = None
    #: GitHub-style `X-Hub-Signature-256` secret, for senders that sign that way.
    github_secret: SecretStr | None = None
    #: Map any JSON to the record format: field name → JMESPath expression (`connectors.webhook.mapping`).
    mapping: dict[str, str] | None = None
    #: Largest accepted body for this source (default: `[api] max_body_bytes`).
    max_body_bytes: int | None = Field(None, ge=1024)
    #: How far `webhook-timestamp` may be from now, in seconds (the spec suggests five minutes).
    tolerance_s: int = Field(300, ge=1)

    @field_validator("secret")
    @classmethod
    def _secrets_decode(cls, value: SecretStr | list[SecretStr] | None) -> SecretStr | list[SecretStr] | None:
        items = value if isinstance(value, list) else [value] if value is not None else []
        if isinstance(value, list) and not value:
            raise ValueError("an empty list of secrets (leave `secret` out to accept unsigned posts)")
        for item in items:
            decode_secret(item.get_secret_value())
        return value

    @field_validator("github_secret")
    @classmethod
    def _github_not_empty(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            raise ValueError("github_secret is empty")
        return value

    @field_validator("mapping")
    @classmethod
    def _mapping_compiles(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None:
            JsonMapping(value)
        return value

    @property
    def signing_keys(self) -> list[bytes]:
        """The HMAC keys of every configured Standard Webhooks secret (old and new while rotating)."""
        items = self.secret if isinstance(self.secret, list) else [self.secret] if self.secret else []
        return [decode_secret(s.get_secret_value()) for s in items]

    @property
    def signed(self) -> bool:
        """Whether deliveries must carry a valid signature (any secret configured)."""
        return bool(self.secret) or self.github_secret is not None

    @cached_property
    def compiled_mapping(self) -> JsonMapping | None:
        return JsonMapping(self.mapping) if self.mapping else None


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
