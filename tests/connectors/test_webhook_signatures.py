"""Standard Webhooks and GitHub signatures: published vectors, rotation, tolerance, hostile headers."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from connectors.webhook.signatures import (
    SignatureError,
    decode_secret,
    github_signature,
    new_secret,
    sign,
    sign_headers,
    verify_github,
    verify_standard,
)

# https://github.com/standard-webhooks/standard-webhooks (libraries' shared test vector)
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TIMESTAMP = 1614265330
BODY = b'{"test": 2432232314}'
EXPECTED = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
OTHER = "whsec_" + base64.b64encode(b"another-secret-of-32-bytes-long!").decode()


def headers(signature: str, timestamp: int = TIMESTAMP, msg_id: str = MSG_ID) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


def test_published_vector_signs_and_verifies() -> None:
    key = decode_secret(SECRET)
    assert sign(key, MSG_ID, TIMESTAMP, BODY) == EXPECTED
    assert verify_standard([key], headers(EXPECTED), BODY, now=TIMESTAMP) == MSG_ID
    # The reference library agrees on the same vector.
    from datetime import UTC, datetime

    assert Webhook(SECRET).sign(MSG_ID, datetime.fromtimestamp(TIMESTAMP, tz=UTC), BODY.decode()) == EXPECTED


def test_a_changed_body_id_or_timestamp_fails() -> None:
    key = decode_secret(SECRET)
    with pytest.raises(SignatureError, match="no webhook-signature matches"):
        verify_standard([key], headers(EXPECTED), b'{"test": 2432232315}', now=TIMESTAMP)
    with pytest.raises(SignatureError, match="no webhook-signature matches"):
        verify_standard([key], headers(EXPECTED, msg_id="msg_other"), BODY, now=TIMESTAMP)
    with pytest.raises(SignatureError, match="no webhook-signature matches"):
        verify_standard([key], headers(EXPECTED, timestamp=TIMESTAMP + 1), BODY, now=TIMESTAMP)


def test_rotation_any_configured_key_and_any_listed_signature() -> None:
    old, new = decode_secret(SECRET), decode_secret(OTHER)
    new_sig = sign(new, MSG_ID, TIMESTAMP, BODY)
    both = f"{new_sig} {EXPECTED}"
    # The receiver knows both keys: a delivery signed by either passes.
    assert verify_standard([new, old], headers(EXPECTED), BODY, now=TIMESTAMP) == MSG_ID
    assert verify_standard([new, old], headers(new_sig), BODY, now=TIMESTAMP) == MSG_ID
    # The sender signs with both: a receiver that knows only one key passes.
    assert verify_standard([old], headers(both), BODY, now=TIMESTAMP) == MSG_ID
    assert verify_standard([new], headers(both), BODY, now=TIMESTAMP) == MSG_ID
    # Once the old key is dropped, its signature alone no longer passes.
    with pytest.raises(SignatureError):
        verify_standard([new], headers(EXPECTED), BODY, now=TIMESTAMP)


@pytest.mark.parametrize("offset, message", [(-301, "old"), (301, "future")])
def test_timestamp_outside_tolerance_is_refused(offset: int, message: str) -> None:
    key = decode_secret(SECRET)
    with pytest.raises(SignatureError, match=message):
        verify_standard([key], headers(EXPECTED), BODY, now=TIMESTAMP - offset)
    # Inside the tolerance (and a custom one) it passes.
    assert verify_standard([key], headers(EXPECTED), BODY, now=TIMESTAMP - offset // 2) == MSG_ID
    assert verify_standard([key], headers(EXPECTED), BODY, now=TIMESTAMP - offset, tolerance_s=400) == MSG_ID


def test_missing_and_malformed_headers_name_the_problem() -> None:
    key = decode_secret(SECRET)
    with pytest.raises(SignatureError, match="missing signature header.*webhook-signature"):
        verify_standard([key], {"webhook-id": MSG_ID, "webhook-timestamp": str(TIMESTAMP)}, BODY, now=TIMESTAMP)
    with pytest.raises(SignatureError, match="Unix seconds"):
        verify_standard([key], headers(EXPECTED, timestamp="soon"), BODY, now=TIMESTAMP)  # type: ignore[arg-type]
    with pytest.raises(SignatureError, match="no v1 signature"):
        verify_standard([key], headers("v2,abc v1 v1,!!!"), BODY, now=TIMESTAMP)
    with pytest.raises(SignatureError, match="printable ASCII"):
        verify_standard([key], headers(EXPECTED, msg_id="x" * 300), BODY, now=TIMESTAMP)
    # Garbage beside a good signature does not hide it.
    assert verify_standard([key], headers(f"v1,@@@ v0,xyz {EXPECTED}"), BODY, now=TIMESTAMP) == MSG_ID


def test_sign_headers_round_trip() -> None:
    h = sign_headers(SECRET, "msg_1", BODY)
    assert verify_standard([decode_secret(SECRET)], h, BODY) == "msg_1"


def test_a_new_secret_signs_what_the_reference_library_verifies() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_") and len(decode_secret(secret)) == 24 and new_secret() != secret
    h = sign_headers(secret, "msg_new", BODY)
    assert Webhook(secret).verify(BODY, h) == {"test": 2432232314}


@pytest.mark.parametrize("bad", ["whsec_", "whsec_!!!!", "whsec_c2hvcnQ=", ""])
def test_bad_secrets_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        decode_secret(bad)


def test_github_published_vector() -> None:
    # docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries#testing-the-webhook-payload-validation
    secret, body = "It's a Secret to Everybody", b"Hello, World!"
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert github_signature(secret, body) == expected
    verify_github(secret.encode(), expected, body)
    verify_github(secret.encode(), expected.upper().replace("SHA256", "sha256"), body)
    with pytest.raises(SignatureError, match="does not match"):
        verify_github(secret.encode(), expected, body + b"!")
    with pytest.raises(SignatureError, match="missing"):
        verify_github(secret.encode(), None, body)
    with pytest.raises(SignatureError, match="64 hex"):
        verify_github(secret.encode(), "sha1=abc", body)


header_text = st.one_of(st.none(), st.text(max_size=300), st.from_regex(r"v1,[A-Za-z0-9+/=]{0,60}( v1,[A-Za-z0-9+/=]{0,60})*"))


@settings(max_examples=300, deadline=None)
@given(msg_id=header_text, timestamp=st.one_of(header_text, st.integers().map(str)), signature=header_text,
       body=st.binary(max_size=200))
def test_hostile_headers_only_ever_raise_signature_error(msg_id: str | None, timestamp: str | None,
                                                          signature: str | None, body: bytes) -> None:
    given_headers = {k: v for k, v in (("webhook-id", msg_id), ("webhook-timestamp", timestamp),
                                        ("webhook-signature", signature)) if v is not None}
    with pytest.raises(SignatureError):
        verify_standard([decode_secret(SECRET)], given_headers, body, now=TIMESTAMP)
    with pytest.raises(SignatureError):
        verify_github(b"secret", signature, body)
