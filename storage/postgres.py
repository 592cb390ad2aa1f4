"""The PostgreSQL backend: many processes, one log, seq order equal to commit order.

Concurrent transactions commit in any order, so a seq taken from a sequence
before commit would let a reader see seq N+1 while N is still in flight and
move its cursor past N for good. Here every append transaction first locks
the single row of `log_head` and takes its seqs from it: the lock serializes
appenders cluster-wide until commit, so commit order is seq order and a
reader that sees N+1 has N too. Each process batches the appends waiting
at that moment into one transaction (group commit, as the SQLite writer
does), so the lock and the fsync are paid once per batch, not per ingest.

Wake-ups cross processes through LISTEN/NOTIFY: an append transaction
notifies its schema's channel with the new head seq, delivered on commit;
a transaction that changes or deletes a webhook notifies `w` and its id,
and a prune `p` and its watermark, so other processes drop what they hold
of that webhook and wake its streams.
Every process listens on a dedicated connection and, when the head moves
past what it has published, reads the new events and their feed webhooks
in one query and hands its notifiers the same `Committed` records as a
local commit. If that connection drops, the process reconnects with
backoff and catches up from the last seq it published, so nothing is lost.

Everything this process publishes also feeds storage/_feeds.py, which answers a
page near the head from memory, without a round trip, whenever the process can
tell it has heard every commit the page could hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from storage._backend import AppendPlan, Backend
from storage._bodies import RecentBodies, gapless_seqs
from storage._catchup import CatchUp
from storage._clock import now_micros
from storage._feeds import RecentFeeds
from storage._postgres_pool import GuardedPool, unavailable
from storage._rows import (
    API_KEY_COLUMNS,
    ATTEMPT_COLUMNS,
    INTERVAL_COLUMNS,
    LEASE_COLUMNS,
    NO_ATTEMPT_ID,
    WEBHOOK_COLUMNS,
    account_from_row,
    api_key_from_row,
    attempt_values,
    prune_cutoff,
    undelivered_from_row,
    webhook_from_row,
    webhook_values,
)
from storage._text import unstorable
from storage._writer import GroupCommit, Outcome, Pending, announce
from storage.base import (
    Account,
    AccountExists,
    ApiKey,
    AppendResult,
    Committed,
    DeliveryAttempt,
    DeliveryState,
    FeedMatcher,
    FeedPage,
    JoinedPage,
    LogState,
    MonitorInterval,
    MonitorLease,
    NewEvent,
    PendingDelivery,
    StoredEvent,
    Undelivered,
    UnknownAccount,
    Webhook,
    WebhookChange,
)
from storage.migrations import POSTGRES_MIGRATIONS, pending_migrations

logger = logging.getLogger("hookstream.postgres")

T = TypeVar("T")
Record = asyncpg.Record
# A connection of its own or one borrowed from the pool.
Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
Job = Callable[["_Batch"], Awaitable[T]]

_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_CHANNEL = "hookstream_log"
# Seconds to open a connection, and to wait for one from the pool, before a call is answered 503.
_CONNECT_TIMEOUT = 5.0
_ACQUIRE_TIMEOUT = 10.0
_ACCOUNT_COLUMNS = (
    "a.id, a.api_key_id, a.name, a.connector, a.created_at, "
    "(SELECT count(*) FROM webhooks w WHERE w.account_id = a.id AND w.is_active)"
)


def _lock_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for a name."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


def split_schema(url: str) -> tuple[str, str | None]:
    """The URL without its `schema` query parameter (asyncpg would send it as a setting), and that schema."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [value for key, value in query if key == "schema"]
    rest = [(key, value) for key, value in query if key != "schema"]
    return urlunsplit(parts._replace(query=urlencode(rest))), (schemas[-1] if schemas else None)


# Feed events after a seq with no delivered attempt, as SQLite's `_UNDELIVERED`.
_UNDELIVERED = (
    "SELECT f.seq, e.id, e.type,"
    " (SELECT count(*) FROM delivery_attempts a WHERE a.webhook_id = $1 AND a.seq = f.seq),"
    " (SELECT a.status_code FROM delivery_attempts a WHERE a.webhook_id = $1 AND a.seq = f.seq"
    "  ORDER BY a.id DESC LIMIT 1),"
    " d.next_attempt_at,"
    " f.seq > coalesce((SELECT cursor_seq FROM delivery_state WHERE webhook_id = $1), 0)"
    " FROM feed f JOIN events e ON e.seq = f.seq"
    " LEFT JOIN deliveries d ON d.webhook_id = $1 AND d.seq = f.seq"
    " WHERE f.webhook_id = $1 AND f.seq > $2 AND NOT EXISTS (SELECT 1 FROM delivery_attempts a"
    "  WHERE a.webhook_id = $1 AND a.seq = f.seq AND a.outcome = 'delivered')"
    " ORDER BY f.seq LIMIT $3"
)


def _placeholders(count: int) -> str:
    return ", ".join(f"${n}" for n in range(1, count + 1))


def _webhook(row: Record) -> Webhook:
    return webhook_from_row(row, tuple(row[5]))


