"""`storage._writer.GroupCommit`: what one commit carries when callers wait for each answer before their next write."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from storage._writer import GroupCommit, Outcome, Pending
from storage.base import Committed

pytestmark = pytest.mark.anyio

# What one commit takes here: a slow disk's fsync.
COMMIT_SECONDS = 0.02


class SlowDisk:
    """Runs each batch as a commit that takes COMMIT_SECONDS, and remembers how many jobs each carried."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    async def run_batch(self, batch: list[Pending[int]]) -> tuple[list[Outcome], list[Committed]]:
        await asyncio.sleep(COMMIT_SECONDS)
        self.batches.append(len(batch))
        return [(True, pending.job) for pending in batch], []


def group_commit(disk: SlowDisk, linger: float) -> GroupCommit[int]:
    return GroupCommit(
        disk.run_batch,
        lambda committed: None,
        max_batch=256,
        name="test-writer",
        unavailable=lambda exc: False,
        linger=linger,
    )


async def closed_loop(queue: GroupCommit[int], callers: int, writes: int) -> None:
    """Each caller writes, waits for its answer, and writes again a round trip later (0 to 2 ms, as over HTTP)."""

    async def caller(n: int) -> None:
        for i in range(writes):
            await asyncio.sleep(0.0001 * (n % 20))
            assert await queue.submit(n * writes + i) == n * writes + i

    await asyncio.gather(*(caller(n) for n in range(callers)))


async def test_a_commit_carries_every_caller_that_comes_back_while_it_lingers() -> None:
    disk = SlowDisk()
    queue = group_commit(disk, 0.5)
    queue.start()
    try:
        await closed_loop(queue, callers=40, writes=10)
    finally:
        await queue.stop()
    # The first commit starts with the callers that came at once; from then on every commit carries all 40.
    assert disk.batches[2:-1] == [40] * (len(disk.batches) - 3), disk.batches


async def test_without_lingering_the_callers_split_into_commits_that_take_turns() -> None:
    disk = SlowDisk()
    queue = group_commit(disk, 0.0)
    queue.start()
    try:
        await closed_loop(queue, callers=40, writes=10)
    finally:
        await queue.stop()
    # What lingering is for: here the commit that starts first carries only the callers already back.
    assert min(disk.batches[2:-2]) < 30, disk.batches


async def test_a_lone_caller_is_answered_without_lingering() -> None:
    disk = SlowDisk()
    queue = group_commit(disk, 0.5)
    queue.start()
    try:
        started = time.monotonic()
        await closed_loop(queue, callers=1, writes=10)
        elapsed = time.monotonic() - started
    finally:
        await queue.stop()
    assert disk.batches == [1] * 10
    assert elapsed < 10 * COMMIT_SECONDS * 1.4


async def test_lingering_waits_no_longer_than_its_share_of_a_commit_for_callers_that_do_not_come_back() -> None:
    disk = SlowDisk()
    queue = group_commit(disk, 0.5)
    queue.start()
    try:
        await asyncio.gather(*(queue.submit(n) for n in range(30)))
        # Those 30 callers are done; two others write once each.
        started = time.monotonic()
        results: list[Any] = await asyncio.gather(queue.submit(100), queue.submit(101))
        elapsed = time.monotonic() - started
    finally:
        await queue.stop()
    assert results == [100, 101] and disk.batches == [30, 2]
    assert elapsed < COMMIT_SECONDS * (1 + 0.5) + 0.015


async def test_a_linger_filled_in_the_turn_its_timer_fires_raises_nothing() -> None:
    """The submit that fills a linger and the linger's timer can run in the same loop turn."""
    errors: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: errors.append(context))
    queue = group_commit(SlowDisk(), 0.5)
    queue.start()
    try:
        # Queued first, so it runs in the next turn just before the zero-delay timer `_gather` sets.
        loop.call_soon(queue.submit, 1)
        await queue._gather(1, 0.0)
        await asyncio.sleep(0.01)
    finally:
        loop.set_exception_handler(None)
        await queue.stop()
    assert errors == []
