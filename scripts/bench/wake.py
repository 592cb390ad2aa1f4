"""Cross-process wake-up on one SQLite file: the candidates side by side, then hookstream end to end.

Usage: .venv/bin/python scripts/bench/wake.py [--commits 300] [--idle 5] [--postgres URL]

1. Candidates, without hookstream: a writer process commits one row at a time (about 100/s,
   jittered) and a listener process, on an asyncio loop, learns of each commit by one
   mechanism — a datagram (storage/_wake.py, as the server uses it), `PRAGMA data_version`
   polled every 1 ms or 5 ms, or inotify on the -wal file — and reads the new head. Latency is
   the writer's clock after COMMIT returned to the listener's clock once it has read that
   row (CLOCK_MONOTONIC is one clock for every process). Idle cost is the listener's CPU
   time over `--idle` seconds with no commits, as a share of one core.
2. End to end: two `hookstream serve` processes on one file (or one PostgreSQL schema), an SSE
   stream on each, one event per POST to the first; latency is POST sent to the event read
   from each stream: the same process's stream, and the other process's.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import multiprocessing
import os
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from multiprocessing.connection import Connection
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from storage._wake import WakeChannel  # noqa: E402

ADMIN = "bench-admin-token"
IN_MODIFY = 0x2
IN_NONBLOCK = os.O_NONBLOCK


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _percentiles(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered) * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms, max {ordered[-1] * 1000:.2f} ms"


# 1. The candidates


def _listener(mechanism: str, path: str, idle: float, commits: int, pipe: Connection) -> None:
    asyncio.run(_listen(mechanism, path, idle, commits, pipe))


async def _listen(mechanism: str, path: str, idle: float, commits: int, pipe: Connection) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("SELECT count(*) FROM t").fetchone()  # opens the WAL, so the -wal file exists to be watched
    seen: dict[int, int] = {}
    woken = asyncio.Event()
    loop = asyncio.get_running_loop()

    def read_head() -> None:
        head = conn.execute("SELECT max(seq) FROM t").fetchone()[0] or 0
        now = time.monotonic_ns()
        for seq in range(len(seen) + 1, head + 1):
            seen[seq] = now
        if len(seen) >= commits:
            woken.set()

    poller: asyncio.Task[None] | None = None
    channel: WakeChannel | None = None
    if mechanism == "datagram":
        channel = WakeChannel(path)
        channel.open(lambda _head: read_head())
    elif mechanism.startswith("data_version"):
        interval = float(mechanism.split("/")[1].removesuffix("ms")) / 1000

        async def poll() -> None:
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            while True:
                await asyncio.sleep(interval)
                now = conn.execute("PRAGMA data_version").fetchone()[0]
                if now != version:
                    version = now
                    read_head()

        poller = asyncio.create_task(poll())
    elif mechanism == "inotify":
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.inotify_init1(IN_NONBLOCK)
        libc.inotify_add_watch(fd, (path + "-wal").encode(), IN_MODIFY)

        def settle(tries: int) -> None:
            # The -wal is written before the commit is visible (the wal-index in -shm moves last):
            # a read at once may find nothing new, so look again shortly.
            known = len(seen)
            read_head()
            if len(seen) == known and tries:
                loop.call_later(0.0005, settle, tries - 1)

        def readable() -> None:
            try:
                while os.read(fd, 4096):
                    pass
            except BlockingIOError:
                pass
            settle(20)

        loop.add_reader(fd, readable)
    started = _cpu()
    await asyncio.sleep(idle)
    idle_cpu = (_cpu() - started) / idle
    pipe.send(("ready", idle_cpu))
    await asyncio.wait_for(woken.wait(), 120)
    pipe.send(("seen", seen))
    if poller is not None:
        poller.cancel()
    if channel is not None:
        channel.close()


def _writer(path: str, commits: int, notify: bool) -> list[int]:
    conn = sqlite3.connect(path, isolation_level=None)
    channel = WakeChannel(path)
    stamps: list[int] = []

    async def write() -> None:
        if notify:
            channel.open(lambda _head: None)
        for seq in range(1, commits + 1):
            await asyncio.sleep(random.uniform(0.005, 0.015))
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t (seq, body) VALUES (?, ?)", (seq, b"x" * 300))
            conn.execute("COMMIT")
            stamps.append(time.monotonic_ns())
            if notify:
                channel.notify(seq)
        channel.close()

    asyncio.run(write())
    return stamps


def candidates(commits: int, idle: float) -> None:
    print("candidate                 | idle CPU (share of one core) | commit → listener has read it")
    for mechanism in ("datagram", "data_version/1ms", "data_version/5ms", "inotify"):
        with tempfile.TemporaryDirectory() as directory:
            path = str(Path(directory) / "wake.db")
            setup = sqlite3.connect(path, isolation_level=None)
            setup.execute("PRAGMA journal_mode=WAL")
            setup.execute("PRAGMA synchronous=NORMAL")
            setup.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, body BLOB)")
            setup.close()
            ours, theirs = multiprocessing.Pipe()
            listener = multiprocessing.Process(target=_listener, args=(mechanism, path, idle, commits, theirs))
            listener.start()
            _, idle_cpu = ours.recv()
            stamps = _writer(path, commits, notify=mechanism == "datagram")
            _, seen = ours.recv()
            listener.join()
            latencies = [(seen[seq] - stamp) / 1e9 for seq, stamp in enumerate(stamps, start=1)]
            print(f"{mechanism:25} | {idle_cpu * 100:27.2f}% | {_percentiles(latencies)}")


# 2. End to end


def _serve(database_url: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": database_url, "HOOKSTREAM_ADMIN_TOKEN": ADMIN, "PORT": str(port)}
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start: see {log}")


def _read_stream(
    url: str, webhook: str, key: str, count: int, arrived: dict[str, float], ready: threading.Event
) -> None:
    with (
        httpx.Client(base_url=url, timeout=httpx.Timeout(60, read=60)) as client,
        client.stream("GET", f"/v2/webhooks/{webhook}/stream", headers={"x-api-key": key}) as stream,
    ):
        ready.set()
        for line in stream.iter_lines():
            if line.startswith("data:"):
                arrived[orjson.loads(line[5:])["id"]] = time.monotonic()
                if len(arrived) >= count:
                    return


def end_to_end(database_url: str, label: str, events: int) -> None:
    ports = [_free_port(), _free_port()]
    with tempfile.TemporaryDirectory() as directory:
        url = database_url or f"sqlite:///{Path(directory) / 'hookstream.db'}"
        servers = [_serve(url, port, Path(directory) / f"server-{port}.log") for port in ports]
        try:
            bases = [f"http://127.0.0.1:{port}" for port in ports]
            admin = {"authorization": f"Bearer {ADMIN}"}
            with httpx.Client(base_url=bases[0], timeout=30) as http:
                key = http.post("/v2/admin/api-keys", json={"name": "wake"}, headers=admin).json()["data"]["api_key"]
                account = f"acc_{uuid.uuid4().hex[:8]}"
                http.post("/v2/accounts", json={"account_id": account}, headers={"x-api-key": key})
                webhook = http.post("/v2/webhooks", json={"account_id": account}, headers={"x-api-key": key})
                hook = webhook.json()["data"]["webhook_id"]
                arrivals: list[dict[str, float]] = [{}, {}]
                readers = []
                for base, arrived in zip(bases, arrivals, strict=True):
                    ready = threading.Event()
                    reader = threading.Thread(target=_read_stream, args=(base, hook, key, events, arrived, ready))
                    reader.start()
                    ready.wait(30)
                    readers.append(reader)
                time.sleep(0.5)
                sent: dict[str, float] = {}
                for number in range(events):
                    time.sleep(random.uniform(0.02, 0.04))
                    event_id = f"evt_wake_{number}"
                    sent[event_id] = time.monotonic()
                    response = http.post(
                        f"/v2/accounts/{account}/events",
                        json={"id": event_id, "type": "message_received", "data": {"n": number}},
                        headers=admin,
                    )
                    assert response.status_code == 201, response.text
                for reader in readers:
                    reader.join(60)
            for where, arrived in zip(("same process", "other process"), arrivals, strict=True):
                assert sorted(arrived) == sorted(sent), f"{where}: {len(arrived)} of {len(sent)} events"
                latencies = [arrived[i] - sent[i] for i in sent]
                print(f"{label:10} {where:14} POST sent → event read: {_percentiles(latencies)}")
        finally:
            for server in servers:
                server.terminate()
                server.wait(15)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commits", type=int, default=300)
    parser.add_argument("--idle", type=float, default=5.0)
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--postgres", help="also end to end on this PostgreSQL URL (a fresh schema)")
    args = parser.parse_args()
    candidates(args.commits, args.idle)
    end_to_end("", "sqlite", args.events)
    if args.postgres:
        schema = f"wake_{uuid.uuid4().hex[:8]}"
        end_to_end(f"{args.postgres}{'&' if '?' in args.postgres else '?'}schema={schema}", "postgresql", args.events)
        subprocess.run(["psql", args.postgres, "-qc", f'DROP SCHEMA "{schema}" CASCADE'], check=False)


if __name__ == "__main__":
    main()
