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
from typing import NamedTuple, Protocol

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


class NewEvent(NamedTuple):
    """An event about to be appended, serialized except for its seq.

    The envelope is `head + str(seq) + tail`, so the backend stores the exact
    bytes every reader sends and nobody re-serializes an event after append.
    (This and the other per-event records are tuples: a frozen dataclass costs a
    `object.__setattr__` per field, and ingest makes three records per event.)
    """

    id: str
    type: str
    head: bytes
    tail: bytes
    # The server made the id, so it cannot already be in the log: no lookup needed.
    minted: bool = False

    def envelope(self, seq: int) -> bytes:
        return b"%b%d%b" % (self.head, seq, self.tail)


class StoredEvent(NamedTuple):
    """One record of the log, as readers get it (a tuple: pages build thousands of them)."""

    seq: int
    id: str
    account_id: str
    type: str
    body: bytes


class Appended(NamedTuple):
    """What an append did for one submitted event."""

    id: str
    seq: int
    created: bool


class Committed(NamedTuple):
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
class JoinedPage:
    """A page of one webhook's feed as polling sends it: the envelopes joined by commas."""

    joined: bytes
    count: int
    last_seq: int | None
    has_more: bool
    # The retention watermark, read with the page or after it: if a prune raced the read, it errs towards `pruned`.
    pruned_through: int


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


@dataclass(frozen=True, slots=True)
class DeliveryState:
    """Where a custom webhook's delivery stands: every feed event up to `cursor_seq` is handled."""

    cursor_seq: int
    failing_since: int | None


@dataclass(frozen=True, slots=True)
class PendingDelivery:
    """A feed event waiting for a retry, with the attempts already made."""

    event: StoredEvent
    attempts: int
    next_attempt_at: int


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """One POST of one event to a webhook's URL; `outcome` is delivered, retrying or failed."""

    webhook_id: str
    seq: int
    event_id: str
    attempt: int
    outcome: str
    status_code: int | None
    latency_ms: float
    error: str | None
    created_at: int
    id: int = 0


@dataclass(frozen=True, slots=True)
class MonitorLease:
    """Who runs an account's monitor, until when (wall-clock µs), and how it is doing."""

    account_id: str
    owner: str
    expires_at: int
    status: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class MonitorInterval:
    """A stretch of metered monitoring (metering-clock µs); `stopped_at` is None while open."""

    started_at: int
    checkpoint_at: int
    stopped_at: int | None


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


class UnstorableText(StorageError, ValueError):
    """A write carried text no backend can store (a NUL or a lone surrogate); nothing was written."""

    def __init__(self, field: str) -> None:
        super().__init__(f"{field}: text with a NUL or a lone surrogate cannot be stored")
        self.field = field


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

    async def read_feed_joined(self, webhook_id: str, after_seq: int, limit: int) -> JoinedPage:
        """The same page as `read_feed`, as the inside of a JSON array: what polling sends, built by the database."""

    async def prune(self, older_than: int, batch_size: int) -> int:
        """Delete up to `batch_size` of the oldest events appended before `older_than` (µs); returns how many."""

    # Monitors and metering. Lease times (`lease_now`, `lease_until`) are wall-clock µs: a lease
    # is about liveness. Interval times (`at`) come from the metering clock (the same in production).
    async def start_monitor(
        self, account_id: str, api_key_id: str, owner: str, at: int, lease_now: int, lease_until: int
    ) -> bool:
        """Take the account's monitor lease when free, expired or already `owner`'s; False when another holds it.

        On taking it, open intervals left by another holder are closed at their last checkpoint
        and, unless `owner` has one open already, an interval opens at `at`.
        """

    async def checkpoint_monitors(self, owner: str, at: int, lease_until: int) -> set[str]:
        """Renew every lease `owner` holds and checkpoint its open intervals at `at`; returns those accounts."""

    async def stop_monitor(self, account_id: str, owner: str, at: int) -> None:
        """Close `owner`'s open interval of the account at `at` and release its lease, if `owner` holds it."""

    async def set_monitor_status(self, account_id: str, owner: str, status: str, reason: str | None) -> None:
        """Record `running` or `errored` (with a reason) on the lease, if `owner` holds it."""

    async def monitor_lease(self, account_id: str) -> MonitorLease | None:
        """The account's lease row, live or expired, if any."""

    async def close_stale_intervals(self, lease_now: int) -> int:
        """Close, at their last checkpoint, open intervals of accounts with no live lease; returns how many."""

    async def monitor_intervals(self, account_id: str, api_key_id: str) -> list[MonitorInterval]:
        """The account's metered intervals under that key, oldest first (kept after the account is deleted)."""

    # Custom-mode delivery
    async def delivery_state(self, webhook_id: str) -> DeliveryState:
        """The webhook's delivery cursor and breaker state (a fresh webhook starts at 0)."""

    async def due_deliveries(self, webhook_id: str, now: int, limit: int) -> list[PendingDelivery]:
        """Retries due at `now` (µs), in seq order; retries whose event was pruned are dropped."""

    async def next_delivery_due(self, webhook_id: str) -> int | None:
        """When the webhook's earliest pending retry is due (µs), None when none is pending."""

    async def record_attempt(
        self, attempt: DeliveryAttempt, *, from_cursor: int | None, next_attempt_at: int | None = None
    ) -> bool:
        """Log an attempt and settle its event, atomically; False when a recover moved the cursor meanwhile.

        A first attempt (`from_cursor` is the cursor it was read after) moves the cursor to
        its seq, and when `retrying` makes the event pending until `next_attempt_at`. A retry
        (`from_cursor` None) reschedules its pending event, or removes it once `delivered` or `failed`.
        """

    async def list_attempts(self, webhook_id: str, before_id: int | None, limit: int) -> list[DeliveryAttempt]:
        """The webhook's attempts, newest first, with id below `before_id` when given."""

    async def attempt_counts(self, webhook_id: str, since: int) -> tuple[int, int]:
        """(attempts, failed attempts) of the webhook made at or after `since` (µs)."""

    async def set_failing_since(self, webhook_id: str, failing_since: int | None) -> None:
        """Record when the webhook's breaker tripped, or clear it."""

    async def recover_deliveries(self, webhook_id: str, after_seq: int) -> None:
        """Re-deliver the feed after `after_seq`: the cursor moves back to it and pending retries after it restart."""
