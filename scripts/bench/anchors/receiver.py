"""A webhook receiver for the delivery benchmark: answers every POST 204 at once, on raw asyncio (uvloop).

`GET /healthz` is ready; `GET /stats` gives {"count", "arrivals": {seq: first arrival, epoch seconds}}
so the benchmark counts deliveries and measures ingest→receiver latency by `webhook-seq`.
Usage: python receiver.py PORT
"""

from __future__ import annotations

import asyncio
import sys
import time

import orjson
import uvloop

_NO_CONTENT = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"
count = 0
arrivals: dict[str, float] = {}


class Receiver(asyncio.Protocol):
    """HTTP/1.1 keep-alive: headers up to the blank line, then Content-Length bytes of body, then 204."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.WriteTransport = transport  # type: ignore[assignment]
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        global count
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1")
            length = 0
            seq = None
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                lowered = name.strip().lower()
                if lowered == "content-length":
                    length = int(value)
                elif lowered == "webhook-seq":
                    seq = value.strip()
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            if head.startswith("GET /stats"):
                body = orjson.dumps({"count": count, "arrivals": arrivals})
                self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body))
            elif head.startswith("GET"):
                self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            else:
                count += 1
                if seq is not None and seq not in arrivals:
                    arrivals[seq] = time.time()
                self.transport.write(_NO_CONTENT)


async def main(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Receiver, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
