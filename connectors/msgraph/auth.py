"""Authentication for the Graph client: azure-identity client credentials, or a static bearer token.

kiota's `AzureIdentityAuthenticationProvider` only attaches a token to hosts in `allowed_hosts`
(so a pre-authenticated download URL on another host never receives it) and only over https,
except for localhost. azure-identity only talks to an https authority; a private authority (or
the sandbox's) is reached with `authority` and trusted with `ca_bundle`, and instance discovery
is then disabled (it would ask login.microsoftonline.com whether the authority is known).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from kiota_abstractions.authentication import (
    AccessTokenProvider,
    AllowedHostsValidator,
    AuthenticationProvider,
    BaseBearerTokenAuthenticationProvider,
)

from connectors.msgraph.settings import GraphSettings


class StaticTokenProvider(AccessTokenProvider):
    """Hands out a token managed elsewhere, only to the Graph host."""

    def __init__(self, token: str, host: str) -> None:
        self._token = token
        self._validator = AllowedHostsValidator([host])

    async def get_authorization_token(self, uri: str,
                                      additional_authentication_context: dict[str, Any] | None = None) -> str:
        return self._token if self._validator.is_url_host_valid(uri) else ""

    def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
        return self._validator

    def __repr__(self) -> str:  # never show the token
        return "StaticTokenProvider(<redacted>)"


def graph_host(settings: GraphSettings) -> str:
    """The host name (no port) tokens may be sent to; kiota compares host names."""
    return (urlsplit(settings.base_url).hostname or "").lower()


def make_credential(settings: GraphSettings) -> Any:
    """The azure-identity credential for client credentials, or None for a static token."""
    if settings.access_token is not None and settings.client_secret is None:
        return None
    from azure.identity import ClientSecretCredential

    assert settings.tenant_id and settings.client_id and settings.client_secret
    kwargs: dict[str, Any] = {}
    if settings.authority:
        kwargs["authority"] = settings.authority
        kwargs["disable_instance_discovery"] = "microsoftonline" not in settings.authority
    if settings.ca_bundle:
        kwargs["connection_verify"] = settings.ca_bundle
    return ClientSecretCredential(settings.tenant_id, settings.client_id,
                                  settings.client_secret.get_secret_value(), **kwargs)


def make_auth_provider(settings: GraphSettings, credential: Any) -> AuthenticationProvider:
    host = graph_host(settings)
    if credential is None:
        assert settings.access_token is not None
        return BaseBearerTokenAuthenticationProvider(StaticTokenProvider(settings.access_token.get_secret_value(),
                                                                         host))
    from kiota_authentication_azure.azure_identity_authentication_provider import (
        AzureIdentityAuthenticationProvider,
    )

    # The `.default` scope names the Graph resource of the cloud the base URL belongs to
    # (https://learn.microsoft.com/graph/deployments#app-registration-and-token-service-root-endpoints).
    scope = f"{settings.base_url}/.default"
    # CAE claims challenges would need a second token request per 401; keep the token plain.
    return AzureIdentityAuthenticationProvider(credential, scopes=[scope], allowed_hosts=[host],
                                               is_cae_enabled=False)
