"""Signed deliveries to a running API server's generic webhook route (shared by the server and stack tests)."""

from __future__ import annotations

import json

import httpx

from connectors.webhook.signatures import sign_headers

#: The Standard Webhooks test vector's secret; the `assistant` source is configured with it.
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TOKEN = "server-test-token"


def post_signed(port: int, msg_id: str, record: dict) -> httpx.Response:  # type: ignore[type-arg]
    raw = json.dumps(record).encode()
    return httpx.post(f"http://127.0.0.1:{port}/webhooks/assistant", content=raw, timeout=30,
                      headers={"content-type": "application/json", **sign_headers(SECRET, msg_id, raw)})
