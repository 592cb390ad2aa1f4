"""Signed stream tokens: how a browser's EventSource, which cannot send `x-api-key`, opens one stream.

A token reads `hst1.<webhook_id>.<expires_ms>.<signature>`, where the signature is
HMAC-SHA256 over everything before it, base64url without padding. It names
one webhook and an expiry, nothing else, so it is safe to put in a URL.

The key comes from the settings, so every process sharing them accepts the
tokens of every other:

- `HOOKSTREAM_STREAM_TOKEN_SECRET` when set;
- else a key derived from `HOOKSTREAM_ADMIN_TOKEN` (derived, so the admin
  token itself never signs anything a customer holds);
- else a random key made at start: tokens then work only on the process that
  issued them, and a warning says so.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass

from app.errors import ExpiredStreamToken, InvalidStreamToken
from app.settings import Settings

logger = logging.getLogger("hookstream.tokens")

_VERSION = "hst1"


@dataclass(frozen=True, slots=True)
class StreamToken:
    """An issued token and the moment (Unix ms) it stops being accepted."""

    token: str
    expires_at_ms: int


def _signature(key: bytes, message: str) -> str:
    digest = hmac.new(key, message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class StreamTokens:
    """Issues and checks the stream tokens of one signing key."""

    def __init__(self, key: bytes, ttl: float) -> None:
        self._key = key
        self.ttl = ttl

    @classmethod
    def from_settings(cls, settings: Settings) -> StreamTokens:
        """The token signer every process with these settings agrees on."""
        if settings.stream_token_secret:
            key = hashlib.sha256(b"hookstream stream tokens\0" + settings.stream_token_secret.encode()).digest()
        elif settings.admin_token:
            key = hmac.new(settings.admin_token.encode(), b"hookstream stream tokens", hashlib.sha256).digest()
        else:
            logger.warning(
                "neither HOOKSTREAM_STREAM_TOKEN_SECRET nor HOOKSTREAM_ADMIN_TOKEN is set: stream tokens are signed"
                " with a random key and only this process accepts them"
            )
            key = secrets.token_bytes(32)
        return cls(key, settings.stream_token_ttl)

    def issue(self, webhook_id: str, now: float | None = None) -> StreamToken:
        """A token for this webhook's stream, valid for the configured TTL."""
        issued = time.time() if now is None else now
        expires_ms = int((issued + self.ttl) * 1000)
        message = f"{_VERSION}.{webhook_id}.{expires_ms}"
        return StreamToken(f"{message}.{_signature(self._key, message)}", expires_ms)

    def webhook_id(self, token: str, now: float | None = None) -> str:
        """The webhook a valid, unexpired token is for; 401 otherwise."""
        message, _, signature = token.rpartition(".")
        parts = message.split(".")
        if (
            len(parts) != 3
            or parts[0] != _VERSION
            or not parts[2].isdigit()
            or not hmac.compare_digest(signature.encode(), _signature(self._key, message).encode())
        ):
            raise InvalidStreamToken(
                "The stream token is not valid; get a new one from POST /v2/webhooks/{id}/stream-token."
            )
        current = time.time() if now is None else now
        if int(parts[2]) <= current * 1000:
            raise ExpiredStreamToken(
                "The stream token has expired; get a new one from POST /v2/webhooks/{id}/stream-token."
            )
        return parts[1]
