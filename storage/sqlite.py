"""The SQLite backend: one writer with group commit, a pool of readers.

SQLite allows one writer at a time, so this process owns a single write
connection and every write is a job on one queue. The writer takes every job
waiting, runs them in one `BEGIN IMMEDIATE` transaction (each job inside its
own savepoint, so one job's error undoes only that job) and commits once:
concurrent ingests share one fsync instead of paying one each. A job's
caller is answered only after that commit, so a 201 means durable.

Readers use their own connections; in WAL mode they read the last committed
snapshot and never wait for the writer.

Several processes may share the file (`WEB_CONCURRENCY`). SQLite's write lock then
serializes their transactions, and each transaction reads the head seq after taking
it, so seqs stay one gap-free sequence in commit order. Each process learns of the
others' commits from a datagram (storage/_wake.py) and reads them from the file
(storage/_catchup.py), as a PostgreSQL process does on NOTIFY.

Every connection is a plain sqlite3 connection owned by one thread, and work is
sent to it as a function (datasette's shape): a whole group transaction, or a
whole read, is one trip to a thread and back. The event loop never blocks on
SQLite, and never pays a thread hop per statement as a per-call async wrapper
such as aiosqlite would (which measured at over half of a poll's time).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from storage._backend import AppendPlan, Backend
from storage._bodies import RecentBodies, gapless_seqs
from storage._catchup import CatchUp
from storage._clock import now_micros
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
from storage._unavailable import guarded
from storage._wake import WakeChannel
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
from storage.migrations import SQLITE_MIGRATIONS, pending_migrations

T = TypeVar("T")
Job = Callable[["_Transaction"], T]

# SQLite's default limit on host parameters in one statement is 999 on old builds.
_MAX_PARAMS = 900
# Rows per multi-row INSERT: 128 events are 768 parameters, under SQLite's older limit of 999.
_INSERT_CHUNK = 128
_ACCOUNT_COLUMNS = (
    "a.id, a.api_key_id, a.name, a.connector, a.created_at, "
    "(SELECT count(*) FROM webhooks w WHERE w.account_id = a.id AND w.is_active = 1)"
)


# Before 3.44 an aggregate cannot be ordered explicitly; it then takes the rows in the order the
# ordered subquery yields them (the pagination tests hold it to that).
_IN_ORDER = " ORDER BY s" if sqlite3.sqlite_version_info >= (3, 44) else ""

# A page older than the recent bodies in memory, joined by SQLite, with whether more follow and the
# retention watermark, all from one snapshot.
_WATERMARK = "(SELECT value FROM meta WHERE key = 'pruned_through')"
_JOINED_PAGE = (
    f"SELECT count(*), max(s), CAST(group_concat(b, ','{_IN_ORDER}) AS BLOB),"
    f" (SELECT 1 FROM feed WHERE webhook_id = ?1 AND seq > ?2 ORDER BY seq LIMIT 1 OFFSET ?3), {_WATERMARK}"
    " FROM (SELECT f.seq AS s, e.body AS b FROM feed f JOIN events e ON e.seq = f.seq"
    " WHERE f.webhook_id = ?1 AND f.seq > ?2 ORDER BY f.seq LIMIT ?3)"
)

# A page near the head as its feed seqs, read one past the limit (so "has more" costs no second scan),
# with the retention watermark of the same snapshot; the bodies then come from `RecentBodies`. A page
# without gaps (every webhook without a filter) is told by its ends; `_SPARSE_PAGE` spells out the others.
_NEXT_SEQS = "FROM (SELECT seq AS s FROM feed WHERE webhook_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3 + 1)"
_RECENT_PAGE = f"SELECT count(*), min(s), max(s), {_WATERMARK} {_NEXT_SEQS}"
_SPARSE_PAGE = f"SELECT group_concat(s{_IN_ORDER}), {_WATERMARK} {_NEXT_SEQS}"

# Events after a seq with the feeds they joined, for commits of other processes: a feed row is found
# through its account's webhooks, by the (webhook_id, seq) key, since no index orders feed by seq.
_COMMITTED_AFTER = (
    "SELECT e.seq, e.id, e.account_id, e.type, e.body, (SELECT group_concat(f.webhook_id)"
    " FROM webhooks w JOIN feed f ON f.webhook_id = w.id AND f.seq = e.seq WHERE w.account_id = e.account_id)"
    " FROM events e WHERE e.seq > ? ORDER BY e.seq LIMIT ?"
)
# How often a process looks for commits it was not woken for: a safety net behind the datagrams,
# and the only wake-up where they cannot be used.
_HEAD_CHECK_SECONDS = 1.0
_HEAD_CHECK_WITHOUT_WAKE_SECONDS = 0.05

_FEED_BODIES = (
    "SELECT f.seq, e.body FROM feed f JOIN events e ON e.seq = f.seq"
    " WHERE f.webhook_id = ? AND f.seq > ? ORDER BY f.seq LIMIT ?"
)


# Result codes that mean the file cannot take a write now (a full disk, an I/O error, a lock held
# past busy_timeout), not a bug or a refused row: the write is answered 503 and may be retried.
_UNAVAILABLE_CODES = frozenset(
    {
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_PROTOCOL,
        sqlite3.SQLITE_READONLY,
    }
)


def _unavailable(exc: BaseException) -> bool:
    """Whether `exc` says the database file cannot take the call now."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        return code is not None and code & 0xFF in _UNAVAILABLE_CODES
    return isinstance(exc, OSError)


