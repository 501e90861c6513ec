"""Webhook signatures: Standard Webhooks (with key rotation) and GitHub's `X-Hub-Signature-256`.

Standard Webhooks (https://www.standardwebhooks.com, spec: github.com/standard-webhooks/
standard-webhooks/blob/main/spec/standard-webhooks.md): the sender signs
`"{webhook-id}.{webhook-timestamp}.{raw body}"` with HMAC-SHA256, keyed by the base64-decoded
part of the `whsec_…` secret, and sends `webhook-signature: v1,<base64> [v1,<base64> …]`
(several signatures while a key is being rotated). The timestamp (Unix seconds) must be
within a tolerance of now, which bounds replays; the id makes a retried delivery recognisable.

GitHub (docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries) sends
`X-Hub-Signature-256: sha256=<hex HMAC-SHA256(raw body)>` keyed by the raw secret. It carries no
timestamp, so it has no replay protection of its own; `X-GitHub-Delivery` identifies retries.

Everything here works on raw bytes and never raises anything but `SignatureError`, whatever the
headers contain: the comparison is constant-time (`hmac.compare_digest`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Mapping, Sequence

SECRET_PREFIX = "whsec_"
#: A delivery id is stored as `webhook_events.delivery_id` (256 characters, unique per source).
MAX_ID_LENGTH = 256
_ID = re.compile(r"^[\x21-\x7e]{1,256}$")  # printable ASCII, no spaces
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
#: Signatures are 32-byte HMACs; anything much longer in the header is not worth decoding.
_MAX_SIGNATURES = 16


class SignatureError(ValueError):
    """The delivery is not signed by a configured secret (missing, malformed, wrong or expired)."""


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: base64 after the optional `whsec_` prefix."""
    raw = secret.removeprefix(SECRET_PREFIX).strip()
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not a Standard Webhooks secret (whsec_ followed by base64)") from None
    if len(key) < 16:
        raise ValueError("a Standard Webhooks secret must hold at least 16 bytes (whsec_ + base64)")
    return key


def new_secret(nbytes: int = 24) -> str:
    """A fresh random Standard Webhooks secret (`whsec_` + base64 of `nbytes` random bytes)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(nbytes)).decode("ascii")


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `v1,<base64>` signature of one delivery (what a sender puts in `webhook-signature`)."""
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def sign_headers(secret: str, msg_id: str, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers for a delivery signed with `secret` (for senders and tests)."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts),
            "webhook-signature": sign(decode_secret(secret), msg_id, ts, body)}


def verify_standard(keys: Sequence[bytes], headers: Mapping[str, str], body: bytes, *,
                    tolerance_s: int = 300, now: float | None = None) -> str:
    """Check a Standard Webhooks delivery against any of `keys`; returns its `webhook-id`.

    Raises `SignatureError` naming what is wrong: a missing header, a timestamp outside
    ±`tolerance_s`, or no `v1` signature that matches one of the keys.
    """
    msg_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signature = headers.get("webhook-signature")
    if not (msg_id and timestamp and signature):
        missing = [h for h, v in (("webhook-id", msg_id), ("webhook-timestamp", timestamp),
                                  ("webhook-signature", signature)) if not v]
        raise SignatureError(f"missing signature header(s): {', '.join(missing)}")
    if not _ID.match(msg_id):
        raise SignatureError(f"webhook-id must be 1 to {MAX_ID_LENGTH} printable ASCII characters")
    if not _TIMESTAMP.match(timestamp.strip()):
        raise SignatureError("webhook-timestamp must be Unix seconds")
    ts = int(timestamp.strip())
    current = time.time() if now is None else now
    if ts < current - tolerance_s:
        raise SignatureError(f"webhook-timestamp is more than {tolerance_s} s old")
    if ts > current + tolerance_s:
        raise SignatureError(f"webhook-timestamp is more than {tolerance_s} s in the future")
    candidates = _v1_signatures(signature)
    if not candidates:
        raise SignatureError("webhook-signature holds no v1 signature")
    content = f"{msg_id}.{ts}.".encode() + body
    expected = [hmac.new(key, content, hashlib.sha256).digest() for key in keys]
    matched = False
    for given in candidates:
        for want in expected:
            # Compare every pair (no early exit) so timing says nothing about which key matched.
            matched |= hmac.compare_digest(given, want)
    if not matched:
        raise SignatureError("no webhook-signature matches a configured secret")
    return msg_id


def _v1_signatures(header: str) -> list[bytes]:
    """The decoded `v1` signatures of a `webhook-signature` header; malformed entries are ignored."""
    out: list[bytes] = []
    for entry in header.split()[:_MAX_SIGNATURES]:
        version, _, value = entry.partition(",")
        if version != "v1" or not value or len(value) > 128:
            continue
        try:
            out.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            continue
    return out


def verify_github(secret: bytes, header: str | None, body: bytes) -> None:
    """Check GitHub's `X-Hub-Signature-256: sha256=<hex>` header; raises `SignatureError`."""
    if not header:
        raise SignatureError("missing signature header: X-Hub-Signature-256")
    algo, _, digest = header.strip().partition("=")
    if algo != "sha256" or not _HEX64.match(digest):
        raise SignatureError("X-Hub-Signature-256 must be sha256=<64 hex digits>")
    want = hmac.new(secret, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, digest.lower()):
        raise SignatureError("X-Hub-Signature-256 does not match the configured github_secret")


def github_signature(secret: str, body: bytes) -> str:
    """The `X-Hub-Signature-256` value for `body` (for senders and tests)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
