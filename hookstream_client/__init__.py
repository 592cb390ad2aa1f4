"""hookstream's consumer side: a client for hosted mode, and a verifier for custom-mode deliveries."""

from __future__ import annotations

from hookstream_client.async_client import AsyncClient
from hookstream_client.client import Client
from hookstream_client.cursor import CursorFile, CursorStore, MemoryCursor
from hookstream_client.errors import (
    ApiError,
    BadRequest,
    Conflict,
    CursorAhead,
    EpochChanged,
    FeedPruned,
    HookstreamError,
    InvalidSignature,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    TransportError,
    Unauthorized,
    Unavailable,
)
from hookstream_client.models import Account, Event, LinesPage, Page, StreamToken, Webhook
from hookstream_client.signing import sign, signed_headers, verify

__version__ = "0.1.0"

__all__ = [
    "Account",
    "ApiError",
    "AsyncClient",
    "BadRequest",
    "Client",
    "Conflict",
    "CursorAhead",
    "CursorFile",
    "CursorStore",
    "EpochChanged",
    "Event",
    "FeedPruned",
    "HookstreamError",
    "InvalidSignature",
    "LinesPage",
    "MemoryCursor",
    "NotFound",
    "Page",
    "PayloadTooLarge",
    "RateLimited",
    "StreamToken",
    "TransportError",
    "Unauthorized",
    "Unavailable",
    "Webhook",
    "sign",
    "signed_headers",
    "verify",
]
