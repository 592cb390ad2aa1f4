"""Per-account monitors: one connector task per account with an active webhook (SPEC §7).

What runs is driven by the storage's truth, never by the order of events: every webhook
change, and a sweep every checkpoint interval, re-reads the account under a per-account
lock and starts or stops its monitor to match. So racing create/stop/start/delete requests
settle on "a monitor runs exactly when an active webhook exists", whichever finishes last.

Across processes sharing a database, a lease row names the one process that runs an
account's monitor; the holder renews it at each checkpoint and another process takes over
once it has expired (three checkpoint intervals). Metered time lives in intervals that
are checkpointed on the same beat, so a crash loses at most one checkpoint interval and
the next holder closes the dead holder's interval at its last checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import socket
from collections import defaultdict
from typing import Any

from app.catalog import filter_matches
from app.connectors import ConnectorError, MonitoredAccount, Subscription, connector_factory
from app.context import Context
from app.envelopes import build_event
from app.errors import HookstreamError
from app.times import wall_micros
from storage.base import Account, AccountNotMonitored, MonitorLease, UnknownAccount, WebhookChange

logger = logging.getLogger("hookstream.monitors")

# How long a cancelled connector gets to finish; one that ignores cancellation is abandoned
# so it cannot hold up shutdown or the account's next start.
HALT_GRACE = 2.0


def process_owner() -> str:
    """This process's lease owner name: host, pid, and a nonce so a restarted process never takes a dead one's."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def dead_local_owner(owner: str) -> bool:
    """True when `owner` was a process on this host that no longer runs, such as one killed before a restart."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return True  # our pid, another nonce: an earlier incarnation (containers reuse pids)
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def lease_ttl(checkpoint_interval: float) -> int:
    """How long a lease lasts without renewal (µs): three checkpoints, so one slow checkpoint does not lose it."""
    return int(max(3 * checkpoint_interval, 1.0) * 1_000_000)


def monitoring_state(account: Account, lease: MonitorLease | None) -> tuple[str, str | None]:
    """`monitoring` and `status_reason` as the API shows them, from the account and its lease."""
    if account.active_webhooks == 0:
        return "idle", None
    if lease is None or lease.expires_at <= wall_micros():
        # Its monitor is starting, or another process is about to take over from a dead holder.
        return "running", None
    return lease.status, lease.reason


class _Monitor:
    """One account's monitor in this process: holding its lease and running its connector, or standing by."""

    def __init__(self, monitors: Monitors, account: Account, filters: frozenset[str]) -> None:
        self.monitors = monitors
        self.account = account
        self.subscription = Subscription(filters, monitors.types_for(filters))
        self.holding = False
        self.status = "running"
        self.task: asyncio.Task[None] | None = None

    async def claim(self) -> None:
        """Take the lease and start the connector, unless another live process runs this account."""
        ctx = self.monitors.ctx
        now = wall_micros()
        until = now + lease_ttl(ctx.settings.checkpoint_interval)
        account, owner = self.account, self.monitors.owner
        self.holding = await ctx.storage.start_monitor(
            account.id, account.api_key_id, owner, ctx.clock.now_micros(), now, until
        )
        if not self.holding:
            # A holder that crashed on this very host is known dead now: take over without waiting out its lease.
            lease = await ctx.storage.monitor_lease(account.id)
            if lease is not None and lease.owner != owner and dead_local_owner(lease.owner):
                self.holding = await ctx.storage.start_monitor(
                    account.id, account.api_key_id, owner, ctx.clock.now_micros(), lease.expires_at, until
                )
        if self.holding:
            self.status = "running"
            self.task = asyncio.create_task(self._supervise(), name=f"hookstream-monitor-{self.account.id}")

    async def halt(self) -> None:
        """Stop for good: cancel the connector, close the metered interval and release the lease."""
        await self.release_task()
        if self.holding:
            self.holding = False
            ctx = self.monitors.ctx
            await ctx.storage.stop_monitor(self.account.id, self.monitors.owner, ctx.clock.now_micros())

    async def release_task(self) -> None:
        """Cancel the connector task and wait a little for it to finish."""
        task, self.task = self.task, None
        if task is None:
            return
        task.cancel()
        await asyncio.wait({task}, timeout=HALT_GRACE)
        if not task.done():
            logger.warning("connector of account %s ignores cancellation; abandoning it", self.account.id)

    async def _supervise(self) -> None:
        """Run the connector; on failure mark the account errored and restart it with backoff and jitter."""
        settings = self.monitors.ctx.settings
        backoff = settings.monitor_backoff
        while True:
            try:
                await self._run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = getattr(exc, "message", None) or str(exc) or type(exc).__name__
                logger.warning("connector of account %s failed: %s", self.account.id, reason)
                # Full backoff then up to half of it off: spreads restarts of many failing accounts.
                delay = backoff * random.uniform(0.5, 1.0)
                await self._errored(f"{type(exc).__name__}: {reason}; retrying in {delay:.1f}s")
                await asyncio.sleep(delay)
                backoff = min(backoff * 2, settings.monitor_backoff_max)
            else:
                backoff = settings.monitor_backoff

    async def _run_once(self) -> None:
        """One connector run; once it has survived a backoff period after a failure, the account has recovered."""
        ctx = self.monitors.ctx
        try:
            factory = connector_factory(self.account.connector, ctx.settings, ctx.catalog)
        except ConnectorError as exc:
            raise RuntimeError(str(exc)) from None
        account = MonitoredAccount(self.account.id, self.account.name, self.account.connector)
        run = asyncio.ensure_future(factory().run(account, self.subscription, self._emit))
        try:
            if self.status == "errored":
                done, _ = await asyncio.wait({run}, timeout=ctx.settings.monitor_backoff)
                if not done:
                    await self._recovered()
            await run
        finally:
            run.cancel()
        if self.status == "errored":
            await self._recovered()
        # A connector that returns has nothing more to produce; the monitor stays on until stopped.
        await asyncio.Event().wait()

    async def _emit(
        self, type: str, data: dict[str, Any], *, id: str | None = None, timestamp: str | None = None
    ) -> int | None:
        ctx = self.monitors.ctx
        raw: dict[str, Any] = {"type": type, "data": data}
        if id is not None:
            raw["id"] = id
        if timestamp is not None:
            raw["timestamp"] = timestamp
        try:
            event = build_event(
                raw, account_id=self.account.id, catalog=ctx.catalog, max_bytes=ctx.settings.max_event_bytes
            )
        except HookstreamError as exc:
            raise ValueError(exc.message) from None
        try:
            result = await ctx.storage.append(self.account.id, [event])
        except (AccountNotMonitored, UnknownAccount):
            return None
        return result.appended[0].seq

    async def _status_event(self, status: str, reason: str | None) -> None:
        data: dict[str, Any] = {"account": {"id": self.account.id, "status": status}, "monitoring": status}
        if reason is not None:
            data["reason"] = reason
        try:
            await self._emit(f"account.status.{status}", data)
        except Exception:
            logger.exception("could not append account.status.%s for %s", status, self.account.id)

    async def _errored(self, reason: str) -> None:
        first = self.status != "errored"
        self.status = "errored"
        await self._record_status("errored", reason, announce=first)

    async def _recovered(self) -> None:
        self.status = "running"
        await self._record_status("running", None, announce=True)

    async def _record_status(self, status: str, reason: str | None, *, announce: bool) -> None:
        """On a change, append the status to the account's log; then show it on the account.

        In that order, so a client that sees the new status through the API finds its event in the log.
        """
        if announce:
            await self._status_event(status, reason)
        storage = self.monitors.ctx.storage
        try:
            await storage.set_monitor_status(self.account.id, self.monitors.owner, status, reason)
        except Exception:
            # The supervisor must outlive a database hiccup; the next failure or recovery records it.
            logger.exception("could not record monitor status %s for %s", status, self.account.id)


