"""Microsoft 365 through Microsoft Graph: SharePoint/OneDrive files, Outlook mail, Teams channels.

    [[sources]]
    name = "m365"
    kind = "msgraph"
    team = "platform"
    tenant_id = "${AZURE_TENANT_ID}"          # client credentials (azure-identity) ...
    client_id = "${AZURE_CLIENT_ID}"
    client_secret = "${AZURE_CLIENT_SECRET}"
    # access_token = "${GRAPH_TOKEN}"         # ... or a bearer token managed elsewhere
    base_url = "https://graph.microsoft.com"  # or a national cloud: https://graph.microsoft.us, ...
    # authority = "login.microsoftonline.us"  # the token authority of that cloud
    sites = ["contoso.sharepoint.com:/sites/eng"]
    mailboxes = ["eng-help@contoso.com"]
    teams = ["<team id>"]
    mail_as_documents = true

Application permissions (admin consent) the app needs for what it reads: `Sites.Read.All` (sites,
their drives, files and permissions; `Files.Read.All` is enough for group and user drives),
`Mail.Read` (mailboxes), `Team.ReadBasic.All`, `Channel.ReadBasic.All` and
`ChannelMessage.Read.All` (Teams). A 401/403 names the permission the failing call needs.

Change notifications: `connectors.msgraph.webhooks` (routes, subscriptions, processing).
"""

from connectors.msgraph.connector import GraphConnector

__all__ = ["GraphConnector"]