@functools.lru_cache(maxsize=4096)
def _filters(text: str) -> tuple[str, ...]:
    return tuple(orjson.loads(text))


# Feed events after a seq with no delivered attempt: attempts made, the last status, when due, and
# whether the cursor has not reached them yet (queued for a first attempt).
_UNDELIVERED = (
    "SELECT f.seq, e.id, e.type,"
    " (SELECT count(*) FROM delivery_attempts a WHERE a.webhook_id = ?1 AND a.seq = f.seq),"
    " (SELECT a.status_code FROM delivery_attempts a WHERE a.webhook_id = ?1 AND a.seq = f.seq"
    "  ORDER BY a.id DESC LIMIT 1),"
    " d.next_attempt_at,"
    " f.seq > coalesce((SELECT cursor_seq FROM delivery_state WHERE webhook_id = ?1), 0)"
    " FROM feed f JOIN events e ON e.seq = f.seq"
    " LEFT JOIN deliveries d ON d.webhook_id = ?1 AND d.seq = f.seq"
    " WHERE f.webhook_id = ?1 AND f.seq > ?2 AND NOT EXISTS (SELECT 1 FROM delivery_attempts a"
    "  WHERE a.webhook_id = ?1 AND a.seq = f.seq AND a.outcome = 'delivered')"
    " ORDER BY f.seq LIMIT ?3"
)


def _webhook(row: sqlite3.Row | tuple[Any, ...]) -> Webhook:
    return webhook_from_row(row, _filters(row[5]))


def _chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class _Transaction:
    """The write connection inside the current group transaction."""

    conn: sqlite3.Connection
    committed: list[Committed] = field(default_factory=list)
    # The newest seq inside this transaction, read once per batch: the write lock keeps it ours.
    head: int | None = None


