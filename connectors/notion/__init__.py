"""The Notion connector (API version 2025-09-03): pages, data-source rows and discussions."""

from connectors.notion.checkpoint import NotionCheckpoint
from connectors.notion.connector import NotionConnector, NotionSettings

__all__ = ["NotionCheckpoint", "NotionConnector", "NotionSettings"]
