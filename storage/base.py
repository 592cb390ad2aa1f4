"""The storage interface the app depends on, and the records that cross it.

Every backend keeps one append-only, sequenced event log plus the small
tables around it (API keys, accounts, webhooks). The central decision:
a webhook's feed is materialized at append time. When an event is appended,
the backend inserts one `feed` row for every webhook of that account that is
active and whose filter matches *at that moment*, in the same transaction
as the event. A feed read is then one index range scan on (webhook_id, seq),
which costs the same at 10 million events as at 10 thousand, and a webhook
that only wants a rare type never scans past the common ones.

Seq is assigned by the backend inside the append transaction, in commit
order, so a reader that has seen seq N has seen every event before it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

# Does this webhook filter (already normalized) match this event type?
FeedMatcher = Callable[[tuple[str, ...], str], bool]


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A customer's credential; the secret itself is never stored."""

    id: str
    name: str
    prefix: str
    created_at: int
    revoked_at: int | None


@dataclass(frozen=True, slots=True)
class Account:
    """A connected account owned by one API key."""

    id: str
    api_key_id: str
    name: str | None
    connector: str
    created_at: int
    active_webhooks: int


@dataclass(frozen=True, slots=True)
class Webhook:
    """A subscription of one account to a filtered feed of its events."""

    id: str
    account_id: str
    api_key_id: str
    url: str | None
    secret: str | None
    events: tuple[str, ...]
    compressed_delivery: bool
    is_active: bool
    status: str
    created_at: int
    updated_at: int

    @property
    def mode(self) -> str:
        return "hosted" if self.url is None else "custom"


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event about to be appended, serialized except for its seq.

    The envelope is `head + str(seq) + tail`, so the backend stores the exact
    bytes every reader sends and nobody re-serializes an event after append.
    """

    id: str
    type: str
    head: bytes
    tail: bytes

    def envelope(self, seq: int) -> bytes:
        return b"%b%d%b" % (self.head, seq, self.tail)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One record of the log, as readers get it."""

    seq: int
    id: str
    account_id: str
    type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Appended:
    """What an append did for one submitted event."""

    id: str
    seq: int
    created: bool


@dataclass(frozen=True, slots=True)
class Committed:
    """A newly committed event and the webhooks whose feeds it joined."""

    event: StoredEvent
    webhook_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AppendResult:
    """The outcome of one append call: per submitted event, and what is new."""

    appended: tuple[Appended, ...]
    committed: tuple[Committed, ...]


@dataclass(frozen=True, slots=True)
class FeedPage:
    """A page of one webhook's feed."""

    events: tuple[StoredEvent, ...]
    has_more: bool


@dataclass(frozen=True, slots=True)
class LogState:
    """Where the log stands: its identity and its bounds."""

    epoch: str
    head_seq: int
    pruned_through: int


@dataclass(frozen=True, slots=True)
class WebhookChange:
    """A webhook after a change, and how many active webhooks its account has now."""

    webhook: Webhook
    account_active_webhooks: int


class StorageError(Exception):
    """Base of the errors a backend raises for the app to translate."""


class AccountNotMonitored(StorageError):
    """The account has no active webhook, so nothing may be appended to it."""


class AccountExists(StorageError):
    """An account with that id already exists."""


class UnknownAccount(StorageError):
    """No such account."""


class EventIdConflict(StorageError):
    """A producer-given event id already belongs to another account's event."""

    def __init__(self, event_id: str) -> None:
        super().__init__(event_id)
        self.event_id = event_id


class LogNotifier(Protocol):
    """Called once per commit with the events it made visible, in seq order."""

    def __call__(self, committed: Sequence[Committed], head_seq: int) -> None: ...


class Storage(Protocol):
    """A hookstream backend. One instance per process; safe for concurrent tasks."""

    async def open(self) -> None:
        """Connect, run pending migrations, and start background workers."""

    async def close(self) -> None:
        """Finish pending writes and release every connection."""

    def subscribe(self, notifier: LogNotifier) -> None:
        """Call `notifier` after each commit that appends events (in this process or, where the backend can, any)."""

    async def ping(self) -> None:
        """Raise if the database cannot be reached."""

    async def log_state(self) -> LogState:
        """The epoch, newest seq ever assigned and the retention watermark."""

    # API keys
    async def create_api_key(self, key_id: str, name: str, key_hash: bytes, prefix: str) -> ApiKey:
        """Store a new key by the hash of its secret."""

    async def api_key_by_hash(self, key_hash: bytes) -> ApiKey | None:
        """The unrevoked key with that hash, if any."""

    async def list_api_keys(self) -> list[ApiKey]:
        """Every key, newest first."""

    async def revoke_api_key(self, key_id: str) -> ApiKey | None:
        """Revoke a key; None when unknown."""

    # Accounts
    async def create_account(self, account_id: str, api_key_id: str, name: str | None, connector: str) -> Account:
        """Register an account; raises AccountExists."""

    async def get_account(self, account_id: str) -> Account | None:
        """The account, whoever owns it."""

    async def list_accounts(self, api_key_id: str) -> list[Account]:
        """The key's accounts, oldest first."""

    async def delete_account(self, account_id: str) -> list[Webhook]:
        """Delete an account and its webhooks; returns the webhooks deleted."""

    # Webhooks
    async def create_webhook(self, webhook: Webhook) -> WebhookChange:
        """Insert a webhook (active or not, as given); raises UnknownAccount."""

    async def get_webhook(self, webhook_id: str) -> Webhook | None:
        """The webhook, whoever owns it."""

    async def list_webhooks(self, api_key_id: str, account_id: str | None = None) -> list[Webhook]:
        """The key's webhooks, optionally of one account, oldest first."""

    async def active_webhooks(self) -> list[Webhook]:
        """Every active webhook, for resuming work at start."""

    async def update_webhook(
        self,
        webhook_id: str,
        *,
        events: tuple[str, ...] | None = None,
        url: str | None = None,
        compressed_delivery: bool | None = None,
        secret: str | None = None,
        status: str | None = None,
        is_active: bool | None = None,
    ) -> WebhookChange | None:
        """Change the given fields; None when the webhook is unknown."""

    async def delete_webhook(self, webhook_id: str) -> WebhookChange | None:
        """Delete a webhook and its feed; None when unknown."""

    # The log
    async def append(
        self,
        account_id: str,
        events: Sequence[NewEvent],
        *,
        only_webhook_id: str | None = None,
        require_monitored: bool = True,
    ) -> AppendResult:
        """Append events atomically and durably; returns once committed.

        A submitted id that is already in the log is not appended again: its
        existing seq is returned with `created=False`. With `only_webhook_id`,
        the events join that webhook's feed only (test events), whatever its filter.
        Raises AccountNotMonitored (when required), UnknownAccount, EventIdConflict.
        """

    async def read_feed(self, webhook_id: str, after_seq: int, limit: int) -> FeedPage:
        """The webhook's feed events with seq > after_seq, ascending, at most `limit`."""

    async def prune(self, older_than: int, batch_size: int) -> int:
        """Delete up to `batch_size` of the oldest events appended before `older_than` (µs); returns how many."""
