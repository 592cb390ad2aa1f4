"""Identifiers: webhook ids, sortable event ids, API keys."""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import secrets
import time

_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789ABCDEFGHJKMNPQRSTVWXYZ")
# Any byte as the Crockford digit of its low 5 bits.
_RANDOM_DIGITS = bytes(b"0123456789ABCDEFGHJKMNPQRSTVWXYZ"[byte & 31] for byte in range(256))


def webhook_id() -> str:
    """24 lowercase hex characters."""
    return secrets.token_hex(12)


def event_id() -> str:
    """`evt_` and a ULID: 48 bits of milliseconds then 80 random bits, Crockford base32, so ids sort by time.

    The 26 digits are 2 zero bits and the 48 time bits (10 digits), then 16 random digits
    of 5 bits each: 16 random bytes, each keeping its low 5 bits (256 is a multiple of 32, so
    every digit is uniform). Ingest mints one per event, so the time digits are made once per
    millisecond and the random ones are a single `translate`.
    """
    return _time_digits(time.time_ns() // 1_000_000) + os.urandom(16).translate(_RANDOM_DIGITS).decode()


@functools.lru_cache(maxsize=4)
def _time_digits(millis: int) -> str:
    # 48 bits shifted up by 6 fill 7 bytes; their first 10 base32 digits are the 50 bits 0 0 t47 … t0.
    return "evt_" + base64.b32encode((millis << 6).to_bytes(7, "big"))[:10].translate(_CROCKFORD).decode()


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