class SQLiteStorage(Backend):
    """The default backend: a single SQLite file in WAL mode."""

    def __init__(
        self,
        path: str,
        *,
        matcher: FeedMatcher,
        readers: int = 2,
        synchronous: str = "FULL",
        max_batch: int = 256,
        event_cache_bytes: int = 64 << 20,
    ) -> None:
        super().__init__(matcher)
        self.path = path
        self._synchronous = synchronous
        self._writer: sqlite3.Connection | None = None
        self._writer_thread: ThreadPoolExecutor | None = None
        self._readers = _ReadPool(path, readers, self._pragmas())
        self._catch_up = CatchUp(self._committed_after, self._publish, name="hookstream-sqlite-catch-up")
        self._wake = WakeChannel(path)
        self._queue: GroupCommit[Job[Any]] = GroupCommit(
            self._run_batch,
            self._committed_here,
            max_batch=max_batch,
            name="hookstream-sqlite-writer",
            unavailable=_unavailable,
        )
        self._head_check: asyncio.Task[None] | None = None
        self._epoch = ""
        self._bodies = RecentBodies(event_cache_bytes)

    @staticmethod
    def _encode_filters(events: tuple[str, ...]) -> str:
        return orjson.dumps(events).decode()

    @staticmethod
    def _encode_bool(value: bool) -> int:
        return int(value)

    # Lifecycle

    async def open(self) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        self._writer_thread = ThreadPoolExecutor(1, thread_name_prefix="hookstream-sqlite-writer")
        self._writer = await self._on_writer(self._connect_writer)
        self._readers.open()
        rows = await self._readers.query("SELECT value FROM meta WHERE key = 'epoch'")
        self._epoch = rows[0][0]
        self._catch_up.start((await self.log_state()).head_seq)
        woken = self._wake.open(self._catch_up.heard, self._heard_webhook_change)
        interval = _HEAD_CHECK_SECONDS if woken else _HEAD_CHECK_WITHOUT_WAKE_SECONDS
        self._head_check = asyncio.create_task(self._check_head_forever(interval), name="hookstream-sqlite-head")
        self._queue.start()

    async def close(self) -> None:
        await self._queue.stop()
        if self._head_check is not None:
            self._head_check.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._head_check
            self._head_check = None
        self._wake.close()
        await self._catch_up.stop()
        self._readers.close()
        if self._writer is not None:
            await self._on_writer(self._writer.close)
            self._writer = None
        if self._writer_thread is not None:
            self._writer_thread.shutdown(wait=True)
            self._writer_thread = None

    def _pragmas(self) -> tuple[str, ...]:
        return (
            "PRAGMA busy_timeout=10000",
            f"PRAGMA synchronous={self._synchronous}",
            "PRAGMA cache_size=-32000",
            "PRAGMA temp_store=MEMORY",
            # Pages come from the OS cache without a read() each: a random page of a 10M-event log
            # then costs what one of a 10k-event log does.
            "PRAGMA mmap_size=8589934592",
        )

    async def _on_writer(self, work: Callable[[], T]) -> T:
        """Run `work` on the writer's own thread, where its connection lives."""
        assert self._writer_thread is not None
        return await asyncio.get_running_loop().run_in_executor(self._writer_thread, work)

    def _connect_writer(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        for pragma in self._pragmas():
            conn.execute(pragma)
        _use_wal(conn)
        _migrate(conn)
        return conn

    # Reads and writes

    async def _write(self, job: Job[T]) -> T:
        result: T = await self._queue.submit(job)
        return result

    async def _run_batch(self, batch: list[Pending[Job[Any]]]) -> tuple[list[Outcome], list[Committed]]:
        assert self._writer is not None
        return await self._on_writer(functools.partial(_run_transaction, self._writer, batch))

    def _committed_here(self, committed: list[Committed]) -> None:
        self._catch_up.committed_here(committed)
        self._wake.notify(committed[-1].event.seq)

    def _publish(self, committed: list[Committed]) -> None:
        announce(committed, self._bodies, self._notifiers)

    def _tell_webhook_changed(self, webhook_id: str) -> None:
        self._wake.notify_webhook(webhook_id)

    async def _committed_after(self, seq: int, limit: int) -> list[Committed]:
        """The events after `seq`, in seq order, with the webhooks whose feeds they joined."""

        def read(conn: sqlite3.Connection) -> list[Committed]:
            rows = conn.execute(_COMMITTED_AFTER, (seq, limit)).fetchall()
            return [
                Committed(
                    StoredEvent(row[0], row[1], row[2], row[3], row[4]), tuple(row[5].split(",")) if row[5] else ()
                )
                for row in rows
            ]

        return await self._readers.run(read)

    async def _check_head_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self._catch_up.behind()

    async def ping(self) -> None:
        await self._readers.query("SELECT 1")

    async def log_state(self) -> LogState:
        rows = await self._readers.query(
            "SELECT (SELECT seq FROM sqlite_sequence WHERE name = 'events'),"
            " (SELECT value FROM meta WHERE key = 'pruned_through')"
        )
        head, pruned = rows[0]
        return LogState(epoch=self._epoch, head_seq=head or 0, pruned_through=int(pruned))

    # API keys

    async def _create_api_key(self, key_id: str, name: str, key_hash: bytes, prefix: str, created: int) -> ApiKey:

        def job(txn: _Transaction) -> ApiKey:
            txn.conn.execute(
                "INSERT INTO api_keys (id, name, key_hash, prefix, created_at) VALUES (?, ?, ?, ?, ?)",
                (key_id, name, key_hash, prefix, created),
            )
            return ApiKey(id=key_id, name=name, prefix=prefix, created_at=created, revoked_at=None)

        return await self._write(job)

    async def api_key_by_hash(self, key_hash: bytes) -> ApiKey | None:
        rows = await self._readers.query(
            f"SELECT {API_KEY_COLUMNS} FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL",
            (key_hash,),
        )
        return api_key_from_row(rows[0]) if rows else None

    async def list_api_keys(self) -> list[ApiKey]:
        rows = await self._readers.query(f"SELECT {API_KEY_COLUMNS} FROM api_keys ORDER BY created_at DESC, id")
        return [api_key_from_row(row) for row in rows]

    async def _revoke_api_key(self, key_id: str, revoked: int) -> ApiKey | None:

        def job(txn: _Transaction) -> ApiKey | None:
            txn.conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (revoked, key_id)
            )
            rows = _rows(txn.conn, f"SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = ?", (key_id,))
            return api_key_from_row(rows[0]) if rows else None

        return await self._write(job)

    # Accounts

    async def _create_account(
        self, account_id: str, api_key_id: str, name: str | None, connector: str, created: int
    ) -> Account:

        def job(txn: _Transaction) -> Account:
            try:
                txn.conn.execute(
                    "INSERT INTO accounts (id, api_key_id, name, connector, created_at) VALUES (?, ?, ?, ?, ?)",
                    (account_id, api_key_id, name, connector, created),
                )
            except sqlite3.IntegrityError:
                raise AccountExists(account_id) from None
            return Account(account_id, api_key_id, name, connector, created, 0)

        return await self._write(job)

    async def _get_account(self, account_id: str) -> Account | None:
        rows = await self._readers.query(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts a WHERE a.id = ?", (account_id,))
        return account_from_row(rows[0]) if rows else None

    async def _list_accounts(self, api_key_id: str) -> list[Account]:
        rows = await self._readers.query(
            f"SELECT {_ACCOUNT_COLUMNS} FROM accounts a WHERE a.api_key_id = ? ORDER BY a.created_at, a.id",
            (api_key_id,),
        )
        return [account_from_row(row) for row in rows]

    async def _delete_account(self, account_id: str) -> list[Webhook]:

        def job(txn: _Transaction) -> list[Webhook]:
            rows = _rows(txn.conn, f"SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE account_id = ?", (account_id,))
            hooks = [_webhook(row) for row in rows]
            txn.conn.executemany("DELETE FROM feed WHERE webhook_id = ?", [(h.id,) for h in hooks])
            _forget_deliveries(txn.conn, [h.id for h in hooks])
            txn.conn.execute("DELETE FROM webhooks WHERE account_id = ?", (account_id,))
            txn.conn.execute("DELETE FROM accounts WHERE id = ?", (account_id,))
            return hooks

        return await self._write(job)

    # Webhooks

    async def _create_webhook(self, webhook: Webhook) -> WebhookChange:

        def job(txn: _Transaction) -> WebhookChange:
            found = _rows(txn.conn, "SELECT 1 FROM accounts WHERE id = ?", (webhook.account_id,))
            if not list(found):
                raise UnknownAccount(webhook.account_id)
            txn.conn.execute(
                f"INSERT INTO webhooks ({WEBHOOK_COLUMNS}) VALUES ({', '.join('?' * 16)})",
                webhook_values(webhook, self._encode_filters, self._encode_bool),
            )
            return WebhookChange(webhook, _active_count(txn.conn, webhook.account_id))

        return await self._write(job)

    async def _get_webhook(self, webhook_id: str) -> Webhook | None:
        rows = await self._readers.query(f"SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = ?", (webhook_id,))
        return _webhook(rows[0]) if rows else None

    async def _list_webhooks(self, api_key_id: str, account_id: str | None) -> list[Webhook]:
        sql = f"SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE api_key_id = ?"
        params: tuple[str, ...] = (api_key_id,)
        if account_id is not None:
            sql += " AND account_id = ?"
            params += (account_id,)
        rows = await self._readers.query(sql + " ORDER BY created_at, id", params)
        return [_webhook(row) for row in rows]

    async def active_webhooks(self) -> list[Webhook]:
        rows = await self._readers.query(
            f"SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE is_active = 1 ORDER BY created_at, id"
        )
        return [_webhook(row) for row in rows]

    async def _update_webhook(self, webhook_id: str, changes: dict[str, object]) -> WebhookChange | None:
        assignments = ", ".join(f"{column} = ?" for column in changes)

        def job(txn: _Transaction) -> WebhookChange | None:
            cursor = txn.conn.execute(
                f"UPDATE webhooks SET {assignments} WHERE id = ?", (*changes.values(), webhook_id)
            )
            if cursor.rowcount == 0:
                return None
            rows = list(_rows(txn.conn, f"SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = ?", (webhook_id,)))
            hook = _webhook(rows[0])
            return WebhookChange(hook, _active_count(txn.conn, hook.account_id))

        return await self._write(job)

    async def _rotate_secret(
        self, webhook_id: str, secret: str, previous_expires_at: int | None, updated_at: int
    ) -> WebhookChange | None:

        def job(txn: _Transaction) -> WebhookChange | None:
            # previous_secret is set from the row's own secret, so a racing rotation never loses one unseen.
            cursor = txn.conn.execute(
                "UPDATE webhooks SET previous_secret = CASE WHEN ?2 IS NULL THEN NULL ELSE secret END,"
                " previous_expires_at = ?2, secret = ?1, updated_at = ?3 WHERE id = ?4",
                (secret, previous_expires_at, updated_at, webhook_id),
            )
            if cursor.rowcount == 0:
                return None
            rows = list(_rows(txn.conn, f"SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = ?", (webhook_id,)))
            hook = _webhook(rows[0])
            return WebhookChange(hook, _active_count(txn.conn, hook.account_id))

        return await self._write(job)

    async def _delete_webhook(self, webhook_id: str) -> WebhookChange | None:

        def job(txn: _Transaction) -> WebhookChange | None:
            rows = list(_rows(txn.conn, f"SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = ?", (webhook_id,)))
            if not rows:
                return None
            hook = _webhook(rows[0])
            txn.conn.execute("DELETE FROM feed WHERE webhook_id = ?", (webhook_id,))
            _forget_deliveries(txn.conn, [webhook_id])
            txn.conn.execute("DELETE FROM webhooks WHERE id = ?", (webhook_id,))
            return WebhookChange(hook, _active_count(txn.conn, hook.account_id))

        return await self._write(job)

    # The log

    async def _append(
        self, account_id: str, events: Sequence[NewEvent], appended_at: int, plan: AppendPlan
    ) -> AppendResult:

        def job(txn: _Transaction) -> AppendResult:
            conn = txn.conn
            rows = _rows(
                conn,
                "SELECT w.id, w.events FROM accounts a"
                " LEFT JOIN webhooks w ON w.account_id = a.id AND w.is_active = 1 WHERE a.id = ?",
                (account_id,),
            )
            if not rows:
                raise UnknownAccount(account_id)
            hooks = [(row[0], _filters(row[1])) for row in rows if row[0] is not None]
            existing: dict[str, tuple[int, str]] = {}
            ids = list({event.id for event in events if not event.minted})
            for chunk in _chunks(ids, _MAX_PARAMS):
                marks = ",".join("?" * len(chunk))
                found = _rows(conn, f"SELECT id, seq, account_id FROM events WHERE id IN ({marks})", chunk)
                existing.update((row[0], (row[1], row[2])) for row in found)
            if txn.head is None:
                head_rows = _rows(conn, "SELECT seq FROM sqlite_sequence WHERE name = 'events'")
                txn.head = head_rows[0][0] if head_rows else 0
            result = plan(head=txn.head, existing=existing, hooks=hooks)
            if result.committed:
                _insert_rows(
                    conn,
                    "INSERT INTO events (seq, id, account_id, type, appended_at, body) VALUES ",
                    6,
                    [
                        (c.event.seq, c.event.id, account_id, c.event.type, appended_at, c.event.body)
                        for c in result.committed
                    ],
                )
                feed_rows = [(hook_id, c.event.seq) for c in result.committed for hook_id in c.webhook_ids]
                _insert_rows(conn, "INSERT INTO feed (webhook_id, seq) VALUES ", 2, feed_rows)
            if result.committed:
                txn.head = result.committed[-1].event.seq
            txn.committed.extend(result.committed)
            return result

        return await self._write(job)

    async def _read_feed(self, webhook_id: str, after_seq: int, limit: int) -> FeedPage:

        def read(conn: sqlite3.Connection) -> FeedPage:
            rows = conn.execute(
                "SELECT e.seq, e.id, e.account_id, e.type, e.body FROM feed f JOIN events e ON e.seq = f.seq"
                " WHERE f.webhook_id = ? AND f.seq > ? ORDER BY f.seq LIMIT ?",
                (webhook_id, after_seq, limit + 1),
            ).fetchall()
            # Built on the reader thread, so the event loop only receives the finished page.
            return FeedPage(events=tuple(map(StoredEvent._make, rows[:limit])), has_more=len(rows) > limit)

        return await self._readers.run(read)

    async def read_feed_joined(self, webhook_id: str, after_seq: int, limit: int) -> JoinedPage:
        if unstorable(webhook_id):  # the guard of `Backend`, here to spare polling a coroutine
            return JoinedPage(b"", 0, None, False, (await self.log_state()).pruned_through)
        bodies = self._bodies
        if bodies.holds_recent(after_seq, self._catch_up.published_seq):
            page, read_rows = await self._readers.run(
                functools.partial(_recent_page, bodies, webhook_id, after_seq, limit)
            )
            if page is not None:
                # Added here, on the loop, never from a reader thread.
                bodies.add_many(read_rows)
                return page

        def read(conn: sqlite3.Connection) -> JoinedPage:
            # SQLite joins the bodies itself: one row comes back instead of one per event.
            count, last, joined, more, pruned = conn.execute(_JOINED_PAGE, (webhook_id, after_seq, limit)).fetchone()
            return JoinedPage(
                joined=joined or b"", count=count, last_seq=last, has_more=bool(more), pruned_through=int(pruned)
            )

        return await self._readers.run(read)

    async def prune(self, older_than: int, batch_size: int) -> int:
        # Most passes find nothing due: say so from one row, without a write transaction that scans a batch.
        oldest = await self._readers.query("SELECT appended_at FROM events ORDER BY seq LIMIT 1")
        if not oldest or oldest[0][0] >= older_than:
            return 0

        def job(txn: _Transaction) -> int:
            conn = txn.conn
            rows = _rows(conn, "SELECT seq, appended_at FROM events ORDER BY seq LIMIT ?", (batch_size,))
            through, count = prune_cutoff(rows, older_than)
            if count == 0:
                return 0
            hooks = _rows(conn, "SELECT id FROM webhooks")
            conn.executemany("DELETE FROM feed WHERE webhook_id = ? AND seq <= ?", [(row[0], through) for row in hooks])
            conn.execute("DELETE FROM events WHERE seq <= ?", (through,))
            conn.execute("DELETE FROM deliveries WHERE seq <= ?", (through,))
            conn.execute("DELETE FROM delivery_attempts WHERE created_at < ?", (older_than,))
            conn.execute("UPDATE meta SET value = ? WHERE key = 'pruned_through'", (str(through),))
            return count

        return await self._write(job)

    # Custom-mode delivery

    async def _delivery_state(self, webhook_id: str) -> DeliveryState:
        rows = await self._readers.query(
            "SELECT cursor_seq, failing_since, breaker_from FROM delivery_state WHERE webhook_id = ?", (webhook_id,)
        )
        return DeliveryState(*rows[0]) if rows else DeliveryState(0, None)

    async def _due_deliveries(self, webhook_id: str, now: int, limit: int) -> list[PendingDelivery]:
        rows = await self._readers.query(
            "SELECT e.seq, e.id, e.account_id, e.type, e.body, d.attempts, d.next_attempt_at, d.first_attempt_at"
            " FROM deliveries d JOIN events e ON e.seq = d.seq"
            " WHERE d.webhook_id = ? AND d.next_attempt_at <= ? ORDER BY d.seq LIMIT ?",
            (webhook_id, now, limit),
        )
        return [PendingDelivery(StoredEvent(*row[:5]), row[5], row[6], row[7]) for row in rows]

    async def _next_delivery_due(self, webhook_id: str) -> int | None:
        rows = await self._readers.query(
            "SELECT min(next_attempt_at) FROM deliveries WHERE webhook_id = ?", (webhook_id,)
        )
        return rows[0][0] if rows else None

    async def _record_attempt(
        self, attempt: DeliveryAttempt, from_cursor: int | None, next_attempt_at: int | None
    ) -> bool:

        def job(txn: _Transaction) -> bool:
            conn = txn.conn
            conn.execute(
                f"INSERT INTO delivery_attempts ({ATTEMPT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                attempt_values(attempt),
            )
            key = (attempt.webhook_id, attempt.seq)
            if from_cursor is None:
                if attempt.outcome == "retrying":
                    conn.execute(
                        "UPDATE deliveries SET attempts = ?, next_attempt_at = ? WHERE webhook_id = ? AND seq = ?",
                        (attempt.attempt, next_attempt_at, *key),
                    )
                else:
                    conn.execute("DELETE FROM deliveries WHERE webhook_id = ? AND seq = ?", key)
                return True
            conn.execute("INSERT OR IGNORE INTO delivery_state (webhook_id) VALUES (?)", (attempt.webhook_id,))
            cursor = conn.execute(
                "UPDATE delivery_state SET cursor_seq = ? WHERE webhook_id = ? AND cursor_seq = ?",
                (attempt.seq, attempt.webhook_id, from_cursor),
            )
            if cursor.rowcount == 0:
                return False
            if attempt.outcome == "retrying":
                conn.execute(
                    "INSERT OR REPLACE INTO deliveries (webhook_id, seq, attempts, next_attempt_at, first_attempt_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (*key, attempt.attempt, next_attempt_at, attempt.created_at),
                )
            return True

        return await self._write(job)

    async def _list_attempts(
        self, webhook_id: str, before_id: int | None, limit: int, outcome: str | None
    ) -> list[DeliveryAttempt]:
        rows = await self._readers.query(
            f"SELECT {ATTEMPT_COLUMNS}, id FROM delivery_attempts"
            " WHERE webhook_id = ?1 AND id < ?2 AND (?4 IS NULL OR outcome = ?4) ORDER BY id DESC LIMIT ?3",
            (webhook_id, before_id if before_id is not None else NO_ATTEMPT_ID, limit, outcome),
        )
        return [DeliveryAttempt(*row) for row in rows]

    async def _undelivered(self, webhook_id: str, after_seq: int, limit: int) -> list[Undelivered]:
        rows = await self._readers.query(_UNDELIVERED, (webhook_id, after_seq, limit))
        return [undelivered_from_row(row) for row in rows]

    async def _feed_seq_before(self, webhook_id: str, appended_before: int) -> int:
        rows = await self._readers.query(
            "SELECT coalesce(max(f.seq), 0) FROM feed f JOIN events e ON e.seq = f.seq"
            " WHERE f.webhook_id = ?1 AND e.appended_at < ?2",
            (webhook_id, appended_before),
        )
        return int(rows[0][0])

    async def _attempt_counts(self, webhook_id: str, since: int) -> tuple[int, int]:
        rows = await self._readers.query(
            "SELECT count(*), coalesce(sum(outcome != 'delivered'), 0) FROM delivery_attempts"
            " WHERE webhook_id = ? AND created_at >= ?",
            (webhook_id, since),
        )
        return int(rows[0][0]), int(rows[0][1])

    async def _set_failing_since(self, webhook_id: str, failing_since: int | None) -> None:

        def job(txn: _Transaction) -> None:
            txn.conn.execute("INSERT OR IGNORE INTO delivery_state (webhook_id) VALUES (?)", (webhook_id,))
            txn.conn.execute(
                "UPDATE delivery_state SET failing_since = ? WHERE webhook_id = ?", (failing_since, webhook_id)
            )

        await self._write(job)

    async def _restart_breaker(self, webhook_id: str, at: int) -> None:

        def job(txn: _Transaction) -> None:
            txn.conn.execute("INSERT OR IGNORE INTO delivery_state (webhook_id) VALUES (?)", (webhook_id,))
            txn.conn.execute(
                "UPDATE delivery_state SET failing_since = NULL, breaker_from = ? WHERE webhook_id = ?",
                (at, webhook_id),
            )

        await self._write(job)

    async def _recover_deliveries(self, webhook_id: str, after_seq: int) -> None:

        def job(txn: _Transaction) -> None:
            conn = txn.conn
            conn.execute("INSERT OR IGNORE INTO delivery_state (webhook_id) VALUES (?)", (webhook_id,))
            conn.execute(
                "UPDATE delivery_state SET cursor_seq = min(cursor_seq, ?) WHERE webhook_id = ?",
                (after_seq, webhook_id),
            )
            # Those after the cursor come again through the feed, from their first attempt.
            conn.execute("DELETE FROM deliveries WHERE webhook_id = ? AND seq > ?", (webhook_id, after_seq))

        await self._write(job)

    # Monitors and metering

    async def _start_monitor(
        self, account_id: str, api_key_id: str, owner: str, at: int, lease_now: int, lease_until: int
    ) -> bool:

        def job(txn: _Transaction) -> bool:
            conn = txn.conn
            rows = _rows(conn, "SELECT owner, expires_at FROM monitor_leases WHERE account_id = ?", (account_id,))
            if rows and rows[0][0] != owner and rows[0][1] > lease_now:
                return False
            conn.execute(
                "INSERT INTO monitor_leases (account_id, owner, expires_at, status, reason)"
                " VALUES (?, ?, ?, 'running', NULL) ON CONFLICT (account_id) DO UPDATE SET"
                " owner = excluded.owner, expires_at = excluded.expires_at, status = 'running', reason = NULL",
                (account_id, owner, lease_until),
            )
            # A holder that died left its interval open: it ends at the last time we know it ran.
            conn.execute(
                "UPDATE monitor_intervals SET stopped_at = checkpoint_at"
                " WHERE account_id = ? AND stopped_at IS NULL AND owner != ?",
                (account_id, owner),
            )
            mine = _rows(
                conn,
                "SELECT 1 FROM monitor_intervals WHERE account_id = ? AND stopped_at IS NULL AND owner = ?",
                (account_id, owner),
            )
            if not mine:
                conn.execute(
                    "INSERT INTO monitor_intervals (account_id, api_key_id, owner, started_at, checkpoint_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (account_id, api_key_id, owner, at, at),
                )
            return True

        return await self._write(job)

    async def _checkpoint_monitors(self, owner: str, at: int, lease_until: int) -> set[str]:

        def job(txn: _Transaction) -> set[str]:
            conn = txn.conn
            conn.execute("UPDATE monitor_leases SET expires_at = ? WHERE owner = ?", (lease_until, owner))
            conn.execute(
                "UPDATE monitor_intervals SET checkpoint_at = max(checkpoint_at, ?)"
                " WHERE owner = ? AND stopped_at IS NULL",
                (at, owner),
            )
            rows = _rows(conn, "SELECT account_id FROM monitor_leases WHERE owner = ?", (owner,))
            return {row[0] for row in rows}

        return await self._write(job)

    async def _stop_monitor(self, account_id: str, owner: str, at: int) -> None:

        def job(txn: _Transaction) -> None:
            conn = txn.conn
            conn.execute(
                "UPDATE monitor_intervals SET stopped_at = max(checkpoint_at, ?), checkpoint_at = max(checkpoint_at, ?)"
                " WHERE account_id = ? AND owner = ? AND stopped_at IS NULL",
                (at, at, account_id, owner),
            )
            conn.execute("DELETE FROM monitor_leases WHERE account_id = ? AND owner = ?", (account_id, owner))

        await self._write(job)

    async def _set_monitor_status(self, account_id: str, owner: str, status: str, reason: str | None) -> None:
        def job(txn: _Transaction) -> None:
            txn.conn.execute(
                "UPDATE monitor_leases SET status = ?, reason = ? WHERE account_id = ? AND owner = ?",
                (status, reason, account_id, owner),
            )

        await self._write(job)

    async def _monitor_lease(self, account_id: str) -> MonitorLease | None:
        rows = await self._readers.query(
            f"SELECT {LEASE_COLUMNS} FROM monitor_leases WHERE account_id = ?",
            (account_id,),
        )
        return MonitorLease(*rows[0]) if rows else None

    async def close_stale_intervals(self, lease_now: int) -> int:
        def job(txn: _Transaction) -> int:
            conn = txn.conn
            cursor = conn.execute(
                "UPDATE monitor_intervals SET stopped_at = checkpoint_at WHERE stopped_at IS NULL AND NOT EXISTS"
                " (SELECT 1 FROM monitor_leases l WHERE l.account_id = monitor_intervals.account_id"
                " AND l.owner = monitor_intervals.owner AND l.expires_at > ?)",
                (lease_now,),
            )
            conn.execute("DELETE FROM monitor_leases WHERE expires_at <= ?", (lease_now,))
            return cursor.rowcount

        return await self._write(job)

    async def _monitor_intervals(self, account_id: str, api_key_id: str) -> list[MonitorInterval]:
        rows = await self._readers.query(
            f"SELECT {INTERVAL_COLUMNS} FROM monitor_intervals WHERE account_id = ? AND api_key_id = ? ORDER BY id",
            (account_id, api_key_id),
        )
        return [MonitorInterval(*row) for row in rows]


def _insert_rows(conn: sqlite3.Connection, insert: str, width: int, rows: Sequence[tuple[object, ...]]) -> None:
    """`insert` ("INSERT INTO t (a, b) VALUES ") for every row, many rows per statement.

    sqlite3 lets go of the GIL around every step and must take it back after. With
    `executemany` that is once per row, and while the event loop's thread holds the GIL the
    writer waits up to the interpreter's switch interval (5 ms) each time. A few multi-row
    statements make it a few waits per append. Chunks are powers of two, so SQLite's
    statement cache holds every shape.
    """
    start = 0
    while start < len(rows):
        size = min(_INSERT_CHUNK, 1 << ((len(rows) - start).bit_length() - 1))
        sql = _insert_sql(insert, width, size)
        conn.execute(sql, [value for row in rows[start : start + size] for value in row])
        start += size


@functools.lru_cache(maxsize=64)
def _insert_sql(insert: str, width: int, size: int) -> str:
    row = "(" + ", ".join("?" * width) + ")"
    return insert + ", ".join([row] * size)


def _rows(conn: sqlite3.Connection, sql: str, params: Sequence[object] = ()) -> list[Any]:
    return conn.execute(sql, params).fetchall()


def _use_wal(conn: sqlite3.Connection, patience: float = 30.0) -> None:
    """Put the file in WAL mode, waiting out other processes that are opening it at the same moment.

    Switching a new file to WAL takes an exclusive lock, and SQLite answers "database is locked"
    at once rather than call the busy handler when another connection holds a lock meanwhile:
    N processes started together on a fresh file (WEB_CONCURRENCY) would otherwise fail to start.
    """
    deadline = time.monotonic() + patience
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                return
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02 + random.random() * 0.05)