class Monitors:
    """The service that keeps one monitor per account with an active webhook, and meters it."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.owner = process_owner()
        self._monitors: dict[str, _Monitor] = {}
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._sweeper: asyncio.Task[None] | None = None
        self._stopping = False

    def runs(self, account_id: str) -> bool:
        """Whether this process holds the account's monitor lease, and so also delivers its custom webhooks."""
        monitor = self._monitors.get(account_id)
        return monitor is not None and monitor.holding

    def types_for(self, filters: frozenset[str]) -> frozenset[str]:
        """The catalog types that any of these filters matches."""
        ordered = tuple(sorted(filters))
        return frozenset(name for name in self.ctx.catalog.names if filter_matches(ordered, name))

    async def start(self) -> None:
        """Close what dead holders left open, resume every account with an active webhook, start checkpointing."""
        closed = await self.ctx.storage.close_stale_intervals(wall_micros())
        if closed:
            logger.info("closed %d monitor interval(s) left open by a stopped process", closed)
        await self.sweep()
        self._sweeper = asyncio.create_task(self._checkpoint_forever(), name="hookstream-monitors")

    async def stop(self) -> None:
        """Halt every monitor this process runs, closing their intervals at now."""
        # Requests still in flight must not start monitors that nothing would stop.
        self._stopping = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        for lock in [lock for lock in self._locks.values() if lock.locked()]:
            async with lock:  # let a reconcile already past the check finish first
                pass
        monitors = list(self._monitors.values())
        self._monitors.clear()
        results = await asyncio.gather(*(monitor.halt() for monitor in monitors), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                logger.error("could not halt a monitor cleanly: %r", result)

    async def webhook_changed(self, change: WebhookChange) -> None:
        """A webhook listener: bring the account's monitor in line with its webhooks."""
        await self.reconcile(change.webhook.account_id)

    async def reconcile(self, account_id: str) -> None:
        """Start, update or stop the account's monitor to match what storage says now."""
        # Locks are never dropped: a released lock may already have a waiter.
        async with self._locks[account_id]:
            if self._stopping:
                return
            storage = self.ctx.storage
            account = await storage.get_account(account_id)
            monitor = self._monitors.get(account_id)
            if account is not None and account.active_webhooks > 0:
                hooks = await storage.list_webhooks(account.api_key_id, account.id)
                filters = frozenset(name for hook in hooks if hook.is_active for name in hook.events)
                if monitor is None:
                    monitor = self._monitors[account_id] = _Monitor(self, account, filters)
                elif monitor.subscription.update(filters, self.types_for(filters)):
                    logger.info("account %s now subscribes to %s", account_id, sorted(filters))
                if not monitor.holding:
                    await monitor.claim()
            elif monitor is not None:
                del self._monitors[account_id]
                await monitor.halt()

    async def sweep(self) -> None:
        """Reconcile every account that has an active webhook or a monitor here."""
        wanted = {hook.account_id for hook in await self.ctx.storage.active_webhooks()}
        for account_id in sorted(wanted | set(self._monitors)):
            try:
                await self.reconcile(account_id)
            except Exception:
                logger.exception("could not reconcile the monitor of account %s", account_id)

    async def checkpoint(self) -> None:
        """Renew this process's leases and checkpoint its intervals; give up monitors whose lease was taken."""
        ctx = self.ctx
        held = await ctx.storage.checkpoint_monitors(
            self.owner, ctx.clock.now_micros(), wall_micros() + lease_ttl(ctx.settings.checkpoint_interval)
        )
        for account_id, monitor in list(self._monitors.items()):
            if monitor.holding and account_id not in held:
                logger.warning("lost the monitor lease of account %s to another process", account_id)
                async with self._locks[account_id]:
                    monitor.holding = False
                    await monitor.release_task()

    async def _checkpoint_forever(self) -> None:
        while True:
            await asyncio.sleep(self.ctx.settings.checkpoint_interval)
            try:
                await self.checkpoint()
                await self.sweep()
            except Exception:
                logger.exception("monitor checkpoint failed; retrying next interval")
