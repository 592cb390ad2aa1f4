"""SSE subscriber load client: one process holding many EventSource-style connections.

The suite starts several of these (one per core) so the client is not the bottleneck. Each
subscriber parses the stream (chunked transfer, blank-line-separated messages), checks that
it receives every published event exactly once and in order (the payload's `n` counts from 0),
and records publish→receive latency from the payload's `t` (time.time_ns() at publish).

Protocol on stdin/stdout: prints `READY <connected> <failed>` once every connection is open;
then reads `STOP <unix deadline> <published>` and exits when every subscriber has the
<published> events (fewer than `--expect` when the publisher gave up on a saturated server) or
the deadline passes, printing one JSON line of results; latencies (µs, int32) go to `--latencies`.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import json
import os
import resource
import sys
import threading
import time
from typing import Any

import uvloop


class Shared:
    """Counters for all subscribers of this process."""

    def __init__(self, expect: int) -> None:
        self.expect = expect
        self.connected = 0
        self.failed = 0
        self.complete = 0
        self.errors = 0
        self.messages = 0
        self.first_error = ""
        self.last_receive = 0.0
        self.latencies = array.array("i")
        self.all_done = asyncio.Event()
        self.total = 0
        self.subscribers: list[Subscriber] = []

    def published(self, count: int) -> None:
        """The publisher stopped at `count` events: a subscriber with all of them is complete."""
        self.expect = count
        self.complete = 0
        for subscriber in self.subscribers:
            subscriber.done = subscriber.next_n >= count
            self.complete += subscriber.done
        if self.complete >= self.total:
            self.all_done.set()

    def error(self, text: str) -> None:
        self.errors += 1
        if not self.first_error:
            self.first_error = text


def _number_after(block: bytes, key: bytes) -> int:
    start = block.find(key)
    if start < 0:
        return -1
    start += len(key)
    end = start
    while end < len(block) and 48 <= block[end] <= 57:
        end += 1
    return int(block[start:end]) if end > start else -1


class Subscriber(asyncio.Protocol):
    """One SSE connection: de-chunks, splits messages, checks order, records latency."""

    def __init__(self, shared: Shared, request: bytes, opened: asyncio.Future[bool]) -> None:
        self.shared = shared
        self.request = request
        self.opened = opened
        self.raw = b""
        self.body = b""
        self.headers_done = False
        self.chunked = False
        self.next_n = 0
        self.done = False
        self.transport: Any = None
        shared.subscribers.append(self)

    def connection_made(self, transport: Any) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, hence Any.
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_result(False)
        elif not self.done:
            self.shared.error(f"connection closed after {self.next_n} events")

    def data_received(self, data: bytes) -> None:
        self.raw += data
        if not self.headers_done:
            end = self.raw.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.raw[:end].lower()
            self.raw = self.raw[end + 4 :]
            self.headers_done = True
            status = head.split(b"\r\n", 1)[0]
            if b" 200" not in status:
                self.shared.error(status.decode(errors="replace"))
                self.opened.set_result(False)
                assert self.transport is not None
                self.transport.close()
                return
            self.chunked = b"transfer-encoding: chunked" in head
            self.opened.set_result(True)
        if self.chunked:
            self._dechunk()
        else:
            self.body += self.raw
            self.raw = b""
        self._messages()

    def _dechunk(self) -> None:
        raw = self.raw
        pos = 0
        parts = [self.body]
        while True:
            line_end = raw.find(b"\r\n", pos)
            if line_end < 0:
                break
            size = int(raw[pos:line_end].split(b";", 1)[0], 16)
            if len(raw) < line_end + 2 + size + 2:
                break
            parts.append(raw[line_end + 2 : line_end + 2 + size])
            pos = line_end + 2 + size + 2
        self.raw = raw[pos:]
        self.body = b"".join(parts)

    def _messages(self) -> None:
        body = self.body
        if b"\r" in body:
            body = body.replace(b"\r\n", b"\n")
        blocks = body.split(b"\n\n")
        self.body = blocks.pop()
        if not blocks:
            return
        shared = self.shared
        now = time.time_ns()
        for block in blocks:
            if b"data:" not in block:
                continue
            n = _number_after(block, b'"n":')
            if n < 0:
                continue
            shared.messages += 1
            if n != self.next_n:
                shared.error(f"expected n={self.next_n}, got n={n}")
                self.next_n = n
            self.next_n += 1
            sent = _number_after(block, b'"t":')
            if sent > 0:
                shared.latencies.append(min((now - sent) // 1000, 2**31 - 1))
        shared.last_receive = now / 1e9
        if not self.done and self.next_n >= shared.expect:
            self.done = True
            shared.complete += 1
            if shared.complete >= shared.total:
                shared.all_done.set()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--subscribers", type=int, required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--latencies", required=True)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, args.subscribers + 1000)), hard))
    shared = Shared(args.expect)
    shared.total = args.subscribers
    extra = "".join(f"{h}\r\n" for h in args.header)
    request = f"GET {args.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n{extra}\r\n".encode()
    loop = asyncio.get_running_loop()
    transports = []

    async def connect() -> None:
        opened: asyncio.Future[bool] = loop.create_future()
        try:
            transport, _ = await loop.create_connection(
                lambda: Subscriber(shared, request, opened), "127.0.0.1", args.port
            )
        except OSError as exc:
            shared.failed += 1
            shared.error(f"connect: {exc}")
            return
        transports.append(transport)
        try:
            ok = await asyncio.wait_for(opened, 60)
        except TimeoutError:
            ok = False
        if ok:
            shared.connected += 1
        else:
            shared.failed += 1

    # Connect in waves so the server's listen backlog never overflows.
    for start in range(0, args.subscribers, 200):
        await asyncio.gather(*(connect() for _ in range(start, min(start + 200, args.subscribers))))
    shared.total = shared.connected
    print(f"READY {shared.connected} {shared.failed}", flush=True)

    deadline: asyncio.Future[float] = loop.create_future()

    def read_stop() -> None:
        line = sys.stdin.readline().split()
        value = float(line[1]) if len(line) == 3 and line[0] == "STOP" else time.time()
        published = int(line[2]) if len(line) == 3 else args.expect
        loop.call_soon_threadsafe(shared.published, published)
        loop.call_soon_threadsafe(deadline.set_result, value)

    threading.Thread(target=read_stop, daemon=True).start()
    until = await deadline
    if shared.total and shared.complete < shared.total:
        try:
            await asyncio.wait_for(shared.all_done.wait(), max(0.0, until - time.time()))
        except TimeoutError:
            pass
    for transport in transports:
        transport.close()
    with open(args.latencies, "wb") as out:
        shared.latencies.tofile(out)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "connected": shared.connected,
                "failed": shared.failed,
                "complete": shared.complete,
                "errors": shared.errors,
                "first_error": shared.first_error,
                "messages": shared.messages,
                "last_receive": shared.last_receive,
                "cpu": usage.ru_utime + usage.ru_stime,
                "pid": os.getpid(),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    uvloop.run(main())
