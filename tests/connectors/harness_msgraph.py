"""Contract-suite harness for the Microsoft Graph connector: the fake Graph with the sample company.

The source authenticates with client credentials against the sandbox's https token authority
(azure-identity, trusting the sandbox's self-signed CA) and reads files, mail and Teams over HTTP.
"""

from __future__ import annotations

from typing import Any

from connectors.base import Document, Interaction, Tombstone, drive
from connectors.http import HttpBudget
from connectors.msgraph import GraphConnector
from connectors.msgraph.settings import GraphCheckpoint
from connectors.sandbox.graph import GraphSandbox
from connectors.sandbox.graph.workspace import Workspace
from tacit.config import SourceConfig


def toml_list(values: list[str]) -> str:
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"


def source_toml(sb: GraphSandbox, ws: Workspace, name: str, team: str, space_name: str | None = None, *,
                rate_limit: float = 10000, static_token: bool = False, extra: str = "") -> str:
    """A `[[sources]]` block for the sandbox company's `space_name` team, belonging to tacit team `team`."""
    space = ws.teams[space_name or (team if team in ws.teams else "platform")]
    auth = (f'access_token = "{sb.static_token}"\n' if static_token else
            f'tenant_id = "{sb.tenant_id}"\nclient_id = "{sb.client_id}"\nclient_secret = "{sb.client_secret}"\n'
            f'authority = "{sb.authority}"\nca_bundle = "{sb.ca_file}"\n')
    users = [ws.onedrive_user] if space.name == "platform" else []
    return (f'[[sources]]\nname = "{name}"\nkind = "msgraph"\nteam = "{team}"\n{auth}base_url = "{sb.url}"\n'
            f'sites = {toml_list([space.site_ref])}\nusers = {toml_list(users)}\n'
            f'mailboxes = {toml_list([space.mailbox])}\nteams = {toml_list([space.team_id])}\n'
            f'mail_as_documents = true\nrate_limit = {rate_limit}\n{extra}\n')


class GraphHarness:
    kind = "msgraph"

    def __init__(self, sandbox: GraphSandbox, workspace: Workspace) -> None:
        self.sandbox = sandbox
        self.workspace = workspace
        self._spaces: set[str] = set()

    def source_block(self, name: str, team: str) -> str:
        space = team if team in self.workspace.teams else "platform"
        self._spaces.add(space)
        return source_toml(self.sandbox, self.workspace, name, team, space)

    def inject(self, status: int, count: int = 1, retry_after: float | None = None) -> None:
        self.sandbox.inject(status, count, retry_after)

    def expected_ids(self) -> set[str]:
        out: set[str] = set()
        for space in self._spaces:
            out |= self.workspace.expected_ids(space, mail_as_documents=True, onedrive=space == "platform")
        return out

    def requests_served(self) -> int:
        return self.sandbox.requests_served()


def harness(sandbox: tuple[GraphSandbox, Workspace]) -> GraphHarness:
    """The harness over the `msgraph_sandbox` fixture's sandbox and company. A module using it sets
    `GRAPH_PAGE_SIZE = PAGE_SIZE` and `GRAPH_LATENCY = LATENCY`: small pages make many checkpoints,
    so a killed sync has something to resume from."""
    return GraphHarness(*sandbox)


PAGE_SIZE = 4
LATENCY = 0.005


# Direct-connector helpers shared by the Graph sync tests.
def connector(sb: GraphSandbox, ws: Workspace, team: str = "platform", *, static: bool = True,
              **settings: Any) -> GraphConnector:
    space = ws.teams[team]
    auth: dict[str, Any] = ({"access_token": sb.static_token} if static else
                            {"tenant_id": sb.tenant_id, "client_id": sb.client_id, "client_secret": sb.client_secret,
                             "authority": sb.authority, "ca_bundle": sb.ca_file})
    base: dict[str, Any] = {"sites": [space.site_ref], "mailboxes": [space.mailbox], "teams": [space.team_id],
                            "mail_as_documents": True}
    base.update(settings)
    source = SourceConfig(name="m365", kind="msgraph", team="platform", base_url=sb.url, **auth, **base)
    return GraphConnector(source, HttpBudget(f"test:{id(sb)}", rate=None))


def records(items: list[Any]) -> dict[str, Any]:
    return {r.external_id: r for r in items if isinstance(r, Document | Interaction | Tombstone)}


def run(c: GraphConnector, checkpoint: GraphCheckpoint | None = None) -> tuple[list[Any], GraphCheckpoint]:
    c.check()
    items, cp = drive(c.sync(checkpoint))
    return items, cp  # type: ignore[return-value]
