"""Standard Webhooks signatures: checking a custom-mode delivery, and signing what `listen` forwards.

HMAC (`v1,`) signs `"{webhook-id}.{webhook-timestamp}.{body}"` with the bytes inside a `whsec_`
secret; Ed25519 (`v1a,`) signs the same with the key behind a `whpk_` public key. `body` is the
exact bytes received: for a gzip delivery, the compressed bytes, which are checked first and only
then decompressed (the `standardwebhooks` package decodes the body as text first, so it cannot).
During a secret rotation the header holds several signatures, space-separated; any one that
matches is enough.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from hookstream_client.errors import InvalidSignature

SECRET_PREFIX = "whsec_"
PUBLIC_KEY_PREFIX = "whpk_"
DEFAULT_TOLERANCE = 300.0
# A gzip body may not inflate past this: a small delivery must not become a memory bomb.
MAX_BODY_BYTES = 64 * 1024 * 1024


def new_secret() -> str:
    """A fresh `whsec_` secret: 24 random bytes, base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def _key(secret: str, prefix: str) -> bytes:
    try:
        return base64.b64decode(secret.removeprefix(prefix), validate=True)
    except binascii.Error:
        raise ValueError(f"a key is {prefix!r} followed by base64") from None


def _signed(message_id: str, timestamp: str, body: bytes) -> bytes:
    return b"%s.%s.%s" % (message_id.encode(), timestamp.encode(), body)


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value for `body` under a `whsec_` secret: `v1,` and the base64 HMAC-SHA256."""
    digest = hmac.new(_key(secret, SECRET_PREFIX), _signed(message_id, str(timestamp), body), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secret: str, message_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The Standard Webhooks headers for `body`: `webhook-id`, `webhook-timestamp`, `webhook-signature`."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, message_id, timestamp, body),
    }


def verify(
    body: bytes,
    headers: Mapping[str, str],
    secret: str | Sequence[str],
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> dict[str, Any]:
    """The envelope of a custom-mode delivery once its signature and timestamp check out; else `InvalidSignature`.

    `secret` is a `whsec_` secret (HMAC) or a `whpk_` public key (Ed25519), or several of them (any may match).
    """
    lower = {name.lower(): value for name, value in headers.items()}
    message_id = lower.get("webhook-id")
    timestamp = lower.get("webhook-timestamp")
    signatures = lower.get("webhook-signature")
    if not message_id or not timestamp or not signatures:
        raise InvalidSignature("The delivery lacks a webhook-id, webhook-timestamp or webhook-signature header.")
    if not timestamp.isascii() or not timestamp.isdigit():
        raise InvalidSignature(f"webhook-timestamp is not a Unix time: {timestamp[:40]!r}.")
    skew = (time.time() if now is None else now) - int(timestamp)
    if abs(skew) > tolerance:
        raise InvalidSignature(
            f"webhook-timestamp is {abs(skew):.0f}s {'old' if skew > 0 else 'in the future'}"
            f" (tolerance {tolerance:.0f}s): a replay, or a clock out of step."
        )
    keys = [secret] if isinstance(secret, str) else list(secret)
    signed = _signed(message_id, timestamp, body)
    offered = signatures.split()
    if not any(_matches(key, signed, offered) for key in keys):
        raise InvalidSignature("No signature in webhook-signature matches the secret.")
    if lower.get("content-encoding", "").strip().lower() == "gzip":
        body = _gunzip(body)
    try:
        envelope = json.loads(body)
    except ValueError:
        raise InvalidSignature("The signed body is not JSON.") from None
    if not isinstance(envelope, dict):
        raise InvalidSignature("The signed body is not a JSON object.")
    return envelope


def _matches(key: str, signed: bytes, offered: list[str]) -> bool:
    if key.startswith(PUBLIC_KEY_PREFIX):
        return any(_ed25519_matches(key, signed, value[4:]) for value in offered if value.startswith("v1a,"))
    if not key.startswith(SECRET_PREFIX):
        raise ValueError("a secret starts with 'whsec_' (HMAC) or a public key with 'whpk_' (Ed25519)")
    expected = hmac.new(_key(key, SECRET_PREFIX), signed, hashlib.sha256).digest()
    for value in offered:
        if value.startswith("v1,"):
            try:
                given = base64.b64decode(value[3:], validate=True)
            except binascii.Error:
                continue
            if hmac.compare_digest(given, expected):
                return True
    return False


def _ed25519_matches(public_key: str, signed: bytes, signature: str) -> bool:
    try:
        from cryptography.exceptions import InvalidSignature as BadEd25519
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:
        raise ImportError(
            "verifying Ed25519 (v1a) signatures needs the cryptography package:"
            " pip install 'hookstream-client[ed25519]'"
        ) from None
    raw = _key(public_key, PUBLIC_KEY_PREFIX)
    if len(raw) != 32:
        raise ValueError("a whpk_ public key is the base64 of 32 raw bytes")
    try:
        given = base64.b64decode(signature, validate=True)
    except binascii.Error:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(raw).verify(given, signed)
    except BadEd25519:
        return False
    return True


def _gunzip(body: bytes) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, MAX_BODY_BYTES + 1)
    except zlib.error:
        raise InvalidSignature("The body says gzip but is not valid gzip.") from None
    if len(out) > MAX_BODY_BYTES or inflater.unconsumed_tail:
        raise InvalidSignature(f"The gzip body inflates past {MAX_BODY_BYTES} bytes.")
    if not inflater.eof:
        raise InvalidSignature("The gzip body is truncated.")
    return out
