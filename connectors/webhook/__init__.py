"""The generic push source: records arrive by HTTP (`POST /webhooks/{source}`) or `tacit import`."""

from connectors.webhook.connector import WebhookConnector
from connectors.webhook.records import read_jsonl, records_from_payload

__all__ = ["WebhookConnector", "read_jsonl", "records_from_payload"]
