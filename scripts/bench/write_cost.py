"""What one write to each of many SSE sockets costs, outside hookstream: the floor of a fan-out.

    .venv/bin/python scripts/bench/write_cost.py --sockets 1000

Opens N loopback connections to a reader process (a selector loop that reads and drops
everything), then times writing one 600-byte chunk to every socket, 30 times each way:
uvloop's `transport.write`, `os.write` on each socket's descriptor, and `os.write` split
over two threads (the GIL is released during the system call).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import uvloop

CHUNK = b"%x\r\n%b\r\n" % (600, b"x" * 600)
READER = r"""
import selectors, socket, sys
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(4096)
print(server.getsockname()[1], flush=True)
selector = selectors.DefaultSelector()
for _ in range(int(sys.argv[1])):
    conn, _ = server.accept()
    conn.setblocking(False)
    selector.register(conn, selectors.EVENT_READ)
while True:
    for key, _ in selector.select():
        try:
            if not key.fileobj.recv(65536):
                sys.exit()
        except BlockingIOError:
            pass
"""


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sockets", type=int, default=1000)
    count = parser.parse_args().sockets
    reader = subprocess.Popen([sys.executable, "-c", READER, str(count)], stdout=subprocess.PIPE, text=True)
    assert reader.stdout is not None
    port = int(reader.stdout.readline())
    loop = asyncio.get_running_loop()
    transports: list[Any] = []
    for _ in range(count):
        transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        transports.append(transport)
    fds = [transport.get_extra_info("socket").fileno() for transport in transports]
    await asyncio.sleep(0.5)
    half = count // 2
    start, done = threading.Event(), threading.Event()

    def write_fds(chosen: list[int]) -> None:
        for fd in chosen:
            os.write(fd, CHUNK)

    def helper() -> None:
        while True:
            start.wait()
            start.clear()
            write_fds(fds[half:])
            done.set()

    threading.Thread(target=helper, daemon=True).start()

    def transport_write() -> None:
        for transport in transports:
            transport.write(CHUNK)

    def two_threads() -> None:
        start.set()
        write_fds(fds[:half])
        done.wait()
        done.clear()

    ways: list[tuple[str, Callable[[], None]]] = [
        ("transport.write", transport_write),
        ("os.write", lambda: write_fds(fds)),
        ("os.write, 2 threads", two_threads),
    ]
    for name, write in ways * 2:
        times = []
        for _ in range(30):
            began = time.perf_counter()
            write()
            times.append(time.perf_counter() - began)
            await asyncio.sleep(0.02)
        median, worst = statistics.median(times) * 1e3, max(times) * 1e3
        print(f"{name:20} {count} writes: median {median:.2f} ms, max {worst:.2f} ms")
    for transport in transports:
        transport.close()
    reader.kill()


if __name__ == "__main__":
    uvloop.run(main())
