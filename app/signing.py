"""Standard Webhooks signatures (https://www.standardwebhooks.com), as SPEC §8 and §8.1 ask.

Both schemes sign `"{webhook-id}.{webhook-timestamp}.{body}"`, where `body` is the
exact bytes sent: for a compressed delivery, the gzip bytes, so a receiver verifies
what it received before it decompresses anything.

- `hmac-sha256`: `v1,<base64 HMAC-SHA256>` keyed with the secret's bytes (the base64
  after `whsec_`).
- `ed25519`: `v1a,<base64 Ed25519 signature>`. The webhook's stored secret is the
  private key (`whsk_` + base64 of its 32-byte seed), never shown; receivers get the
  public key, `whpk_` + base64 of its raw 32 bytes.

The scheme is told by the secret's prefix, so a previous secret kept through a
rotation signs with the scheme it was made for. During a rotation's overlap the
header holds both signatures, space-separated, the new one first.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import hmac
import secrets
from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

SECRET_PREFIX = "whsec_"
PRIVATE_KEY_PREFIX = "whsk_"
PUBLIC_KEY_PREFIX = "whpk_"
SCHEMES = ("hmac-sha256", "ed25519")


def new_secret(scheme: str = "hmac-sha256") -> str:
    """A fresh secret for the scheme: 24 CSPRNG bytes for HMAC, a 32-byte Ed25519 seed for ed25519."""
    if scheme == "ed25519":
        return PRIVATE_KEY_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def secret_key(secret: str) -> bytes:
    """The key bytes inside a `whsec_` or `whsk_` secret."""
    try:
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX).removeprefix(PRIVATE_KEY_PREFIX), validate=True)
    except binascii.Error:
        raise ValueError("a webhook secret is 'whsec_' or 'whsk_' followed by base64") from None


def public_key(secret: str) -> str:
    """The `whpk_` public key of an Ed25519 webhook's private key."""
    raw = _private_key(secret).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return PUBLIC_KEY_PREFIX + base64.b64encode(raw).decode()


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """One `webhook-signature` entry: `v1,<HMAC>` for a whsec_ secret, `v1a,<Ed25519>` for a whsk_ key."""
    signed = b"%s.%d.%s" % (message_id.encode(), timestamp, body)
    if secret.startswith(PRIVATE_KEY_PREFIX):
        return "v1a," + base64.b64encode(_private_key(secret).sign(signed)).decode()
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_request(
    keys: Sequence[str], message_id: str, envelope: bytes, timestamp: int, *, compressed: bool
) -> tuple[bytes, dict[str, str]]:
    """The body to POST and its headers, signed with each secret in turn (newest first), gzip when `compressed`."""
    # mtime=0: the same envelope always compresses to the same bytes, so retries are byte-identical.
    body = gzip.compress(envelope, mtime=0) if compressed else envelope
    headers = {
        "content-type": "application/json",
        "user-agent": "hookstream",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(secret, message_id, timestamp, body) for secret in keys),
    }
    if compressed:
        headers["content-encoding"] = "gzip"
    return body, headers


def _private_key(secret: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(secret_key(secret))
