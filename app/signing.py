"""Standard Webhooks signatures (https://www.standardwebhooks.com), as SPEC §8 asks.

The signature is an HMAC-SHA256 over `"{webhook-id}.{webhook-timestamp}.{body}"`
with the secret's bytes (the base64 after `whsec_`). `body` is the exact bytes
sent: for a compressed delivery, the gzip bytes, so a receiver verifies what it
received before it decompresses anything.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """A fresh `whsec_` secret: 24 bytes from the CSPRNG, base64-encoded."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key inside a `whsec_` secret."""
    try:
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error:
        raise ValueError("a webhook secret is 'whsec_' followed by base64") from None


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: `v1,` and the base64 HMAC-SHA256 of id, timestamp and body."""
    signed = b"%s.%d.%s" % (message_id.encode(), timestamp, body)
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_request(
    secret: str, message_id: str, envelope: bytes, timestamp: int, *, compressed: bool
) -> tuple[bytes, dict[str, str]]:
    """The body to POST and its headers: Standard Webhooks headers, gzip when `compressed`."""
    # mtime=0: the same envelope always compresses to the same bytes, so retries are byte-identical.
    body = gzip.compress(envelope, mtime=0) if compressed else envelope
    headers = {
        "content-type": "application/json",
        "user-agent": "hookstream",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, message_id, timestamp, body),
    }
    if compressed:
        headers["content-encoding"] = "gzip"
    return body, headers
