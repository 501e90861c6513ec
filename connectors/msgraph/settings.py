"""Settings and checkpoint of a Microsoft 365 (Microsoft Graph) source."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from connectors.base import Checkpoint

DEFAULT_BASE_URL = "https://graph.microsoft.com"


class GraphSettings(BaseModel):
    """The `[[sources]]` keys of a `kind = "msgraph"` source (secrets are `SecretStr`: never printed)."""

    model_config = ConfigDict(extra="forbid")

    # Client credentials (azure-identity) ...
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    # ... or a bearer token managed elsewhere.
    access_token: SecretStr | None = None
    #: https://graph.microsoft.com, a national cloud (graph.microsoft.us, microsoftgraph.chinacloudapi.cn,
    #: dod-graph.microsoft.us), or a local server for tests.
    base_url: str = DEFAULT_BASE_URL
    #: The Entra authority host for the token endpoint (login.microsoftonline.us for US Gov, or host:port
    #: of a private authority); None means the public cloud's login.microsoftonline.com.
    authority: str | None = None
    #: A PEM file of CA certificates to trust for the authority (a private authority, or the sandbox's).
    ca_bundle: str | None = None
    #: SharePoint sites, as ids or `host:/sites/path`; every document library of each is synced.
    sites: list[str] = []
    #: Microsoft 365 group ids whose drives are synced.
    groups: list[str] = []
    #: Users (id or user principal name) whose OneDrive is synced.
    users: list[str] = []
    #: Mailboxes (address or id) whose mail is synced, folder by folder.
    mailboxes: list[str] = []
    #: Mail folders read in each mailbox (well-known names or folder ids).
    mail_folders: list[str] = ["inbox", "sentitems"]
    #: Microsoft Teams team ids: channel messages and replies, plus the team's files drive.
    teams: list[str] = []
    #: Also write long mail messages as documents (besides the conversation threads).
    mail_as_documents: bool = False
    #: A message at least this long (after quoted history is removed) counts as long-form.
    mail_document_min_chars: int = Field(600, ge=1)
    #: Files larger than this are skipped (and counted); the download stops there too.
    max_file_bytes: int = Field(20 * 1024 * 1024, ge=1)
    #: Requests a second for this tenant (overrides the proactive per-tenant default); tests set it high.
    rate_limit: float | None = Field(None, gt=0)
    #: Seconds one HTTP request may take (connect, each read, write) before it is retried as a timeout.
    timeout_s: float = Field(60.0, gt=0)
    #: Downloads in flight at once within one delta page.
    download_concurrency: int = Field(4, ge=1, le=16)

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        value = value.rstrip("/")
        if value.endswith("/v1.0"):
            value = value[: -len("/v1.0")]
        if not value.startswith(("https://", "http://")):
            raise ValueError("base_url must be an http(s) URL, e.g. https://graph.microsoft.com")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> GraphSettings:
        secret_given = any(v is not None for v in (self.tenant_id, self.client_id, self.client_secret))
        if self.access_token is None and not secret_given:
            raise ValueError("give tenant_id, client_id and client_secret, or access_token")
        if secret_given and not (self.tenant_id and self.client_id and self.client_secret):
            raise ValueError("client credentials need all of tenant_id, client_id and client_secret")
        if not (self.sites or self.groups or self.users or self.mailboxes or self.teams):
            raise ValueError("nothing to sync: give sites, groups, users, mailboxes or teams")
        return self

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/v1.0"


#: The checkpoint layout: 2 added `folders` and `threads`. A version-1 checkpoint has no folder map,
#: so its drives start over (their documents get their folder paths); its channels start over too (their
#: threads were read without their replies and get them, and the thread fingerprints get filled).
CHECKPOINT_VERSION = 2


class GraphCheckpoint(Checkpoint):
    """Delta links per scope; a killed sync resumes from the page it had reached.

    Scope keys: `drive:{drive id}`, `mail:{mailbox}:{folder}`, `channel:{team id}:{channel id}`.

    Size: `folders` holds one entry per *folder* of a drive (not per file): about 60 bytes each, so
    a drive with 20,000 folders adds about 1.2 MB; `threads` holds one entry per channel thread
    (root id and a 12-character fingerprint, about 40 bytes).
    """

    version: int = CHECKPOINT_VERSION
    #: scope -> `@odata.deltaLink` of its last complete round.
    delta: dict[str, str] = {}
    #: scope -> `@odata.nextLink` of a round in progress.
    pending: dict[str, str] = {}
    #: channel scope without delta support -> newest `lastModifiedDateTime` seen (ISO 8601).
    watermarks: dict[str, str] = {}
    #: drive scope -> folder item id -> [parent folder id ("" for the root), name ("" for the root)].
    #: Drive delta items carry no `parentReference.path`, so folder paths are built from these.
    folders: dict[str, dict[str, list[str]]] = {}
    #: channel scope -> root message id -> fingerprint of its replies (ids and change times), so an
    #: incremental sync sees a new, edited or deleted reply in a thread whose root did not change.
    threads: dict[str, dict[str, str]] = {}

    @model_validator(mode="after")
    def _upgrade(self) -> GraphCheckpoint:
        if self.version < 2:
            for table in (self.delta, self.pending, self.watermarks):
                for key in [k for k in table if k.startswith(("drive:", "channel:"))]:
                    del table[key]
            self.version = CHECKPOINT_VERSION
        return self
