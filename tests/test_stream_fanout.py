"""Many streams of one webhook over real sockets: parked streams written from the commit (SPEC §5.4).

A caught-up stream is handed over from its request to the hub, which writes each commit's chunk to
its socket; these tests hold hundreds of raw connections to check what a client sees of that path:
every event once and in order across the catch-up → live switch, pings on idle streams, streams
ending on stop, a paused reader catching up, and the same behaviour under a server that cannot
hand a response over.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server import Api, Server, hosted_webhook, message

HEARTBEAT = 0.3


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("fanout"), {"HOOKSTREAM_HEARTBEAT_SECONDS": f"{HEARTBEAT}s"}).start()
    yield server
    server.kill()


class Subscriber:
    """One raw SSE connection: de-chunks the body and keeps every block as its fields."""

    def __init__(self, port: int, path: str, api_key: str) -> None:
        self.port = port
        self.request = f"GET {path} HTTP/1.1\r\nhost: x\r\nx-api-key: {api_key}\r\n\r\n".encode()
        self.blocks: list[dict[str, str]] = []
        self.ended = False  # the server sent the last chunk
        self.opened = asyncio.Event()
        self._pending = b""

    async def run(self, until: asyncio.Event) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(self.request)
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            assert b"transfer-encoding: chunked" in head.lower()
            while not until.is_set():
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                data = await reader.readexactly(size + 2)
                if size == 0:
                    self.ended = True
                    return
                self._take(data[:-2])
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    def _take(self, data: bytes) -> None:
        *complete, self._pending = (self._pending + data).split(b"\n\n")
        for raw in complete:
            block: dict[str, str] = {}
            for line in raw.decode().split("\n"):
                name, _, value = line.partition(":")
                block[name or "comment"] = value[1:] if value.startswith(" ") else value
            self.blocks.append(block)
            if "retry" in block:
                self.opened.set()

    @property
    def start_id(self) -> int:
        """The cursor the stream opened at (its opening block's `id:`)."""
        return int(next(block["id"] for block in self.blocks if "retry" in block))

    @property
    def seqs(self) -> list[int]:
        return [int(block["id"]) for block in self.blocks if "data" in block]

    @property
    def pings(self) -> int:
        return sum(block == {"comment": "ping"} for block in self.blocks)


async def _watch(subscribers: list[Subscriber], until: asyncio.Event) -> list[asyncio.Task[None]]:
    tasks = [asyncio.create_task(s.run(until)) for s in subscribers]
    await asyncio.wait_for(asyncio.gather(*(s.opened.wait() for s in subscribers)), 30)
    return tasks


def test_hundreds_of_streams_get_every_event_once_in_order_while_events_are_appended(
    server: Server, customer: Api
) -> None:
    account, webhook_id = hosted_webhook(customer)
    customer.ingest(account, *(message(n) for n in range(20)))
    path = f"/v2/webhooks/{webhook_id}/stream"

    async def scenario() -> tuple[list[Subscriber], list[int]]:
        until = asyncio.Event()
        live = [Subscriber(server.port, path, customer.api_key) for _ in range(200)]
        tasks = await _watch(live, until)
        produced: list[int] = []
        producing = asyncio.create_task(asyncio.to_thread(_produce, customer, account, produced))
        # Streams that start from storage while events keep coming: their catch-up turns into live mid-way.
        late = [Subscriber(server.port, f"{path}?afterSeq=0", customer.api_key) for _ in range(50)]
        await asyncio.sleep(0.2)
        tasks += await _watch(late, until)
        await producing
        everyone = live + late
        deadline = time.monotonic() + 30
        while any(not s.seqs or s.seqs[-1] < produced[-1] for s in everyone) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        until.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return everyone, produced

    subscribers, produced = asyncio.run(scenario())
    stored = [event["seq"] for event in customer.feed(webhook_id)]
    assert stored[20:] == produced
    for subscriber in subscribers:
        expected = [seq for seq in stored if seq > subscriber.start_id]
        assert subscriber.seqs == expected


def _produce(api: Api, account: str, produced: list[int]) -> None:
    """Appends of 1 to 5 events at a time, some back to back, some paced."""
    for round_ in range(40):
        batch = [message(1000 + round_ * 5 + n) for n in range(1 + round_ % 5)]
        produced += [item["seq"] for item in api.ingest(account, *batch)]
        if round_ % 3 == 0:
            time.sleep(0.02)


def test_idle_streams_each_get_heartbeats_and_stopping_the_webhook_ends_them_all(server: Server, customer: Api) -> None:
    _, webhook_id = hosted_webhook(customer)
    path = f"/v2/webhooks/{webhook_id}/stream"

    async def scenario() -> list[Subscriber]:
        until = asyncio.Event()
        subscribers = [Subscriber(server.port, path, customer.api_key) for _ in range(100)]
        tasks = await _watch(subscribers, until)
        deadline = time.monotonic() + 20
        while any(s.pings < 2 for s in subscribers) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        response = await asyncio.to_thread(customer.http.post, f"/v2/webhooks/{webhook_id}/stop", headers=customer.auth)
        assert response.status_code == 200
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        return subscribers

    subscribers = asyncio.run(scenario())
    assert all(s.pings >= 2 for s in subscribers)
    assert all(s.ended for s in subscribers)


@pytest.mark.parametrize("backlog_first", [False, True], ids=["from-the-live-tail", "from-a-backlog"])
def test_a_reader_that_pauses_catches_up_from_its_cursor_and_then_gets_live_events(
    start_server: Any, backlog_first: bool
) -> None:
    # A backlog large enough that the pause is tolerated, not cut.
    server = start_server({"HOOKSTREAM_STREAM_BACKLOG": "10000"})
    blob = "x" * 50_000
    produced: list[int] = []

    def produce(rounds: range) -> None:
        # Much more than the socket buffers hold, while the client reads nothing.
        for round_ in rounds:
            batch = [{"type": "message_received", "data": {"n": round_ * 2 + n, "blob": blob}} for n in range(2)]
            produced.extend(item["seq"] for item in api.ingest(account, *batch))

    with contextlib.closing(Api(server)) as api:
        account, webhook_id = hosted_webhook(api)
        if backlog_first:
            # The stream starts behind: its catch-up fills the buffers before it is handed over.
            produce(range(30))
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        query = "?afterSeq=0" if backlog_first else ""
        path = f"/v2/webhooks/{webhook_id}/stream{query}"
        sock.sendall(f"GET {path} HTTP/1.1\r\nhost: x\r\nx-api-key: {api.api_key}\r\n\r\n".encode())
        received = bytearray(sock.recv(4096))
        while b"retry:" not in received:
            received += sock.recv(4096)
        produce(range(30, 50 if backlog_first else 60))
        time.sleep(0.5)
        reading = threading.Thread(target=_read_into, args=(sock, received), daemon=True)
        reading.start()
        time.sleep(1.0)
        # Once drained, the stream is back at the live tail.
        produced.extend(item["seq"] for item in api.ingest(account, message(1), message(2)))
        deadline = time.monotonic() + 20
        while _seqs(bytes(received))[-1:] != produced[-1:] and time.monotonic() < deadline:
            time.sleep(0.05)
        sock.close()
    assert _seqs(bytes(received)) == produced
    assert "client stopped reading" not in server.log()


def _read_into(sock: socket.socket, into: bytearray) -> None:
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            into += chunk


def _seqs(raw: bytes) -> list[int]:
    """The seqs of the complete events in a raw chunked SSE response, in the order they came."""
    pos = raw.index(b"\r\n\r\n") + 4
    body = bytearray()
    while (end := raw.find(b"\r\n", pos)) >= 0:
        size = int(raw[pos:end], 16)
        if len(raw) < end + 2 + size + 2:
            break
        body += raw[end + 2 : end + 2 + size]
        pos = end + 2 + size + 2
    seqs = []
    for block in bytes(body).split(b"\n\n")[:-1]:
        fields = dict(line.split(b": ", 1) for line in block.split(b"\n") if b": " in line)
        if b"data" in fields:
            seqs.append(int(fields[b"id"]))
    return seqs


class PlainUvicorn(Server):
    """The app under uvicorn's own h11 protocol: no connection to hand a stream over to."""

    def command(self) -> list[str]:
        return [sys.executable, "-m", "uvicorn", "--factory", "app.main:create_app", "--http", "h11"] + [
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--no-access-log",
        ]


def test_under_a_server_that_cannot_hand_over_streams_still_get_every_event_pings_and_end_on_stop(
    tmp_path: Path,
) -> None:
    server = PlainUvicorn(tmp_path, {"HOOKSTREAM_HEARTBEAT_SECONDS": f"{HEARTBEAT}s"}).start()
    try:
        with contextlib.closing(Api(server)) as api:
            account, webhook_id = hosted_webhook(api)
            api.ingest(account, *(message(n) for n in range(5)))

            async def scenario() -> tuple[list[Subscriber], list[int]]:
                until = asyncio.Event()
                path = f"/v2/webhooks/{webhook_id}/stream"
                subscribers = [Subscriber(server.port, path, api.api_key) for _ in range(10)]
                subscribers += [Subscriber(server.port, f"{path}?afterSeq=0", api.api_key) for _ in range(10)]
                tasks = await _watch(subscribers, until)
                produced: list[int] = []
                await asyncio.to_thread(_produce, api, account, produced)
                deadline = time.monotonic() + 20
                while any(s.pings < 1 or s.seqs[-1:] != produced[-1:] for s in subscribers):
                    assert time.monotonic() < deadline, "streams did not get every event and a ping"
                    await asyncio.sleep(0.05)
                await asyncio.to_thread(api.http.post, f"/v2/webhooks/{webhook_id}/stop", headers=api.auth)
                await asyncio.wait_for(asyncio.gather(*tasks), 10)
                return subscribers, produced

            subscribers, produced = asyncio.run(scenario())
            stored = [event["seq"] for event in api.feed(webhook_id)]
            assert stored[5:] == produced
            for subscriber in subscribers:
                assert subscriber.seqs == [seq for seq in stored if seq > subscriber.start_id]
                assert subscriber.ended
    finally:
        server.kill()
