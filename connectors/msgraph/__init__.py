"""Microsoft 365 through Microsoft Graph: SharePoint/OneDrive files, Outlook mail, Teams channels."""

from connectors.msgraph.connector import GraphConnector

__all__ = ["GraphConnector"]
