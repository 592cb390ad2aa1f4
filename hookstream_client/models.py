"""What the client returns: events, feed pages, webhooks and accounts, as plain records."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    """One event of a webhook's feed: the envelope of SPEC §3."""

    id: str
    seq: int
    type: str
    account_id: str
    timestamp: str
    version: str
    data: dict[str, Any]

    @classmethod
    def from_json(cls, envelope: dict[str, Any]) -> Event:
        return cls(
            id=envelope["id"],
            seq=envelope["seq"],
            type=envelope["type"],
            account_id=envelope["account_id"],
            timestamp=envelope["timestamp"],
            version=envelope["version"],
            data=envelope["data"],
        )

    def to_json(self) -> dict[str, Any]:
        """The envelope, keys in the server's order."""
        return {
            "id": self.id,
            "seq": self.seq,
            "type": self.type,
            "account_id": self.account_id,
            "timestamp": self.timestamp,
            "version": self.version,
            "data": self.data,
        }


@dataclass(frozen=True)
class Page:
    """One polling page: events after the cursor, whether more follow, the log's epoch."""

    events: list[Event]
    has_more: bool
    last_seq: int | None
    epoch: str
    pruned: bool = False


@dataclass(frozen=True)
class LinesPage:
    """One polling page as JSON Lines: each envelope on a line of its own, as the server stored it.

    `lines` is empty or ends with a newline, so pages written one after another make one JSON Lines file.
    """

    lines: bytes
    count: int
    first_seq: int | None
    last_seq: int | None
    has_more: bool
    epoch: str
    pruned: bool = False

    def events(self) -> list[Event]:
        """The page's events, parsed."""
        return [Event.from_json(json.loads(line)) for line in self.lines.splitlines()]


@dataclass(frozen=True)
class Webhook:
    """A webhook as the server describes it; `raw` holds every field, including ones added later."""

    webhook_id: str
    account_id: str
    mode: str
    events: list[str]
    is_active: bool
    stream_url: str
    events_url: str
    url: str | None = None
    secret: str | None = None
    status: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Webhook:
        return cls(
            webhook_id=data["webhook_id"],
            account_id=data["account_id"],
            mode=data["mode"],
            events=list(data.get("events", [])),
            is_active=bool(data.get("is_active")),
            stream_url=data.get("stream_url", ""),
            events_url=data.get("events_url", ""),
            url=data.get("url"),
            secret=data.get("secret"),
            status=data.get("status"),
            raw=data,
        )


@dataclass(frozen=True)
class Account:
    """A connected account and its monitor's state; `raw` holds every field."""

    account_id: str
    name: str | None
    connector: str | None
    monitoring: str
    active_webhooks: int
    status_reason: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Account:
        return cls(
            account_id=data["account_id"],
            name=data.get("name"),
            connector=data.get("connector"),
            monitoring=data.get("monitoring", "idle"),
            active_webhooks=int(data.get("active_webhooks", 0)),
            status_reason=data.get("status_reason"),
            raw=data,
        )


@dataclass(frozen=True)
class StreamToken:
    """A token for one webhook's stream, for a browser's EventSource."""

    token: str
    expires_at: str
    stream_url: str
