"""Start an awaitable now, in the caller's frame, and make it a task only if it has to wait.

A stream that is caught up gets its new events written from the commit that made them:
its `send` coroutine is stepped right there, and on a client that reads it returns at once,
without a task, a wake-up or a trip through the event loop. Only a `send` that suspends
(the client's socket buffer is full) becomes a task, which the stream awaits before its
next write. That is eager task start, which asyncio has from Python 3.12 on: there,
`asyncio.Task(coro, loop=loop, eager_start=True)` (or, from 3.14, `loop.create_task(coro,
eager_start=True)`) runs the coroutine up to its first suspension inside the call, and
`task.done()` says whether it finished. On 3.11 this module steps the coroutine by hand,
as `Task.__step` does, and is replaced by that one call when the project requires 3.12.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Awaitable, Coroutine
from typing import Any


def start_eagerly(awaitable: Awaitable[Any]) -> asyncio.Future[Any] | None:
    """Run `awaitable` until it first suspends: None when it finished, else a future of the rest.

    An exception raised before the first suspension is raised here; one raised later, or a
    cancellation of the returned future, reaches whoever awaits that future. An awaitable that
    is not a native coroutine (another server's `send`) cannot be stepped and becomes a task.
    """
    if type(awaitable) is not types.CoroutineType:
        return asyncio.ensure_future(awaitable)
    coro: Coroutine[Any, Any, Any] = awaitable
    try:
        waiting = coro.send(None)
    except StopIteration:
        return None
    return asyncio.ensure_future(_finish(coro, waiting))


async def _finish(coro: Coroutine[Any, Any, Any], waiting: Any) -> None:
    """Drive `coro`, which suspended on `waiting`, to its end, as a Task does for its coroutine."""
    while True:
        try:
            if waiting is None:  # a bare `yield`: give the loop one turn
                await asyncio.sleep(0)
            else:
                # As Task.__step does before waiting on a yielded future; awaiting it again needs the flag clear.
                waiting._asyncio_future_blocking = False
                await waiting
        except BaseException as exc:  # including our own cancellation: the coroutine gets to handle it
            try:
                waiting = coro.throw(exc)
            except StopIteration:
                return
            continue
        try:
            waiting = coro.send(None)
        except StopIteration:
            return
