"""Server CPU per request, in one process and without sockets: the cost that a loaded machine's noise hides.

uvicorn's own protocol class (hookstream's bounded one, or plain httptools for the bare anchors)
is fed whole requests over in-memory transports from C concurrent connections, each waiting for
its answer before the next, as wrk does. What is left out is the kernel's part (recv, send, epoll)
and the load client; what is measured is everything between the bytes and the answer, the
SQLite writer thread included. Each of --rounds rounds of N requests reports CPU µs per request
(process and event-loop thread); the minimum is the figure least disturbed by other work.

    .venv/bin/python scripts/bench/request_cpu.py ingest            # one-event POSTs, 64 connections
    .venv/bin/python scripts/bench/request_cpu.py ingest --bare     # the bare Starlette anchor
    .venv/bin/python scripts/bench/request_cpu.py polling --log /tmp/hookstream-bench/logs/log-10000-300b-v1.db
    .venv/bin/python scripts/bench/request_cpu.py ingest --source DIR --profile out.pstats

`--source DIR` measures another hookstream tree (a snapshot of an older commit).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent


class _Transport(asyncio.Transport):
    """Collects what the protocol writes; the connection never closes by itself."""

    def __init__(self) -> None:
        super().__init__()
        self.out: list[bytes] = []
        self.closing = False

    def write(self, data: Any) -> None:
        self.out.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass


def _post(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: {len(body)}\r\n{head}\r\n".encode() + body


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    from uvicorn.config import Config
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    base: type[HttpToolsProtocol] = HttpToolsProtocol
    if args.bare:
        module = __import__(
            "anchors.page_app" if args.workload == "polling" else "anchors.ingest_app", fromlist=["app"]
        )
        app = module.app
    else:
        from app.main import create_app
        from app.settings import Settings

        try:
            from app._http import BoundedHttpToolsProtocol

            base = BoundedHttpToolsProtocol
        except ImportError:  # a tree older than the bounded protocol
            pass
        app = create_app(Settings.from_env())

    answered: dict[int, asyncio.Event] = {}

    class Protocol(base):  # type: ignore[misc, valid-type]
        def on_response_complete(self) -> None:
            super().on_response_complete()
            answered[id(self)].set()

    config = Config(app=app, http=Protocol, lifespan="off", proxy_headers=True, access_log=False, log_level="warning")
    config.load()
    state = ServerState()
    loop = asyncio.get_running_loop()

    def connect() -> tuple[Any, _Transport]:
        transport = _Transport()
        protocol = Protocol(config, state, {}, loop)
        protocol.connection_made(transport)
        answered[id(protocol)] = asyncio.Event()
        return protocol, transport

    async def ask(protocol: Any, transport: _Transport, raw: bytes) -> bytes:
        done = answered[id(protocol)]
        done.clear()
        transport.out.clear()
        protocol.data_received(raw)
        await done.wait()
        return b"".join(transport.out)

    async def run() -> dict[str, Any]:
        admin = {"authorization": "Bearer bench-admin-token", "content-type": "application/json"}
        if args.workload == "polling":
            meta = json.loads(Path(args.log).with_suffix(".json").read_text())
            requests = [
                f"GET /v2/webhooks/{meta['webhook_id']}/events?afterSeq={after}&limit=100 HTTP/1.1\r\n"
                f"host: 127.0.0.1\r\nx-api-key: {meta['api_key']}\r\n\r\n".encode()
                for after in range(0, meta["events"] - 100, 100)
            ]
            ok = b"HTTP/1.1 200"
        else:
            path = "/v2/accounts/acc_bench/events"
            if not args.bare:
                protocol, transport = connect()
                answer = await ask(protocol, transport, _post("/v2/admin/api-keys", b'{"name":"bench"}', admin))
                key = orjson.loads(answer.partition(b"\r\n\r\n")[2])["data"]["api_key"]
                auth = {"x-api-key": key, "content-type": "application/json"}
                await ask(protocol, transport, _post("/v2/accounts", b'{"account_id":"acc_bench"}', auth))
                await ask(protocol, transport, _post("/v2/webhooks", b'{"account_id":"acc_bench"}', auth))
            from logs import EVENT_TYPE, payload

            requests = [_post(path, orjson.dumps({"type": EVENT_TYPE, "data": payload(0, 300)}), admin)]
            ok = b"HTTP/1.1 201"
        connections = [connect() for _ in range(args.connections)]

        async def client(index: int, protocol: Any, transport: _Transport, count: int) -> None:
            for i in range(count):
                answer = await ask(protocol, transport, requests[(index * 37 + i) % len(requests)])
                if not answer.startswith(ok):
                    raise SystemExit(f"unexpected answer: {answer[:300]!r}")

        async def round_of(count: int) -> None:
            each = count // len(connections)
            await asyncio.gather(*(client(i, p, t, each) for i, (p, t) in enumerate(connections)))

        await round_of(20 * len(connections))  # warm-up: caches, the statement cache, the recent bodies
        profile = None
        if args.profile:
            import cProfile

            profile = cProfile.Profile()
            profile.enable()
        process, loop_thread, collections = [], [], []
        per_round = args.requests // len(connections) * len(connections)
        for _ in range(args.rounds):
            collected = sum(generation["collections"] for generation in gc.get_stats())
            cpu, thread = time.process_time(), time.thread_time()
            await round_of(per_round)
            process.append((time.process_time() - cpu) / per_round * 1e6)
            loop_thread.append((time.thread_time() - thread) / per_round * 1e6)
            collections.append(sum(generation["collections"] for generation in gc.get_stats()) - collected)
        if profile is not None:
            profile.disable()
            profile.dump_stats(args.profile)
        return {
            "workload": args.workload,
            "server": "bare" if args.bare else "hookstream",
            "source": str(Path(args.source or HERE.parents[1]).resolve()),
            "requests_per_round": per_round,
            "cpu_us_min": round(min(process), 1),
            "cpu_us_median": round(statistics.median(process), 1),
            "loop_thread_us_min": round(min(loop_thread), 1),
            "gc_collections_per_round": collections,
        }

    if args.bare:
        return await run()
    async with app.router.lifespan_context(app):
        return await run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload", choices=["ingest", "polling"])
    parser.add_argument("--bare", action="store_true", help="the bare Starlette anchor instead of hookstream")
    parser.add_argument("--requests", type=int, default=3200, help="requests per round (default 3200)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default 5)")
    parser.add_argument("--connections", type=int, help="default 64 for ingest, 8 for polling")
    parser.add_argument("--log", default="/tmp/hookstream-bench/logs/log-10000-300b-v1.db", help="polling's log")
    parser.add_argument("--synchronous", default="FULL", help="HOOKSTREAM_SQLITE_SYNCHRONOUS (default FULL)")
    parser.add_argument("--source", help="another hookstream tree to measure")
    parser.add_argument("--profile", help="write a cProfile of the measured rounds (event-loop thread) here")
    args = parser.parse_args()
    args.connections = args.connections or (8 if args.workload == "polling" else 64)
    source = Path(args.source or HERE.parents[1]).resolve()
    sys.path[:0] = [str(source), str(HERE)]
    os.chdir(source)
    scratch = Path(tempfile.mkdtemp(prefix="hookstream-request-cpu-"))
    database = scratch / "hookstream.db"
    if args.workload == "polling":
        shutil.copy(args.log, database)
        os.environ.update({"BENCH_LOG": args.log, "BENCH_LIMIT": "100", "HOOKSTREAM_RETENTION": "3650d"})
    os.environ.update(
        {
            "DATABASE_URL": f"sqlite:///{database}",
            "HOOKSTREAM_ADMIN_TOKEN": "bench-admin-token",
            "HOOKSTREAM_SQLITE_SYNCHRONOUS": args.synchronous,
        }
    )
    import uvloop

    try:
        print(json.dumps(uvloop.run(measure(args))))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
