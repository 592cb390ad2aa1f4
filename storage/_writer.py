"""The write queue and its group-commit loop, the same for every backend.

Every write is a job on one queue. The loop takes the first job waiting and every job
queued behind it (up to `max_batch`), has the backend run them in one transaction, then
publishes what that transaction appended and answers each job's caller with its own
result or error. A caller is answered only after the commit, so an answer means durable.
With `linger`, the loop first waits a little (a share of the last commit's time) for the
callers the last commit answered, so producers that post one event at a time share a commit
rather than taking turns in two halves. How a batch runs (a thread with a plain connection,
or an async driver; savepoints per job) is the backend's; this module holds only the shape
around it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from storage._bodies import RecentBodies
from storage._unavailable import Classifier, logger, translated
from storage.base import Committed, LogNotifier

J = TypeVar("J")
# A job's outcome, in the order of the batch: (True, its result) or (False, its exception).
Outcome = tuple[bool, Any]
# The longest a batch waits for callers to come back, however slow the last commit was.
MAX_LINGER = 0.01


@dataclass(slots=True)
class Pending(Generic[J]):
    """A queued job and the future its caller awaits."""

    job: J
    future: asyncio.Future[Any]


class GroupCommit(Generic[J]):
    """One queue of write jobs, run in batches by `run_batch`; one instance per backend."""

    def __init__(
        self,
        run_batch: Callable[[list[Pending[J]]], Awaitable[tuple[list[Outcome], list[Committed]]]],
        publish: Callable[[list[Committed]], None],
        *,
        max_batch: int,
        name: str,
        unavailable: Classifier,
        linger: float = 0.0,
    ) -> None:
        self._run_batch = run_batch
        self._unavailable = unavailable
        self._publish = publish
        self._max_batch = max_batch
        self._name = name
        self._linger = linger
        self._jobs: asyncio.Queue[Pending[J] | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        # While the loop lingers: the queue length it waits for, and what it waits on.
        self._awaited = 0
        self._filled: asyncio.Future[None] | None = None

    def start(self) -> None:
        self._jobs = asyncio.Queue()
        self._task = asyncio.create_task(self._loop(), name=self._name)

    async def stop(self) -> None:
        """Run every job queued so far, then end the loop."""
        if self._task is not None:
            self._jobs.put_nowait(None)
            await self._task
            self._task = None

    def submit(self, job: J) -> asyncio.Future[Any]:
        """Queue `job`; the future resolves to its result once its transaction has committed."""
        if self._task is None:
            raise RuntimeError("storage is not open")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._jobs.put_nowait(Pending(job, future))
        if self._filled is not None and self._jobs.qsize() >= self._awaited:
            _fill(self._filled)
        return future

    async def _gather(self, expected: int, patience: float) -> None:
        """Wait up to `patience` seconds for `expected` jobs to be queued."""
        loop = asyncio.get_running_loop()
        self._awaited = expected
        self._filled = filled = loop.create_future()
        # Not `filled.set_result`: a submit may fill it in the same loop turn the timer fires in.
        timer = loop.call_later(patience, _fill, filled)
        try:
            await filled
        finally:
            timer.cancel()
            self._filled = None

    async def _loop(self) -> None:
        jobs = self._jobs
        loop = asyncio.get_running_loop()
        stopping = False
        # The callers the last transaction answered, how long it took, and the jobs queued meanwhile.
        answered, took, backlog = 0, 0.0, 0
        while not stopping:
            first = await jobs.get()
            if first is None:
                break
            if self._linger and answered > 1:
                # Callers that wait for each answer before their next write (producers posting one event at a
                # time) come back a round trip after it; without waiting for them a commit takes only the
                # half that queued during the one before. Waiting up to a share of a commit's time costs little
                # when commits are quick and doubles what each fsync carries when they are slow.
                expected = min(self._max_batch, backlog + answered) - 1
                if jobs.qsize() < expected:
                    await self._gather(expected, min(took * self._linger, MAX_LINGER))
            began = loop.time()
            batch = [first]
            while len(batch) < self._max_batch and not jobs.empty():
                item = jobs.get_nowait()
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            # Jobs cancelled while queued are dropped here, on the loop, before the batch starts.
            live = [pending for pending in batch if not pending.future.cancelled()]
            if not live:
                continue
            try:
                outcomes, committed = await self._run_batch(live)
            except Exception as exc:  # the loop must outlive a failed batch (a lost connection, a full disk)
                # Nothing of this batch committed: every job in it fails, and the next batch tries again.
                # (A lone job's own error, such as an id already taken, comes this way too: its caller handles it.)
                error = translated(exc, self._unavailable)
                if error is not exc:
                    logger.warning("%s: %d writes refused, %s", self._name, len(live), error)
                for pending in live:
                    if not pending.future.done():
                        pending.future.set_exception(error)
                continue
            answered, took = len(live), loop.time() - began
            if committed:
                self._publish(committed)
            for pending, (ok, value) in zip(live, outcomes, strict=True):
                if pending.future.done():
                    continue
                if ok:
                    pending.future.set_result(value)
                else:
                    pending.future.set_exception(translated(value, self._unavailable))
            backlog = jobs.qsize()


def announce(committed: list[Committed], bodies: RecentBodies, notifiers: Sequence[LogNotifier]) -> None:
    """Keep the bodies of newly committed events and tell every notifier (the backend has moved its head first)."""
    head = committed[-1].event.seq
    add = bodies.add
    for done in committed:
        add(done.event.seq, done.event.body)
    for notify in notifiers:
        notify(committed, head)


def _fill(filled: asyncio.Future[None]) -> None:
    """End a linger: by the queue reaching its length or by the timer, whichever comes first."""
    if not filled.done():
        filled.set_result(None)