def _migrate(conn: sqlite3.Connection) -> None:
    """Apply every migration not yet recorded, in one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER)")
        applied = {row[0] for row in _rows(conn, "SELECT version FROM schema_migrations")}
        for version, script in pending_migrations(SQLITE_MIGRATIONS, applied):
            for statement in script.split(";\n"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (version, now_micros()))
        conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('epoch', ?)", (secrets.token_hex(8),))
        conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('pruned_through', '0')")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _run_transaction(conn: sqlite3.Connection, batch: list[Pending[Job[Any]]]) -> tuple[list[Outcome], list[Committed]]:
    """Run queued jobs in one transaction, on the writer's thread: one hop and one fsync for all of them.

    Each job gets a savepoint, so one job's error undoes only that job; its outcome is its
    result or its exception. A lone job needs no savepoint: its failure is the transaction's.
    """
    txn = _Transaction(conn)
    outcomes: list[Outcome] = []
    savepoints = len(batch) > 1
    if conn.in_transaction:
        # A batch that failed on a full disk may leave its transaction open when even ROLLBACK
        # could not write; end it now, or no later batch could begin.
        conn.execute("ROLLBACK")
    try:
        conn.execute("BEGIN IMMEDIATE")
        for pending in batch:
            mark, head = len(txn.committed), txn.head
            if savepoints:
                conn.execute("SAVEPOINT job")
            try:
                result = pending.job(txn)
            except Exception as exc:
                if not savepoints or not conn.in_transaction:
                    # Past the savepoint too: SQLite rolled the whole transaction back itself (SQLITE_FULL,
                    # an I/O error), so every job of this batch failed with it.
                    raise
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                del txn.committed[mark:]
                txn.head = head
                outcomes.append((False, exc))
            else:
                if savepoints:
                    conn.execute("RELEASE job")
                outcomes.append((True, result))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            # The batch's own error is the one to report; a failed ROLLBACK is retried before the next batch.
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise
    return outcomes, txn.committed


def _active_count(conn: sqlite3.Connection, account_id: str) -> int:
    rows = list(_rows(conn, "SELECT count(*) FROM webhooks WHERE account_id = ? AND is_active = 1", (account_id,)))
    return int(rows[0][0])


def _forget_deliveries(conn: sqlite3.Connection, webhook_ids: list[str]) -> None:
    params = [(webhook_id,) for webhook_id in webhook_ids]
    for table in ("delivery_state", "deliveries", "delivery_attempts"):
        conn.executemany(f"DELETE FROM {table} WHERE webhook_id = ?", params)


def _recent_page(
    bodies: RecentBodies, webhook_id: str, after_seq: int, limit: int, conn: sqlite3.Connection
) -> tuple[JoinedPage | None, list[tuple[int, bytes]]]:
    """A page near the head with bodies from memory, and the rows read for those that were not there.

    None when the bodies had to be read and the feed moved between the two statements
    (a commit or a prune): the caller then reads the page in one statement.
    """
    count, first, last, pruned = conn.execute(_RECENT_PAGE, (webhook_id, after_seq, limit)).fetchone()
    if not count:
        return JoinedPage(b"", 0, None, False, int(pruned)), []
    seqs: Sequence[int] | None = gapless_seqs(count, first, last, limit)
    if seqs is None:
        seq_text, pruned = conn.execute(_SPARSE_PAGE, (webhook_id, after_seq, limit)).fetchone()
        seqs = list(map(int, seq_text.split(","))) if seq_text else []
        count = len(seqs)
        if not count:
            return JoinedPage(b"", 0, None, False, int(pruned)), []
    more = count > limit
    seqs = seqs[:limit]
    joined = bodies.joined(seqs)
    rows: list[tuple[int, bytes]] = []
    if joined is None:
        rows = conn.execute(_FEED_BODIES, (webhook_id, after_seq, limit)).fetchall()
        if len(rows) != len(seqs) or rows[-1][0] != seqs[-1] or rows[0][0] != seqs[0]:
            return None, []
        joined = b",".join([body for _, body in rows])
    page = JoinedPage(joined, len(seqs), seqs[-1], more, int(pruned))
    return page, rows


class _ReadPool:
    """Read-only sqlite3 connections: one on the event loop, and worker threads for reads that must wait.

    Readers never need the writer's queue: in WAL mode each reads the last committed
    snapshot. Every read here is an index range of at most a thousand rows, which takes
    less time than a trip to a thread and back (measured: 50 µs for a page of 100 against
    about 180 µs for the hop), so it runs on the loop, on a connection that never waits for
    a lock. In the rare moment SQLite would make a reader wait (recovery, a checkpoint),
    that read goes to a worker thread, whose connection may wait, instead of stalling the loop.
    """

    def __init__(self, path: str, size: int, pragmas: tuple[str, ...]) -> None:
        self._path = path
        self._size = size
        self._pragmas = (*pragmas, "PRAGMA query_only=1")
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._executor: ThreadPoolExecutor | None = None
        self._inline: sqlite3.Connection | None = None

    def open(self) -> None:
        self._executor = ThreadPoolExecutor(self._size, thread_name_prefix="hookstream-sqlite-reader")
        self._inline = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        for pragma in (*self._pragmas, "PRAGMA busy_timeout=0"):
            self._inline.execute(pragma)

    def close(self) -> None:
        if self._inline is not None:
            self._inline.close()
            self._inline = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            for pragma in self._pragmas:
                conn.execute(pragma)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    async def run(self, read: Callable[[sqlite3.Connection], T]) -> T:
        """Run `read` with a read connection: on the loop, or on a thread when SQLite is busy."""
        if self._executor is None or self._inline is None:
            raise RuntimeError("storage is not open")
        with guarded(_unavailable):
            try:
                return read(self._inline)
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                    raise
            return await asyncio.get_running_loop().run_in_executor(self._executor, lambda: read(self._connection()))

    async def query(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        """The rows of one SELECT."""
        return await self.run(lambda conn: conn.execute(sql, params).fetchall())