@dataclass
class _Batch:
    """One group transaction: its connection, the newest seq it assigned, and what it appended."""

    conn: Connection
    head: int
    committed: list[Committed] = field(default_factory=list)


_WATERMARK = "(SELECT value FROM meta WHERE key = 'pruned_through')"
# A page near the head as its feed seqs (one past the limit, for has-more), the head and the watermark.
_RECENT_PAGE = (
    f"SELECT count(*), min(s), max(s), (SELECT seq FROM log_head), {_WATERMARK}"
    " FROM (SELECT seq AS s FROM feed WHERE webhook_id = $1 AND seq > $2 ORDER BY seq LIMIT $3::bigint + 1) page"
)
# A page with its bodies, the head and the watermark, all of one snapshot; one row with NULLs when empty.
_FULL_PAGE = (
    f"SELECT p.seq, p.body, (SELECT seq FROM log_head), {_WATERMARK} FROM (SELECT 1) one LEFT JOIN LATERAL"
    " (SELECT f.seq, e.body FROM feed f JOIN events e ON e.seq = f.seq"
    "  WHERE f.webhook_id = $1 AND f.seq > $2 ORDER BY f.seq LIMIT $3::bigint + 1) p ON true ORDER BY p.seq"
)
# Every seq of a feed between a cursor and where this process's memory of it starts, with the head and watermark.
_BRIDGE = (
    "SELECT ARRAY(SELECT seq FROM feed WHERE webhook_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq),"
    f" (SELECT seq FROM log_head), {_WATERMARK}"
)
# Notification payloads besides a head seq: a webhook changed, retention moved its watermark.
_WEBHOOK_CHANGED = "w"
_PRUNED = "p"


