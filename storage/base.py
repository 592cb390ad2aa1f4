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
    # "hmac-sha256" (`secret` is a whsec_ key) or "ed25519" (`secret` is the private key, whsk_).
    signature_scheme: str = "hmac-sha256"
    # The secret before the last rotation, still signing until `previous_expires_at` (wall-clock µs).
    previous_secret: str | None = None
    previous_expires_at: int | None = None
    # Deliveries per second; None is unlimited.
    max_rate: int | None = None
    # "fast" (a failing event steps aside) or "strict" (it holds the ones after it).
    ordering: str = "fast"

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
    # Attempts before this time (µs) do not count for the breaker: set when `start` revives the webhook.
    breaker_from: int | None = None


@dataclass(frozen=True, slots=True)
class PendingDelivery:
    """A feed event waiting for a retry, with the attempts already made."""

    event: StoredEvent
    attempts: int
    next_attempt_at: int
    # When its first attempt was made (µs); None for a retry scheduled before this was recorded.
    first_attempt_at: int | None = None


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
    # When the event is due again (retrying only), and the time a 429/503's Retry-After named, capped.
    next_attempt_at: int | None = None
    retry_after: int | None = None
    id: int = 0


@dataclass(frozen=True, slots=True)
class Undelivered:
    """A feed event with no successful attempt: queued for its first, pending a retry, or given up."""

    seq: int
    id: str
    type: str
    attempts: int
    last_status_code: int | None
    # None when given up (failed) or not attempted yet; `queued` tells those apart.
    next_attempt_at: int | None
    queued: bool


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


class StorageUnavailable(StorageError):
    """The database cannot take this now (a full disk, a lost connection); nothing was written, try again."""


class UnstorableText(StorageError, ValueError):
    """A write carried text no backend can store (a NUL or a lone surrogate); nothing was written."""

    def __init__(self, field: str) -> None:
        super().__init__(f"{field}: text with a NUL or a lone surrogate cannot be stored")
        self.field = field


class LogNotifier(Protocol):
    """Called once per commit with the events it made visible, in seq order."""

    def __call__(self, committed: Sequence[Committed], head_seq: int) -> None: ...


class WebhookWatcher(Protocol):
    """Called with the id of a webhook another process changed, or None when changes may have gone unheard."""

    def __call__(self, webhook_id: str | None) -> None: ...


