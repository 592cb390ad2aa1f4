"""SQLite's cross-process wake-ups: head seqs and webhook changes as Unix datagrams between real sockets."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import pytest

from storage._wake import WakeChannel

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract Unix sockets are Linux's"),
]


async def until(condition: object, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def test_a_webhook_change_reaches_the_other_channel_with_its_id_and_heads_still_do(tmp_path: Path) -> None:
    database = str(tmp_path / "hookstream.db")
    sender, receiver = WakeChannel(database), WakeChannel(database)
    heads: list[int] = []
    changed: list[str] = []
    assert sender.open(lambda head: None)
    assert receiver.open(heads.append, changed.append)
    try:
        sender.notify(7)
        sender.notify_webhook("0123456789abcdef01234567")
        await until(lambda: heads and changed)
        assert heads == [7] and changed == ["0123456789abcdef01234567"]
    finally:
        sender.close()
        receiver.close()


async def test_a_webhook_change_refused_by_a_full_queue_is_sent_again_and_a_head_is_not(tmp_path: Path) -> None:
    database = str(tmp_path / "hookstream.db")
    sender, receiver = WakeChannel(database), WakeChannel(database)
    changed: list[str] = []
    assert sender.open(lambda head: None)
    assert receiver.open(lambda head: None, changed.append)
    # Stop the receiver reading, and fill its queue as a burst of commits would.
    loop = asyncio.get_running_loop()
    assert receiver._sock is not None
    loop.remove_reader(receiver._sock.fileno())
    queued = 0
    while True:
        sender.notify(queued + 1)
        queued += 1
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        probe.setblocking(False)
        try:
            probe.sendto(b"0", receiver._address(receiver._name))
        except BlockingIOError:
            break
        finally:
            probe.close()
        assert queued < 10_000
    sender.notify_webhook("feedfacefeedfacefeedface")
    await asyncio.sleep(0.05)
    loop.add_reader(receiver._sock.fileno(), receiver._receive, lambda head: None, changed.append)
    try:
        await until(lambda: changed)
        assert changed == ["feedfacefeedfacefeedface"]
    finally:
        sender.close()
        receiver.close()
