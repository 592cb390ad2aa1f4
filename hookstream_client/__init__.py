"""hookstream's consumer side: a client for hosted mode, and a verifier for custom-mode deliveries."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from hookstream_client.async_client import AsyncClient
    from hookstream_client.client import Client

__version__ = "0.1.0"


if not TYPE_CHECKING:  # type checkers see the imports above, and keep flagging names that do not exist

    def __getattr__(name: str) -> Any:
        """`Client` and `AsyncClient`, imported on first use: they bring httpx, which `export` does without."""
        if name == "Client":
            from hookstream_client.client import Client

            return Client
        if name == "AsyncClient":
            from hookstream_client.async_client import AsyncClient

            return AsyncClient
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