class PostgresStorage(Backend):
    """A backend that any number of processes share through one PostgreSQL database (or schema)."""

    def __init__(
        self,
        url: str,
        *,
        matcher: FeedMatcher,
        schema: str | None = None,
        pool_size: int = 10,
        max_batch: int = 256,
        probe_interval: float = 10.0,
        event_cache_bytes: int = 64 << 20,
    ) -> None:
        super().__init__(matcher)
        self.url, url_schema = split_schema(url)
        self.schema = schema or url_schema
        if self.schema is not None and not _SCHEMA_NAME.fullmatch(self.schema):
            raise ValueError(f"schema {self.schema!r} must be a plain identifier: letters, digits, underscores")
        self._pool_size = pool_size
        self._probe_interval = probe_interval
        # A channel per schema, so logs sharing a database do not wake each other.
        self.channel = _CHANNEL if self.schema is None else f"{_CHANNEL}.{self.schema}"[:63]
        self._pool: asyncpg.Pool | None = None
        self._catch_up = CatchUp(self._committed_after, self._publish, name="hookstream-postgres-catch-up")
        self._queue: GroupCommit[Job[Any]] = GroupCommit(
            self._run_batch,
            self._committed_here,
            max_batch=max_batch,
            name="hookstream-postgres-writer",
            unavailable=unavailable,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._epoch = ""
        # Every commit this process publishes, its own or read from another's, lands here too.
        self._bodies = RecentBodies(event_cache_bytes)
        self._feeds = RecentFeeds(self._bodies, enabled=event_cache_bytes > 0)
        # Marks this instance's webhook notifications, which it need not hear back.
        self._sender = secrets.token_hex(4)

    @staticmethod
    def _encode_filters(events: tuple[str, ...]) -> list[str]:
        return list(events)

    @staticmethod
    def _encode_bool(value: bool) -> bool:
        return value

    # Lifecycle

    def _server_settings(self, role: str) -> dict[str, str]:
        # The pid in the name tells an operator (and the tests) which process holds a connection.
        settings = {"application_name": f"hookstream-{role}-{os.getpid()}"}
        if self.schema is not None:
            settings["search_path"] = f'"{self.schema}"'
        return settings

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(
            self.url,
            min_size=1,
            max_size=self._pool_size,
            server_settings=self._server_settings("pool"),
            timeout=_CONNECT_TIMEOUT,
        )
        self._guarded = GuardedPool(self._pool, _ACQUIRE_TIMEOUT)
        try:
            async with self._pool.acquire() as conn:
                await self._migrate(conn)
                self._epoch = await conn.fetchval("SELECT value FROM meta WHERE key = 'epoch'")
                head = await conn.fetchval("SELECT seq FROM log_head")
                pruned = await conn.fetchval(f"SELECT {_WATERMARK}")
        except BaseException:
            await self._pool.close()
            self._pool = None
            raise
        self._feeds.start(head, int(pruned))
        self._catch_up.start(head)
        self._queue.start()
        self._tasks = [asyncio.create_task(self._listen_forever(), name="hookstream-postgres-listen")]

    async def close(self) -> None:
        await self._queue.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._tasks = []
        await self._catch_up.stop()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _migrate(self, conn: Connection) -> None:
        # The advisory lock makes processes starting together migrate one after another.
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_key(f"hookstream-migrate:{self.schema}"))
            if self.schema is not None:
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)"
            )
            applied = {row[0] for row in await conn.fetch("SELECT version FROM schema_migrations")}
            for version, script in pending_migrations(POSTGRES_MIGRATIONS, applied):
                await conn.execute(script)
                await conn.execute("INSERT INTO schema_migrations VALUES ($1, $2)", version, now_micros())
            await conn.execute(
                "INSERT INTO meta (key, value) VALUES ('epoch', $1), ('pruned_through', '0') ON CONFLICT DO NOTHING",
                secrets.token_hex(8),
            )
            await conn.execute("INSERT INTO log_head (id, seq) VALUES (true, 0) ON CONFLICT DO NOTHING")

    @property
    def pool(self) -> GuardedPool:
        if self._pool is None:
            raise RuntimeError("storage is not open")
        return self._guarded

    # Writes

    async def _write(self, job: Job[T]) -> T:
        result: T = await self._queue.submit(job)
        return result

    async def _run_batch(self, live: list[Pending[Job[Any]]]) -> tuple[list[Outcome], list[Committed]]:
        outcomes: list[Outcome] = []
        async with self.pool.acquire() as conn:
            transaction = conn.transaction()
            await transaction.start()
            try:
                # The row lock that makes commit order equal seq order, held until COMMIT.
                txn = _Batch(conn, await conn.fetchval("SELECT seq FROM log_head FOR UPDATE"))
                start = txn.head
                if len(live) == 1:
                    # Alone in its batch, a job needs no savepoint: its error undoes the whole transaction.
                    try:
                        outcomes.append((True, await live[0].job(txn)))
                    except Exception as exc:
                        outcomes.append((False, exc))
                        txn.committed.clear()
                        txn.head = start
                else:
                    for pending in live:
                        mark, head = len(txn.committed), txn.head
                        try:
                            async with conn.transaction():
                                result = await pending.job(txn)
                        except Exception as exc:
                            del txn.committed[mark:]
                            txn.head = head
                            outcomes.append((False, exc))
                        else:
                            outcomes.append((True, result))
                if not any(ok for ok, _ in outcomes):
                    await transaction.rollback()
                else:
                    if txn.head != start:
                        # NOTIFY is delivered at commit, in commit order, to every listening process.
                        await conn.execute(
                            "WITH moved AS (UPDATE log_head SET seq = $1) SELECT pg_notify($2, $3)",
                            txn.head,
                            self.channel,
                            str(txn.head),
                        )
                    await transaction.commit()
            except BaseException:
                with contextlib.suppress(Exception):
                    await transaction.rollback()
                raise
        return outcomes, txn.committed

    def _committed_here(self, committed: list[Committed]) -> None:
        # Published at once unless another process's commits come first: pages from memory wait for those,
        # so a caller never reads a page from here that lacks what it has just appended.
        self._feeds.saw_head(committed[-1].event.seq)
        self._catch_up.committed_here(committed)

    def _publish(self, committed: list[Committed]) -> None:
        self._feeds.publish(committed)
        announce(committed, self._bodies, self._notifiers)

    # Cross-process wake-ups

    def _on_notification(self, conn: object, pid: int, channel: str, payload: object) -> None:
        text = str(payload)
        if text.startswith(_WEBHOOK_CHANGED):
            sender, _, webhook_id = text[1:].partition(":")
            if sender != self._sender:
                self._feeds.forget(webhook_id)  # it may be deleted, and its feed rows with it
                self._heard_webhook_change(webhook_id)
            return
        try:
            if text.startswith(_PRUNED):
                self._feeds.pruned_to(int(text[1:]))
            else:
                head = int(text)
                self._feeds.saw_head(head)
                self._catch_up.heard(head)
        except ValueError:
            return

    def _tell_webhook_changed(self, webhook_id: str) -> None:
        pass  # told already, by the NOTIFY inside the change's own transaction

    async def _notify_webhook_changed(self, conn: Connection, webhook_ids: list[str]) -> None:
        """Tell every process, at this transaction's commit, that these webhooks changed."""
        for webhook_id in webhook_ids:
            payload = f"{_WEBHOOK_CHANGED}{self._sender}:{webhook_id}"
            await conn.execute("SELECT pg_notify($1, $2)", self.channel, payload)

    async def _listen_forever(self) -> None:
        """Keep one LISTEN connection up, reconnecting with backoff whenever it is lost."""
        delay = 0.05
        while True:
            try:
                await self._listen_until_lost()
                logger.warning("notification connection closed; reconnecting")
                delay = 0.05
            except Exception as exc:  # this loop must outlive anything the database does to it
                logger.warning("notification connection failed (%r); reconnecting in %.2fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _listen_until_lost(self) -> None:
        conn = await asyncpg.connect(
            self.url, server_settings=self._server_settings("listen"), timeout=_CONNECT_TIMEOUT
        )
        try:
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(self.channel, self._on_notification)
            # Whatever was committed while nobody listened is read now; pages come from memory again
            # once it is published, and whatever webhooks changed meanwhile are looked at again.
            self._feeds.resume_at(await conn.fetchval("SELECT seq FROM log_head"))
            self._catch_up.behind()
            self._heard_webhook_change(None)
            while not lost.is_set():
                try:
                    await asyncio.wait_for(lost.wait(), self._probe_interval)
                except TimeoutError:
                    # A connection that died silently (a dropped network) shows up here.
                    await asyncio.wait_for(conn.fetchval("SELECT 1"), self._probe_interval)
        finally:
            self._feeds.suspend()
            conn.terminate()

    async def _committed_after(self, seq: int, limit: int) -> list[Committed]:
        """The events after `seq`, in seq order, with the webhooks whose feeds they joined."""
        rows = await self.pool.fetch(
            "SELECT e.seq, e.id, e.account_id, e.type, e.body,"
            f" ARRAY(SELECT f.webhook_id FROM feed f WHERE f.seq = e.seq), {_WATERMARK}"
            " FROM events e WHERE e.seq > $1 ORDER BY e.seq LIMIT $2",
            seq,
            limit,
        )
        if rows:
            # Events pruned before this read are missing from it: no feed may cover them as if they had none.
            self._feeds.pruned_to(int(rows[0][6]))
        return [Committed(StoredEvent(row[0], row[1], row[2], row[3], row[4]), tuple(row[5])) for row in rows]

    # Reads

    async def ping(self) -> None:
        await self.pool.fetchval("SELECT 1")

    async def log_state(self) -> LogState:
        row = await self.pool.fetchrow(
            "SELECT (SELECT seq FROM log_head), (SELECT value FROM meta WHERE key = 'pruned_through')"
        )
        assert row is not None
        return LogState(epoch=self._epoch, head_seq=row[0], pruned_through=int(row[1]))

    # API keys

    async def _create_api_key(self, key_id: str, name: str, key_hash: bytes, prefix: str, created: int) -> ApiKey:
        await self.pool.execute(
            "INSERT INTO api_keys (id, name, key_hash, prefix, created_at) VALUES ($1, $2, $3, $4, $5)",
            key_id,
            name,
            key_hash,
            prefix,
            created,
        )
        return ApiKey(id=key_id, name=name, prefix=prefix, created_at=created, revoked_at=None)

    async def api_key_by_hash(self, key_hash: bytes) -> ApiKey | None:
        row = await self.pool.fetchrow(
            f"SELECT {API_KEY_COLUMNS} FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
            key_hash,
        )
        return api_key_from_row(row) if row is not None else None

    async def list_api_keys(self) -> list[ApiKey]:
        rows = await self.pool.fetch(f"SELECT {API_KEY_COLUMNS} FROM api_keys ORDER BY created_at DESC, id")
        return [api_key_from_row(row) for row in rows]

    async def _revoke_api_key(self, key_id: str, revoked: int) -> ApiKey | None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL", revoked, key_id
            )
            row = await conn.fetchrow(f"SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = $1", key_id)
        return api_key_from_row(row) if row is not None else None

    # Accounts

    async def _create_account(
        self, account_id: str, api_key_id: str, name: str | None, connector: str, created: int
    ) -> Account:
        try:
            await self.pool.execute(
                "INSERT INTO accounts (id, api_key_id, name, connector, created_at) VALUES ($1, $2, $3, $4, $5)",
                account_id,
                api_key_id,
                name,
                connector,
                created,
            )
        except asyncpg.UniqueViolationError:
            raise AccountExists(account_id) from None
        return Account(account_id, api_key_id, name, connector, created, 0)

    async def _get_account(self, account_id: str) -> Account | None:
        row = await self.pool.fetchrow(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts a WHERE a.id = $1", account_id)
        return account_from_row(row) if row is not None else None

    async def _list_accounts(self, api_key_id: str) -> list[Account]:
        rows = await self.pool.fetch(
            f"SELECT {_ACCOUNT_COLUMNS} FROM accounts a WHERE a.api_key_id = $1 ORDER BY a.created_at, a.id",
            api_key_id,
        )
        return [account_from_row(row) for row in rows]

    async def _delete_account(self, account_id: str) -> list[Webhook]:
        async with self.pool.acquire() as conn, conn.transaction():
            # The account row first: it waits for a webhook being created, which the next statement then sees.
            await conn.execute("DELETE FROM accounts WHERE id = $1", account_id)
            rows = await conn.fetch(
                f"DELETE FROM webhooks WHERE account_id = $1 RETURNING {WEBHOOK_COLUMNS}", account_id
            )
            hooks = [_webhook(row) for row in rows]
            await conn.execute("DELETE FROM feed WHERE webhook_id = ANY($1::text[])", [hook.id for hook in hooks])
            await _forget_deliveries(conn, [hook.id for hook in hooks])
            await self._notify_webhook_changed(conn, [hook.id for hook in hooks])
        for hook in hooks:
            self._feeds.forget(hook.id)
        return sorted(hooks, key=lambda hook: (hook.created_at, hook.id))

    # Webhooks

    async def _create_webhook(self, webhook: Webhook) -> WebhookChange:
        async with self.pool.acquire() as conn, conn.transaction():
            # FOR SHARE: the account cannot be deleted under the new webhook.
            if await conn.fetchval("SELECT 1 FROM accounts WHERE id = $1 FOR SHARE", webhook.account_id) is None:
                raise UnknownAccount(webhook.account_id)
            await conn.execute(
                f"INSERT INTO webhooks ({WEBHOOK_COLUMNS}) VALUES ({_placeholders(16)})",
                *webhook_values(webhook, self._encode_filters, self._encode_bool),
            )
            return WebhookChange(webhook, await _active_count(conn, webhook.account_id))

    async def _get_webhook(self, webhook_id: str) -> Webhook | None:
        row = await self.pool.fetchrow(f"SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1", webhook_id)
        return _webhook(row) if row is not None else None

    async def _list_webhooks(self, api_key_id: str, account_id: str | None) -> list[Webhook]:
        if account_id is None:
            rows = await self.pool.fetch(
                f"SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE api_key_id = $1 ORDER BY created_at, id", api_key_id
            )
        else:
            rows = await self.pool.fetch(
                f"SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE api_key_id = $1 AND account_id = $2"
                " ORDER BY created_at, id",
                api_key_id,
                account_id,
            )
        return [_webhook(row) for row in rows]

    async def active_webhooks(self) -> list[Webhook]:
        rows = await self.pool.fetch(f"SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE is_active ORDER BY created_at, id")
        return [_webhook(row) for row in rows]

    async def _update_webhook(self, webhook_id: str, changes: dict[str, object]) -> WebhookChange | None:
        assignments = ", ".join(f"{column} = ${number}" for number, column in enumerate(changes, start=2))
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"UPDATE webhooks SET {assignments} WHERE id = $1 RETURNING {WEBHOOK_COLUMNS}",
                webhook_id,
                *changes.values(),
            )
            if row is None:
                return None
            hook = _webhook(row)
            await self._notify_webhook_changed(conn, [webhook_id])
            return WebhookChange(hook, await _active_count(conn, hook.account_id))

    async def _rotate_secret(
        self, webhook_id: str, secret: str, previous_expires_at: int | None, updated_at: int
    ) -> WebhookChange | None:
        async with self.pool.acquire() as conn, conn.transaction():
            # previous_secret is set from the row's own secret, so a racing rotation never loses one unseen.
            row = await conn.fetchrow(
                "UPDATE webhooks SET previous_secret = CASE WHEN $2::bigint IS NULL THEN NULL ELSE secret END,"
                f" previous_expires_at = $2, secret = $1, updated_at = $3 WHERE id = $4 RETURNING {WEBHOOK_COLUMNS}",
                secret,
                previous_expires_at,
                updated_at,
                webhook_id,
            )
            if row is None:
                return None
            hook = _webhook(row)
            await self._notify_webhook_changed(conn, [webhook_id])
            return WebhookChange(hook, await _active_count(conn, hook.account_id))

    async def _delete_webhook(self, webhook_id: str) -> WebhookChange | None:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(f"DELETE FROM webhooks WHERE id = $1 RETURNING {WEBHOOK_COLUMNS}", webhook_id)
            if row is None:
                return None
            hook = _webhook(row)
            await conn.execute("DELETE FROM feed WHERE webhook_id = $1", webhook_id)
            await _forget_deliveries(conn, [webhook_id])
            await self._notify_webhook_changed(conn, [webhook_id])
            change = WebhookChange(hook, await _active_count(conn, hook.account_id))
        self._feeds.forget(webhook_id)
        return change

    # The log

    async def _append(
        self, account_id: str, events: Sequence[NewEvent], appended_at: int, plan: AppendPlan
    ) -> AppendResult:
        async def job(txn: _Batch) -> AppendResult:
            conn = txn.conn
            # No row locks: a webhook deleted while this runs may keep orphan feed rows, which nobody
            # can read (its id is gone) and retention deletes; locking would make every append wait.
            rows = await conn.fetch(
                "SELECT w.id, w.events FROM accounts a LEFT JOIN webhooks w ON w.account_id = a.id AND w.is_active"
                " WHERE a.id = $1",
                account_id,
            )
            if not rows:
                raise UnknownAccount(account_id)
            hooks = [(row[0], tuple(row[1])) for row in rows if row[0] is not None]
            given = list({e.id for e in events if not e.minted})
            existing: dict[str, tuple[int, str]] = {}
            if given:
                rows = await conn.fetch("SELECT id, seq, account_id FROM events WHERE id = ANY($1::text[])", given)
                existing = {row[0]: (row[1], row[2]) for row in rows}
            result = plan(head=txn.head, existing=existing, hooks=hooks)
            new = [c.event for c in result.committed]
            if new:
                await conn.execute(
                    "INSERT INTO events (seq, id, account_id, type, appended_at, body)"
                    " SELECT s, i, $5, t, $6, b FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bytea[])"
                    " AS n(s, i, t, b)",
                    [e.seq for e in new],
                    [e.id for e in new],
                    [e.type for e in new],
                    [e.body for e in new],
                    account_id,
                    appended_at,
                )
                txn.head = new[-1].seq
            feed = [(hook_id, c.event.seq) for c in result.committed for hook_id in c.webhook_ids]
            if feed:
                await conn.execute(
                    "INSERT INTO feed (webhook_id, seq) SELECT * FROM unnest($1::text[], $2::bigint[])",
                    [hook_id for hook_id, _ in feed],
                    [seq for _, seq in feed],
                )
            txn.committed.extend(result.committed)
            return result

        return await self._write(job)

    async def _read_feed(self, webhook_id: str, after_seq: int, limit: int) -> FeedPage:
        rows = await self.pool.fetch(
            "SELECT e.seq, e.id, e.account_id, e.type, e.body FROM feed f JOIN events e ON e.seq = f.seq"
            " WHERE f.webhook_id = $1 AND f.seq > $2 ORDER BY f.seq LIMIT $3",
            webhook_id,
            after_seq,
            limit + 1,
        )
        events = tuple(StoredEvent._make(row) for row in rows[:limit])
        return FeedPage(events=events, has_more=len(rows) > limit)

    async def read_feed_joined(self, webhook_id: str, after_seq: int, limit: int) -> JoinedPage:
        if unstorable(webhook_id):  # the guard of `Backend`, here to spare polling a coroutine
            return JoinedPage(b"", 0, None, False, (await self.log_state()).pruned_through)
        # Within what this process has heard of every commit: no round trip at all.
        page = self._feeds.page(webhook_id, after_seq, limit)
        if page is not None:
            return page
        bodies, feeds = self._bodies, self._feeds
        recent = bodies.holds_recent(after_seq, self._catch_up.published_seq)
        mark = feeds.mark()
        if recent and feeds.live:
            covered_after = feeds.covered_after(webhook_id)
            if after_seq < covered_after:
                # A recent cursor below what memory covers: read the feed's seqs up to there once (no bodies),
                # and this page and the ones after it come from memory.
                found = await self.pool.fetchrow(_BRIDGE, webhook_id, after_seq, covered_after)
                assert found is not None
                feeds.learned(mark, webhook_id, after_seq, found[0], covered_after, found[1], int(found[2]))
                page = feeds.page(webhook_id, after_seq, limit)
                if page is not None:
                    return page
            # Memory has the page's seqs but not all their bodies: the full read below keeps them.
        elif recent:
            # Near the head: the page's seqs, has-more and watermark in one round trip, bodies from memory.
            found = await self.pool.fetchrow(_RECENT_PAGE, webhook_id, after_seq, limit)
            assert found is not None  # an aggregate always returns its row
            count, first, last, head, pruned = found
            if not count:
                feeds.learned(mark, webhook_id, after_seq, (), head, head, int(pruned))
                return JoinedPage(b"", 0, None, False, int(pruned))
            seqs = gapless_seqs(count, first, last, limit)
            if seqs is not None:
                joined = bodies.joined(seqs)
                if joined is not None:
                    read = range(first, last + 1)
                    feeds.learned(mark, webhook_id, after_seq, read, last if count > limit else head, head, int(pruned))
                    return JoinedPage(joined, len(seqs), seqs[-1], count > limit, int(pruned))
        rows = await self.pool.fetch(_FULL_PAGE, webhook_id, after_seq, limit)
        head, pruned = rows[0][2], int(rows[0][3])
        if rows[0][0] is None:
            rows = []
        page_rows = rows[:limit]
        if recent:
            bodies.add_many((row[0], row[1]) for row in page_rows)
        read_seqs = [row[0] for row in rows]
        feeds.learned(
            mark, webhook_id, after_seq, read_seqs, read_seqs[-1] if len(rows) > limit else head, head, pruned
        )
        return JoinedPage(
            joined=b",".join([row[1] for row in page_rows]),
            count=len(page_rows),
            last_seq=page_rows[-1][0] if page_rows else None,
            has_more=len(rows) > limit,
            pruned_through=pruned,
        )

    async def prune(self, older_than: int, batch_size: int) -> int:
        # Most passes find nothing due: say so from one row, without a transaction that scans a batch.
        oldest = await self.pool.fetchval("SELECT appended_at FROM events ORDER BY seq LIMIT 1")
        if oldest is None or oldest >= older_than:
            return 0
        async with self.pool.acquire() as conn, conn.transaction():
            # One pruner at a time cluster-wide; the others find nothing to do this round.
            if not await conn.fetchval(
                "SELECT pg_try_advisory_xact_lock($1)", _lock_key(f"hookstream-prune:{self.schema}")
            ):
                return 0
            rows = await conn.fetch("SELECT seq, appended_at FROM events ORDER BY seq LIMIT $1", batch_size)
            through, count = prune_cutoff(rows, older_than)
            if count == 0:
                return 0
            await conn.execute("DELETE FROM feed WHERE seq <= $1", through)
            await conn.execute("DELETE FROM events WHERE seq <= $1", through)
            await conn.execute("DELETE FROM deliveries WHERE seq <= $1", through)
            await conn.execute("DELETE FROM delivery_attempts WHERE created_at < $1", older_than)
            await conn.execute(
                "UPDATE meta SET value = greatest(value::bigint, $1)::text WHERE key = 'pruned_through'", through
            )
            await conn.execute("SELECT pg_notify($1, $2)", self.channel, f"{_PRUNED}{through}")
        self._feeds.pruned_to(through)
        return count

    # Custom-mode delivery

    async def _delivery_state(self, webhook_id: str) -> DeliveryState:
        row = await self.pool.fetchrow(
            "SELECT cursor_seq, failing_since, breaker_from FROM delivery_state WHERE webhook_id = $1", webhook_id
        )
        return DeliveryState(*row) if row is not None else DeliveryState(0, None)

    async def _due_deliveries(self, webhook_id: str, now: int, limit: int) -> list[PendingDelivery]:
        rows = await self.pool.fetch(
            "SELECT e.seq, e.id, e.account_id, e.type, e.body, d.attempts, d.next_attempt_at, d.first_attempt_at"
            " FROM deliveries d JOIN events e ON e.seq = d.seq"
            " WHERE d.webhook_id = $1 AND d.next_attempt_at <= $2 ORDER BY d.seq LIMIT $3",
            webhook_id,
            now,
            limit,
        )
        return [PendingDelivery(StoredEvent(*row[:5]), row[5], row[6], row[7]) for row in rows]

    async def _next_delivery_due(self, webhook_id: str) -> int | None:
        due: int | None = await self.pool.fetchval(
            "SELECT min(next_attempt_at) FROM deliveries WHERE webhook_id = $1", webhook_id
        )
        return due

    async def _record_attempt(
        self, attempt: DeliveryAttempt, from_cursor: int | None, next_attempt_at: int | None
    ) -> bool:
        key = (attempt.webhook_id, attempt.seq)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                f"INSERT INTO delivery_attempts ({ATTEMPT_COLUMNS}) VALUES ({_placeholders(11)})",
                *attempt_values(attempt),
            )
            if from_cursor is None:
                if attempt.outcome == "retrying":
                    await conn.execute(
                        "UPDATE deliveries SET attempts = $1, next_attempt_at = $2 WHERE webhook_id = $3 AND seq = $4",
                        attempt.attempt,
                        next_attempt_at,
                        *key,
                    )
                else:
                    await conn.execute("DELETE FROM deliveries WHERE webhook_id = $1 AND seq = $2", *key)
                return True
            await conn.execute(
                "INSERT INTO delivery_state (webhook_id) VALUES ($1) ON CONFLICT DO NOTHING", attempt.webhook_id
            )
            # Compare and set: a recover that moved the cursor meanwhile wins.
            moved = await conn.fetchval(
                "UPDATE delivery_state SET cursor_seq = $1 WHERE webhook_id = $2 AND cursor_seq = $3 RETURNING 1",
                attempt.seq,
                attempt.webhook_id,
                from_cursor,
            )
            if moved is None:
                return False
            if attempt.outcome == "retrying":
                await conn.execute(
                    "INSERT INTO deliveries (webhook_id, seq, attempts, next_attempt_at, first_attempt_at)"
                    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (webhook_id, seq) DO UPDATE SET"
                    " attempts = excluded.attempts, next_attempt_at = excluded.next_attempt_at,"
                    " first_attempt_at = excluded.first_attempt_at",
                    *key,
                    attempt.attempt,
                    next_attempt_at,
                    attempt.created_at,
                )
            return True

    async def _list_attempts(
        self, webhook_id: str, before_id: int | None, limit: int, outcome: str | None
    ) -> list[DeliveryAttempt]:
        rows = await self.pool.fetch(
            f"SELECT {ATTEMPT_COLUMNS}, id FROM delivery_attempts"
            " WHERE webhook_id = $1 AND id < $2 AND ($4::text IS NULL OR outcome = $4) ORDER BY id DESC LIMIT $3",
            webhook_id,
            before_id if before_id is not None else NO_ATTEMPT_ID,
            limit,
            outcome,
        )
        return [DeliveryAttempt(*row) for row in rows]

    async def _undelivered(self, webhook_id: str, after_seq: int, limit: int) -> list[Undelivered]:
        rows = await self.pool.fetch(_UNDELIVERED, webhook_id, after_seq, limit)
        return [undelivered_from_row(row) for row in rows]

    async def _feed_seq_before(self, webhook_id: str, appended_before: int) -> int:
        seq: int = await self.pool.fetchval(
            "SELECT coalesce(max(f.seq), 0) FROM feed f JOIN events e ON e.seq = f.seq"
            " WHERE f.webhook_id = $1 AND e.appended_at < $2",
            webhook_id,
            appended_before,
        )
        return seq

    async def _attempt_counts(self, webhook_id: str, since: int) -> tuple[int, int]:
        row = await self.pool.fetchrow(
            "SELECT count(*), count(*) FILTER (WHERE outcome <> 'delivered') FROM delivery_attempts"
            " WHERE webhook_id = $1 AND created_at >= $2",
            webhook_id,
            since,
        )
        assert row is not None
        return int(row[0]), int(row[1])

    async def _set_failing_since(self, webhook_id: str, failing_since: int | None) -> None:
        await self.pool.execute(
            "INSERT INTO delivery_state (webhook_id, failing_since) VALUES ($1, $2)"
            " ON CONFLICT (webhook_id) DO UPDATE SET failing_since = excluded.failing_since",
            webhook_id,
            failing_since,
        )

    async def _restart_breaker(self, webhook_id: str, at: int) -> None:
        await self.pool.execute(
            "INSERT INTO delivery_state (webhook_id, breaker_from) VALUES ($1, $2)"
            " ON CONFLICT (webhook_id) DO UPDATE SET failing_since = NULL, breaker_from = excluded.breaker_from",
            webhook_id,
            at,
        )

    async def _recover_deliveries(self, webhook_id: str, after_seq: int) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                # A fresh state's cursor is 0, and a recover never moves a cursor forward.
                "INSERT INTO delivery_state (webhook_id) VALUES ($1)"
                " ON CONFLICT (webhook_id) DO UPDATE SET cursor_seq = least(delivery_state.cursor_seq, $2)",
                webhook_id,
                after_seq,
            )
            # Those after the cursor come again through the feed, from their first attempt.
            await conn.execute("DELETE FROM deliveries WHERE webhook_id = $1 AND seq > $2", webhook_id, after_seq)

    # Monitors and metering. SQLite serializes these through its one writer; here row locks do:
    # the lease row is taken with a conditional upsert, which re-checks its condition under the lock.

    async def _start_monitor(
        self, account_id: str, api_key_id: str, owner: str, at: int, lease_now: int, lease_until: int
    ) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            taken = await conn.fetchval(
                "INSERT INTO monitor_leases AS l (account_id, owner, expires_at, status, reason)"
                " VALUES ($1, $2, $3, 'running', NULL) ON CONFLICT (account_id) DO UPDATE SET"
                " owner = excluded.owner, expires_at = excluded.expires_at, status = 'running', reason = NULL"
                " WHERE l.owner = excluded.owner OR l.expires_at <= $4 RETURNING 1",
                account_id,
                owner,
                lease_until,
                lease_now,
            )
            if taken is None:
                return False
            # A holder that died left its interval open: it ends at the last time we know it ran.
            await conn.execute(
                "UPDATE monitor_intervals SET stopped_at = checkpoint_at"
                " WHERE account_id = $1 AND stopped_at IS NULL AND owner <> $2",
                account_id,
                owner,
            )
            await conn.execute(
                "INSERT INTO monitor_intervals (account_id, api_key_id, owner, started_at, checkpoint_at)"
                " SELECT $1, $2, $3, $4, $4 WHERE NOT EXISTS (SELECT 1 FROM monitor_intervals"
                " WHERE account_id = $1 AND stopped_at IS NULL AND owner = $3)",
                account_id,
                api_key_id,
                owner,
                at,
            )
            return True

    async def _checkpoint_monitors(self, owner: str, at: int, lease_until: int) -> set[str]:
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "UPDATE monitor_leases SET expires_at = $1 WHERE owner = $2 RETURNING account_id", lease_until, owner
            )
            await conn.execute(
                "UPDATE monitor_intervals SET checkpoint_at = greatest(checkpoint_at, $1)"
                " WHERE owner = $2 AND stopped_at IS NULL",
                at,
                owner,
            )
        return {row[0] for row in rows}

    async def _stop_monitor(self, account_id: str, owner: str, at: int) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE monitor_intervals SET stopped_at = greatest(checkpoint_at, $1),"
                " checkpoint_at = greatest(checkpoint_at, $1)"
                " WHERE account_id = $2 AND owner = $3 AND stopped_at IS NULL",
                at,
                account_id,
                owner,
            )
            await conn.execute("DELETE FROM monitor_leases WHERE account_id = $1 AND owner = $2", account_id, owner)

    async def _set_monitor_status(self, account_id: str, owner: str, status: str, reason: str | None) -> None:
        await self.pool.execute(
            "UPDATE monitor_leases SET status = $1, reason = $2 WHERE account_id = $3 AND owner = $4",
            status,
            reason,
            account_id,
            owner,
        )

    async def _monitor_lease(self, account_id: str) -> MonitorLease | None:
        row = await self.pool.fetchrow(
            f"SELECT {LEASE_COLUMNS} FROM monitor_leases WHERE account_id = $1",
            account_id,
        )
        return MonitorLease(*row) if row is not None else None

    async def close_stale_intervals(self, lease_now: int) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            closed = await conn.fetch(
                "UPDATE monitor_intervals i SET stopped_at = checkpoint_at WHERE stopped_at IS NULL AND NOT EXISTS"
                " (SELECT 1 FROM monitor_leases l WHERE l.account_id = i.account_id"
                " AND l.owner = i.owner AND l.expires_at > $1) RETURNING 1",
                lease_now,
            )
            await conn.execute("DELETE FROM monitor_leases WHERE expires_at <= $1", lease_now)
        return len(closed)

    async def _monitor_intervals(self, account_id: str, api_key_id: str) -> list[MonitorInterval]:
        rows = await self.pool.fetch(
            f"SELECT {INTERVAL_COLUMNS} FROM monitor_intervals WHERE account_id = $1 AND api_key_id = $2 ORDER BY id",
            account_id,
            api_key_id,
        )
        return [MonitorInterval(*row) for row in rows]


async def _active_count(conn: Connection, account_id: str) -> int:
    count = await conn.fetchval("SELECT count(*) FROM webhooks WHERE account_id = $1 AND is_active", account_id)
    return int(count)


async def _forget_deliveries(conn: Connection, webhook_ids: list[str]) -> None:
    for table in ("delivery_state", "deliveries", "delivery_attempts"):
        await conn.execute(f"DELETE FROM {table} WHERE webhook_id = ANY($1::text[])", webhook_ids)