class LogStorage(Protocol):
    """The sequenced event log and the feeds materialized from it.

    Seqs are positive, strictly increasing and never reused, even after the newest
    event is pruned. They are assigned in commit order: when a reader sees seq N,
    every event with a lower seq is already committed and readable (or pruned).
    Appends from any number of concurrent tasks (and, on a shared database, processes)
    are safe: each call is atomic and durable on return, and a failing call undoes
    only itself. Reads see one committed snapshot and never wait for a writer.
    """

    def subscribe(self, notifier: LogNotifier) -> None:
        """Call `notifier` after each commit that appends events (in this process or, where the backend can, any).

        It runs on the event loop, once per commit, in seq order and with no seq
        skipped; a commit in another process may be heard a little later, never lost.
        """

    async def log_state(self) -> LogState:
        """The epoch, newest seq ever assigned and the retention watermark.

        The epoch is made when the database is created and never changes after;
        `head_seq` counts pruned events too, so it never goes back.
        """

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
        The feeds an event joins are the account's webhooks active and matching in the
        same transaction. Raises AccountNotMonitored (when required), UnknownAccount,
        EventIdConflict, UnstorableText; on any of them nothing of the call is stored.
        """

    async def read_feed(self, webhook_id: str, after_seq: int, limit: int) -> FeedPage:
        """The webhook's feed events with seq > after_seq, ascending, at most `limit`.

        A page never has a gap that a later read would fill: seqs arrive in commit order.
        """

    async def read_feed_joined(self, webhook_id: str, after_seq: int, limit: int) -> JoinedPage:
        """The same page as `read_feed`, as the inside of a JSON array: what polling sends.

        Its `pruned_through` is read with the page or after it, so a page raced by a
        prune errs towards saying it was pruned. A backend may answer from what this
        process has heard of the commits instead of reading the database: the page is
        then the same, never with a gap, but may lag another process's commit by the
        time its notification takes (never this instance's own, nor a head it has seen).
        """

    async def prune(self, older_than: int, batch_size: int) -> int:
        """Delete up to `batch_size` of the oldest events appended before `older_than` (µs); returns how many.

        With them go their feed rows and pending retries, and attempts made before
        `older_than`; the watermark moves to the newest seq deleted, in the same
        transaction. Only the oldest run of events goes: an old event behind a newer one
        stays until that one is due. Concurrent pruners are safe: no event is counted
        twice and the watermark only moves forward.
        """


class RegistryStorage(Protocol):
    """API keys, accounts and webhooks: the small tables the log is keyed by.

    Every write is one transaction; a `WebhookChange` counts the account's active
    webhooks in that same transaction, so the count matches the change it reports.
    A lookup by text no row can hold (a NUL, a lone surrogate) finds nothing; a
    write of such text raises UnstorableText.
    """

    def watch_webhooks(self, watcher: WebhookWatcher) -> None:
        """Call `watcher` when another process sharing the database updates, stops, starts or deletes a webhook.

        It runs on the event loop, within milliseconds of that commit; after a spell in which
        such news could be lost (a dropped connection), once with None. Changes made by this
        instance are not reported: its caller knows of them.
        """

    async def create_api_key(self, key_id: str, name: str, key_hash: bytes, prefix: str) -> ApiKey:
        """Store a new key by the hash of its secret, stamped now."""

    async def api_key_by_hash(self, key_hash: bytes) -> ApiKey | None:
        """The unrevoked key with that hash, if any."""

    async def list_api_keys(self) -> list[ApiKey]:
        """Every key, revoked ones too, newest first."""

    async def revoke_api_key(self, key_id: str) -> ApiKey | None:
        """Revoke a key (a second revoke keeps the first time); None when unknown."""

    async def create_account(self, account_id: str, api_key_id: str, name: str | None, connector: str) -> Account:
        """Register an account with no webhooks; raises AccountExists, whoever owns the id."""

    async def get_account(self, account_id: str) -> Account | None:
        """The account, whoever owns it."""

    async def list_accounts(self, api_key_id: str) -> list[Account]:
        """The key's accounts, oldest first."""

    async def delete_account(self, account_id: str) -> list[Webhook]:
        """Delete an account, its webhooks, their feeds and delivery state, atomically; returns the webhooks deleted.

        A webhook being created for the account at the same moment is either deleted
        with it or refused with UnknownAccount, never left behind.
        """

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
        max_rate: int | None = None,
        ordering: str | None = None,
    ) -> WebhookChange | None:
        """Change the given fields and stamp `updated_at`; None when the webhook is unknown.

        A new filter or activation applies to events appended after it commits.
        `max_rate=0` clears the rate (unlimited); a new `secret` drops any previous one.
        """

    async def rotate_secret(
        self, webhook_id: str, secret: str, previous_expires_at: int | None
    ) -> WebhookChange | None:
        """Make `secret` current and keep the current one as previous until `previous_expires_at`, atomically.

        With `previous_expires_at` None the previous secret is dropped at once. Two
        racing rotations each keep the secret they replaced, so none is lost unseen.
        None when the webhook is unknown.
        """

    async def delete_webhook(self, webhook_id: str) -> WebhookChange | None:
        """Delete a webhook, its feed and its delivery state; None when unknown."""


class MonitorStorage(Protocol):
    """Who runs each account's monitor, and the metered intervals it ran.

    A lease names one owner per account until `expires_at` (wall-clock µs). Taking,
    renewing and releasing it are each atomic: however many processes race to take
    a free or expired lease, exactly one gets it. Lease times (`lease_now`,
    `lease_until`) are wall-clock µs; interval times (`at`) come from the metering
    clock (the same in production). An interval is open while `stopped_at` is None,
    and its `checkpoint_at` is the last time its holder was known to run: an interval
    left open by a holder that died is closed there, so it is never billed past it.
    """

    async def start_monitor(
        self, account_id: str, api_key_id: str, owner: str, at: int, lease_now: int, lease_until: int
    ) -> bool:
        """Take the account's lease when free, expired or already `owner`'s; False when another holds it.

        "Expired" compares the held lease's `expires_at` with `lease_now` under the
        lease's lock: at or before it, the lease is taken. So a caller that knows the
        holder is dead (a process gone on this host) takes over at once by passing the
        `expires_at` it read; if the holder renewed meanwhile, the takeover fails. On
        taking it, status becomes `running`, open intervals of other holders are closed
        at their last checkpoint and, unless `owner` has one open already, one opens at `at`.
        """

    async def checkpoint_monitors(self, owner: str, at: int, lease_until: int) -> set[str]:
        """Renew every lease `owner` holds until `lease_until` and checkpoint its open intervals at `at`.

        Returns the accounts whose lease `owner` still holds: one taken over since
        is not renewed and not returned. A checkpoint never moves back.
        """

    async def stop_monitor(self, account_id: str, owner: str, at: int) -> None:
        """Close `owner`'s open interval of the account at `at` (not before its checkpoint) and release its lease.

        Does nothing to a lease or interval of another owner.
        """

    async def set_monitor_status(self, account_id: str, owner: str, status: str, reason: str | None) -> None:
        """Record `running` or `errored` (with a reason) on the lease, if `owner` holds it."""

    async def monitor_lease(self, account_id: str) -> MonitorLease | None:
        """The account's lease row, live or expired, if any."""

    async def close_stale_intervals(self, lease_now: int) -> int:
        """Close, at their last checkpoint, open intervals whose owner holds no live lease; returns how many.

        Leases expired at `lease_now` are deleted too.
        """

    async def monitor_intervals(self, account_id: str, api_key_id: str) -> list[MonitorInterval]:
        """The account's metered intervals under that key, oldest first (kept after the account is deleted)."""


