"""What every backend does the same around its own SQL: one guard on text, and the shape of an append.

A backend subclasses `Backend` and implements the private `_name` of each public method
below. The public method applies the one rule of storage/_text.py first — a lookup by
text no row can hold finds nothing, a write of such text raises `UnstorableText` — so
that rule holds at the same points on every backend, by construction. `read_feed_joined`,
polling's hot path, applies it in each backend instead, to spare a coroutine per poll.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Protocol

from storage._append import ActiveHooks, plan_append
from storage._clock import now_micros
from storage._rows import webhook_changes
from storage._text import refuse_unstorable, unstorable
from storage.base import (
    Account,
    ApiKey,
    AppendResult,
    DeliveryAttempt,
    DeliveryState,
    FeedMatcher,
    FeedPage,
    LogNotifier,
    MonitorInterval,
    MonitorLease,
    NewEvent,
    PendingDelivery,
    Undelivered,
    Webhook,
    WebhookChange,
    WebhookWatcher,
)


class AppendPlan(Protocol):
    """`plan_append` bound to an append's arguments; the backend adds what it read in its transaction."""

    def __call__(self, *, head: int, existing: Mapping[str, tuple[int, str]], hooks: ActiveHooks) -> AppendResult: ...


class Backend(ABC):
    """The guarded public half of a backend; subclasses implement the `_name` methods with their SQL."""

    def __init__(self, matcher: FeedMatcher) -> None:
        self._matcher = matcher
        self._notifiers: list[LogNotifier] = []
        self._webhook_watchers: list[WebhookWatcher] = []

    def subscribe(self, notifier: LogNotifier) -> None:
        self._notifiers.append(notifier)

    def watch_webhooks(self, watcher: WebhookWatcher) -> None:
        self._webhook_watchers.append(watcher)

    def _heard_webhook_change(self, webhook_id: str | None) -> None:
        """Another process changed this webhook (None: any webhook may have changed unheard)."""
        for watcher in self._webhook_watchers:
            watcher(webhook_id)

    def _changed_here(self, change: WebhookChange | None) -> WebhookChange | None:
        """Tell the other processes, where the backend does it after the commit; PostgreSQL does it inside."""
        if change is not None:
            self._tell_webhook_changed(change.webhook.id)
        return change

    @abstractmethod
    def _tell_webhook_changed(self, webhook_id: str) -> None:
        """Tell the other processes sharing the database that this webhook changed (committed already)."""

    # Encoding of a webhook's filter and flags as the backend's columns hold them.
    @staticmethod
    @abstractmethod
    def _encode_filters(events: tuple[str, ...]) -> object: ...

    @staticmethod
    @abstractmethod
    def _encode_bool(value: bool) -> object: ...

    # Registry

    async def create_api_key(self, key_id: str, name: str, key_hash: bytes, prefix: str) -> ApiKey:
        refuse_unstorable("api key", key_id, name, prefix)
        return await self._create_api_key(key_id, name, key_hash, prefix, now_micros())

    async def revoke_api_key(self, key_id: str) -> ApiKey | None:
        return None if unstorable(key_id) else await self._revoke_api_key(key_id, now_micros())

    async def create_account(self, account_id: str, api_key_id: str, name: str | None, connector: str) -> Account:
        refuse_unstorable("account", account_id, api_key_id, name, connector)
        return await self._create_account(account_id, api_key_id, name, connector, now_micros())

    async def get_account(self, account_id: str) -> Account | None:
        return None if unstorable(account_id) else await self._get_account(account_id)

    async def list_accounts(self, api_key_id: str) -> list[Account]:
        return [] if unstorable(api_key_id) else await self._list_accounts(api_key_id)

    async def delete_account(self, account_id: str) -> list[Webhook]:
        if unstorable(account_id):
            return []
        deleted = await self._delete_account(account_id)
        for hook in deleted:
            self._tell_webhook_changed(hook.id)
        return deleted

    async def create_webhook(self, webhook: Webhook) -> WebhookChange:
        hook = webhook
        refuse_unstorable("webhook", hook.id, hook.account_id, hook.api_key_id, hook.url, hook.secret, hook.status)
        refuse_unstorable("webhook", hook.signature_scheme, hook.previous_secret, hook.ordering)
        refuse_unstorable("events", *hook.events)
        return await self._create_webhook(webhook)

    async def get_webhook(self, webhook_id: str) -> Webhook | None:
        return None if unstorable(webhook_id) else await self._get_webhook(webhook_id)

    async def list_webhooks(self, api_key_id: str, account_id: str | None = None) -> list[Webhook]:
        return [] if unstorable(api_key_id, account_id) else await self._list_webhooks(api_key_id, account_id)

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
        if unstorable(webhook_id):
            return None
        refuse_unstorable("webhook", url, secret, status, ordering)
        refuse_unstorable("events", *(events or ()))
        changes = webhook_changes(
            events=events,
            url=url,
            compressed_delivery=compressed_delivery,
            secret=secret,
            status=status,
            is_active=is_active,
            max_rate=max_rate,
            ordering=ordering,
            updated_at=now_micros(),
            encode_events=self._encode_filters,
            encode_bool=self._encode_bool,
        )
        return self._changed_here(await self._update_webhook(webhook_id, changes))

    async def rotate_secret(
        self, webhook_id: str, secret: str, previous_expires_at: int | None
    ) -> WebhookChange | None:
        if unstorable(webhook_id):
            return None
        refuse_unstorable("webhook", secret)
        return self._changed_here(await self._rotate_secret(webhook_id, secret, previous_expires_at, now_micros()))

    async def delete_webhook(self, webhook_id: str) -> WebhookChange | None:
        return None if unstorable(webhook_id) else self._changed_here(await self._delete_webhook(webhook_id))

    # The log

    async def append(
        self,
        account_id: str,
        events: Sequence[NewEvent],
        *,
        only_webhook_id: str | None = None,
        require_monitored: bool = True,
    ) -> AppendResult:
        # One scan of each joined string, not a call per event.
        ids, types = "".join([e.id for e in events]), "".join([e.type for e in events])
        refuse_unstorable("events", account_id, only_webhook_id, ids, types)
        plan = functools.partial(
            plan_append,
            account_id,
            events,
            matcher=self._matcher,
            only_webhook_id=only_webhook_id,
            require_monitored=require_monitored,
        )
        return await self._append(account_id, events, now_micros(), plan)

    async def read_feed(self, webhook_id: str, after_seq: int, limit: int) -> FeedPage:
        if unstorable(webhook_id):
            return FeedPage(events=(), has_more=False)
        return await self._read_feed(webhook_id, after_seq, limit)

    # Monitors

    async def start_monitor(
        self, account_id: str, api_key_id: str, owner: str, at: int, lease_now: int, lease_until: int
    ) -> bool:
        refuse_unstorable("monitor", account_id, api_key_id, owner)
        return await self._start_monitor(account_id, api_key_id, owner, at, lease_now, lease_until)

    async def checkpoint_monitors(self, owner: str, at: int, lease_until: int) -> set[str]:
        return set() if unstorable(owner) else await self._checkpoint_monitors(owner, at, lease_until)

    async def stop_monitor(self, account_id: str, owner: str, at: int) -> None:
        if not unstorable(account_id, owner):
            await self._stop_monitor(account_id, owner, at)

    async def set_monitor_status(self, account_id: str, owner: str, status: str, reason: str | None) -> None:
        if unstorable(account_id, owner):
            return
        refuse_unstorable("monitor status", status, reason)
        await self._set_monitor_status(account_id, owner, status, reason)

    async def monitor_lease(self, account_id: str) -> MonitorLease | None:
        return None if unstorable(account_id) else await self._monitor_lease(account_id)

    async def monitor_intervals(self, account_id: str, api_key_id: str) -> list[MonitorInterval]:
        return [] if unstorable(account_id, api_key_id) else await self._monitor_intervals(account_id, api_key_id)

    # Delivery

    async def delivery_state(self, webhook_id: str) -> DeliveryState:
        return DeliveryState(0, None) if unstorable(webhook_id) else await self._delivery_state(webhook_id)

    async def due_deliveries(self, webhook_id: str, now: int, limit: int) -> list[PendingDelivery]:
        return [] if unstorable(webhook_id) else await self._due_deliveries(webhook_id, now, limit)

    async def next_delivery_due(self, webhook_id: str) -> int | None:
        return None if unstorable(webhook_id) else await self._next_delivery_due(webhook_id)

    async def record_attempt(
        self, attempt: DeliveryAttempt, *, from_cursor: int | None, next_attempt_at: int | None = None
    ) -> bool:
        refuse_unstorable("attempt", attempt.webhook_id, attempt.event_id, attempt.outcome, attempt.error)
        return await self._record_attempt(attempt, from_cursor, next_attempt_at)

    async def list_attempts(
        self, webhook_id: str, before_id: int | None, limit: int, *, outcome: str | None = None
    ) -> list[DeliveryAttempt]:
        if unstorable(webhook_id, outcome):
            return []
        return await self._list_attempts(webhook_id, before_id, limit, outcome)

    async def undelivered(self, webhook_id: str, after_seq: int, limit: int) -> list[Undelivered]:
        return [] if unstorable(webhook_id) else await self._undelivered(webhook_id, after_seq, limit)

    async def feed_seq_before(self, webhook_id: str, appended_before: int) -> int:
        return 0 if unstorable(webhook_id) else await self._feed_seq_before(webhook_id, appended_before)

    async def attempt_counts(self, webhook_id: str, since: int) -> tuple[int, int]:
        return (0, 0) if unstorable(webhook_id) else await self._attempt_counts(webhook_id, since)

    async def set_failing_since(self, webhook_id: str, failing_since: int | None) -> None:
        refuse_unstorable("webhook_id", webhook_id)
        await self._set_failing_since(webhook_id, failing_since)

    async def restart_breaker(self, webhook_id: str, at: int) -> None:
        refuse_unstorable("webhook_id", webhook_id)
        await self._restart_breaker(webhook_id, at)

    async def recover_deliveries(self, webhook_id: str, after_seq: int) -> None:
        refuse_unstorable("webhook_id", webhook_id)
        await self._recover_deliveries(webhook_id, after_seq)

    # What each backend implements, with its SQL.

    @abstractmethod
    async def _create_api_key(self, key_id: str, name: str, key_hash: bytes, prefix: str, created: int) -> ApiKey: ...

    @abstractmethod
    async def _revoke_api_key(self, key_id: str, revoked: int) -> ApiKey | None: ...

    @abstractmethod
    async def _create_account(
        self, account_id: str, api_key_id: str, name: str | None, connector: str, created: int
    ) -> Account: ...

    @abstractmethod
    async def _get_account(self, account_id: str) -> Account | None: ...

    @abstractmethod
    async def _list_accounts(self, api_key_id: str) -> list[Account]: ...

    @abstractmethod
    async def _delete_account(self, account_id: str) -> list[Webhook]: ...

    @abstractmethod
    async def _create_webhook(self, webhook: Webhook) -> WebhookChange: ...

    @abstractmethod
    async def _get_webhook(self, webhook_id: str) -> Webhook | None: ...

    @abstractmethod
    async def _list_webhooks(self, api_key_id: str, account_id: str | None) -> list[Webhook]: ...

    @abstractmethod
    async def _update_webhook(self, webhook_id: str, changes: dict[str, object]) -> WebhookChange | None: ...

    @abstractmethod
    async def _rotate_secret(
        self, webhook_id: str, secret: str, previous_expires_at: int | None, updated_at: int
    ) -> WebhookChange | None: ...

    @abstractmethod
    async def _delete_webhook(self, webhook_id: str) -> WebhookChange | None: ...

    @abstractmethod
    async def _append(
        self, account_id: str, events: Sequence[NewEvent], appended_at: int, plan: AppendPlan
    ) -> AppendResult: ...

    @abstractmethod
    async def _read_feed(self, webhook_id: str, after_seq: int, limit: int) -> FeedPage: ...

    @abstractmethod
    async def _start_monitor(
        self, account_id: str, api_key_id: str, owner: str, at: int, lease_now: int, lease_until: int
    ) -> bool: ...

    @abstractmethod
    async def _checkpoint_monitors(self, owner: str, at: int, lease_until: int) -> set[str]: ...

    @abstractmethod
    async def _stop_monitor(self, account_id: str, owner: str, at: int) -> None: ...

    @abstractmethod
    async def _set_monitor_status(self, account_id: str, owner: str, status: str, reason: str | None) -> None: ...

    @abstractmethod
    async def _monitor_lease(self, account_id: str) -> MonitorLease | None: ...

    @abstractmethod
    async def _monitor_intervals(self, account_id: str, api_key_id: str) -> list[MonitorInterval]: ...

    @abstractmethod
    async def _delivery_state(self, webhook_id: str) -> DeliveryState: ...

    @abstractmethod
    async def _due_deliveries(self, webhook_id: str, now: int, limit: int) -> list[PendingDelivery]: ...

    @abstractmethod
    async def _next_delivery_due(self, webhook_id: str) -> int | None: ...

    @abstractmethod
    async def _record_attempt(
        self, attempt: DeliveryAttempt, from_cursor: int | None, next_attempt_at: int | None
    ) -> bool: ...

    @abstractmethod
    async def _list_attempts(
        self, webhook_id: str, before_id: int | None, limit: int, outcome: str | None
    ) -> list[DeliveryAttempt]: ...

    @abstractmethod
    async def _undelivered(self, webhook_id: str, after_seq: int, limit: int) -> list[Undelivered]: ...

    @abstractmethod
    async def _feed_seq_before(self, webhook_id: str, appended_before: int) -> int: ...

    @abstractmethod
    async def _attempt_counts(self, webhook_id: str, since: int) -> tuple[int, int]: ...

    @abstractmethod
    async def _set_failing_since(self, webhook_id: str, failing_since: int | None) -> None: ...

    @abstractmethod
    async def _restart_breaker(self, webhook_id: str, at: int) -> None: ...

    @abstractmethod
    async def _recover_deliveries(self, webhook_id: str, after_seq: int) -> None: ...
