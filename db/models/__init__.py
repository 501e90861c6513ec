"""The corpus and its derived data, one module per aggregate."""

from db.models.adapter import Adapter, AdapterLineage
from db.models.corpus import Document, Interaction
from db.models.events import WebhookEvent
from db.models.keys import ApiKey, Completion
from db.models.processing import Chunk, Example
from db.models.source import ItemFailure, Source, SyncRun
from db.models.team import Team

__all__ = [
    "Adapter",
    "AdapterLineage",
    "ApiKey",
    "Chunk",
    "Completion",
    "Document",
    "Example",
    "Interaction",
    "ItemFailure",
    "Source",
    "SyncRun",
    "Team",
    "WebhookEvent",
]