class DeliveryStorage(Protocol):
    """Where each custom webhook's delivery stands: its cursor, pending retries, attempts and breaker.

    Every feed event at or below the cursor is handled: delivered, failed, or pending
    a retry. Moving the cursor is a compare-and-set (`record_attempt`), so a recover
    that moves it back while a delivery is in flight wins, and that delivery's
    result does not move the cursor forward again over the events to re-deliver.
    """

    async def delivery_state(self, webhook_id: str) -> DeliveryState:
        """The webhook's delivery cursor and breaker state (a fresh webhook starts at 0, not failing)."""

    async def due_deliveries(self, webhook_id: str, now: int, limit: int) -> list[PendingDelivery]:
        """Retries due at `now` (µs), in seq order, with their events; retries whose event was pruned are dropped."""

    async def next_delivery_due(self, webhook_id: str) -> int | None:
        """When the webhook's earliest pending retry is due (µs), None when none is pending."""

    async def record_attempt(
        self, attempt: DeliveryAttempt, *, from_cursor: int | None, next_attempt_at: int | None = None
    ) -> bool:
        """Log an attempt and settle its event, in one transaction; False when the cursor moved meanwhile.

        A first attempt (`from_cursor` is the cursor it was read after) moves the
        cursor from `from_cursor` to its seq only if the cursor still is `from_cursor`
        (compare and set: of two recorders racing from the same cursor, exactly one
        gets True), and when `retrying` makes the event pending until `next_attempt_at`.
        The attempt is logged either way. A retry (`from_cursor` None) reschedules its
        pending event, or removes it once `delivered` or `failed`, and returns True.
        """

    async def list_attempts(
        self, webhook_id: str, before_id: int | None, limit: int, *, outcome: str | None = None
    ) -> list[DeliveryAttempt]:
        """The webhook's attempts, newest first, with id below `before_id` when given (ids only increase).

        With `outcome`, only attempts of that outcome (delivered, retrying, failed).
        """

    async def undelivered(self, webhook_id: str, after_seq: int, limit: int) -> list[Undelivered]:
        """The webhook's feed events after `after_seq` with no `delivered` attempt, in seq order, at most `limit`."""

    async def feed_seq_before(self, webhook_id: str, appended_before: int) -> int:
        """The newest seq of the webhook's feed appended before `appended_before` (µs); 0 when none is."""

    async def attempt_counts(self, webhook_id: str, since: int) -> tuple[int, int]:
        """(attempts, attempts not `delivered`) of the webhook made at or after `since` (µs)."""

    async def set_failing_since(self, webhook_id: str, failing_since: int | None) -> None:
        """Record when the webhook's breaker tripped, or clear it; the cursor is untouched."""

    async def restart_breaker(self, webhook_id: str, at: int) -> None:
        """Begin the breaker afresh at `at` (µs): not failing, and only attempts from `at` on count."""

    async def recover_deliveries(self, webhook_id: str, after_seq: int) -> None:
        """Re-deliver the feed after `after_seq`: the cursor moves back to it (never forward) and later retries go.

        The events after it come again through the feed, from their first attempt.
        """


class Storage(LogStorage, RegistryStorage, MonitorStorage, DeliveryStorage, Protocol):
    """A hookstream backend: the log, the registry, monitors and delivery, over one database.

    One instance per process; safe for concurrent tasks. Several processes may share
    a database where the backend allows it (PostgreSQL); the guarantees above then
    hold across them.
    """

    async def open(self) -> None:
        """Connect, run pending migrations, and start background workers; an instance closed may open again."""

    async def close(self) -> None:
        """Finish pending writes and release every connection."""

    async def ping(self) -> None:
        """Raise if the database cannot be reached."""
