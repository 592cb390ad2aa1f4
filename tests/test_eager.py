"""`app._eager.start_eagerly`: a write runs in the caller's frame and becomes a task only when it must wait."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import pytest

from app._eager import start_eagerly

pytestmark = pytest.mark.anyio

# Far more than a loopback socket's send and receive buffers hold together.
BIG = 32 * 1024 * 1024


@pytest.fixture
async def connection() -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A real TCP connection on loopback: the far end's reader, and the near end's writer."""
    accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
    accepted = asyncio.get_running_loop().create_future()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set_result((reader, writer))

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0, family=socket.AF_INET)
    port = server.sockets[0].getsockname()[1]
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    reader, far_writer = await accepted
    yield reader, writer
    for end in (writer, far_writer):
        end.close()
        with contextlib.suppress(OSError):
            await end.wait_closed()
    server.close()
    await server.wait_closed()


async def write(writer: asyncio.StreamWriter, data: bytes) -> None:
    """What an ASGI server's `send` does: hand bytes to the transport, wait only while it is full."""
    writer.write(data)
    await writer.drain()


async def test_a_write_the_socket_takes_at_once_finishes_inside_the_call(connection):
    reader, writer = connection
    assert start_eagerly(write(writer, b"hello")) is None
    assert await reader.readexactly(5) == b"hello"


async def test_a_write_to_a_full_socket_buffer_suspends_and_finishes_once_the_peer_reads(connection):
    reader, writer = connection
    rest = start_eagerly(write(writer, b"x" * BIG))
    assert rest is not None
    await asyncio.sleep(0.05)
    assert not rest.done(), "the write finished although nobody read the other end"
    received = await reader.readexactly(BIG)
    await asyncio.wait_for(rest, 5)
    assert rest.result() is None and len(received) == BIG


async def test_an_error_before_the_first_suspension_is_raised_by_the_call():
    async def refuse() -> None:
        raise ConnectionResetError("gone")

    with pytest.raises(ConnectionResetError, match="gone"):
        start_eagerly(refuse())


async def test_an_error_after_resuming_reaches_whoever_awaits_the_rest():
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def fail_later() -> None:
        await gate
        raise BrokenPipeError("peer closed")

    rest = start_eagerly(fail_later())
    assert rest is not None and not rest.done()
    gate.set_result(None)
    with pytest.raises(BrokenPipeError, match="peer closed"):
        await rest


async def test_an_exception_set_on_the_awaited_future_is_thrown_into_the_coroutine():
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    seen: list[str] = []

    async def handle() -> None:
        try:
            await gate
        except OSError as exc:
            seen.append(str(exc))

    rest = start_eagerly(handle())
    assert rest is not None
    gate.set_exception(OSError("transport lost"))
    await rest
    assert seen == ["transport lost"]


async def test_cancelling_the_rest_cancels_the_coroutine_where_it_waits():
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    cleaned_up: list[bool] = []

    async def wait_forever() -> None:
        try:
            await gate
        finally:
            cleaned_up.append(True)

    rest = start_eagerly(wait_forever())
    assert rest is not None
    await asyncio.sleep(0)
    rest.cancel()
    with pytest.raises(asyncio.CancelledError):
        await rest
    assert cleaned_up == [True]
    assert gate.cancelled(), "the future the coroutine waited on is cancelled with it, as a Task does"


async def test_a_coroutine_that_yields_bare_gets_a_turn_of_the_loop_and_goes_on():
    steps: list[int] = []

    async def polite() -> None:
        steps.append(1)
        await asyncio.sleep(0)
        steps.append(2)

    rest = start_eagerly(polite())
    assert steps == [1] and rest is not None
    await rest
    assert steps == [1, 2]


async def test_an_awaitable_that_is_not_a_coroutine_becomes_a_task():
    future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    rest = start_eagerly(future)
    assert rest is future
    future.set_result("sent")
    assert await rest == "sent"
