"""Identifiers: webhook ids, sortable event ids, API keys."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import time

_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def webhook_id() -> str:
    """24 lowercase hex characters."""
    return secrets.token_hex(12)


def event_id() -> str:
    """`evt_` and a ULID: 48 bits of milliseconds then 80 random bits, Crockford base32, so ids sort by time."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    # 130 bits (two leading zeros) at the top of 17 bytes: the first 26 base32 digits are the ULID.
    return "evt_" + base64.b32encode((value << 6).to_bytes(17, "big"))[:26].translate(_CROCKFORD).decode()


def account_id() -> str:
    """`acc_` and 16 random hex characters."""
    return "acc_" + secrets.token_hex(8)


def api_key_id() -> str:
    return "key_" + secrets.token_hex(8)


def api_key_secret() -> str:
    """The secret a customer sends as `x-api-key`; shown once, stored hashed."""
    return "hk_" + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> bytes:
    """SHA-256 of a high-entropy secret: enough against offline guessing, and cheap per request."""
    return hashlib.sha256(secret.encode()).digest()
