"""What an idle SSE stream holds: hookstream in this process under tracemalloc, N idle streams from sse_load.py.

    .venv/bin/python scripts/bench/idle_memory.py --streams 1000

Serves the app as `hookstream serve` does (uvicorn, uvloop, hookstream's protocol) on a fresh
SQLite file, opens N live-tail streams of one webhook from a client process, and prints what
the server's Python heap gained per stream, by the line that allocated it, plus RSS growth per
stream. tracemalloc sees what goes through Python's allocators; libuv's own (the handle of each
socket) and the kernel's socket buffers are not in it, so RSS per stream is the larger figure.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(HERE), str(ROOT)]

import httpx  # noqa: E402
import uvicorn  # noqa: E402
import uvloop  # noqa: E402
from procs import ADMIN_TOKEN, free_port, raise_file_limit, rss_bytes  # noqa: E402


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    raise_file_limit()
    workdir = Path(tempfile.mkdtemp(prefix="hookstream-idle-"))
    os.environ.update(
        {
            "DATABASE_URL": f"sqlite:///{workdir / 'idle.db'}",
            "HOOKSTREAM_ADMIN_TOKEN": ADMIN_TOKEN,
            "HOOKSTREAM_MAX_STREAMS_PER_KEY": "100000",
        }
    )
    from app.main import create_app

    port = free_port()
    config = uvicorn.Config(
        create_app(),
        host="127.0.0.1",
        port=port,
        loop="none",
        http="app._http:BoundedHttpToolsProtocol",
        access_log=False,
        log_level="warning",
        backlog=4096,
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
        key = (await http.post("/v2/admin/api-keys", json={"name": "idle"}, headers=admin)).json()["data"]["api_key"]
        auth = {"x-api-key": key}
        await http.post("/v2/accounts", json={"account_id": "acc_idle"}, headers=auth)
        webhook = (await http.post("/v2/webhooks", json={"account_id": "acc_idle"}, headers=auth)).json()["data"]
        # One stream opened and closed first, so lazily built parts of the route are not counted per stream.
        async with http.stream("GET", f"/v2/webhooks/{webhook['webhook_id']}/stream", headers=auth) as response:
            assert response.status_code == 200
    gc.collect()
    tracemalloc.start(8)
    before = tracemalloc.take_snapshot()
    rss_before = rss_bytes(os.getpid())
    client = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "sse_load.py"),
            "--port",
            str(port),
            "--path",
            f"/v2/webhooks/{webhook['webhook_id']}/stream",
            "--header",
            f"x-api-key: {key}",
            "--subscribers",
            str(args.streams),
            "--expect",
            "0",
            "--latencies",
            str(workdir / "latencies.bin"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=raise_file_limit,
    )
    assert client.stdout is not None and client.stdin is not None
    ready = await asyncio.to_thread(client.stdout.readline)
    assert ready.startswith(f"READY {args.streams} "), ready
    await asyncio.sleep(1.0)
    gc.collect()
    after = tracemalloc.take_snapshot()
    rss_after = rss_bytes(os.getpid())
    n = args.streams
    stats = after.compare_to(before, "lineno")
    grown = sum(stat.size_diff for stat in stats)
    rss = (rss_after - rss_before) / n
    print(f"{n} idle streams: Python heap +{grown / n:,.0f} B per stream (tracemalloc), RSS +{rss:,.0f} B per stream")
    print(f"{'B/stream':>9} {'objs/stream':>11}  allocated at")
    for stat in stats[: args.top]:
        frame = stat.traceback[0]
        where = f"{Path(frame.filename).name}:{frame.lineno}"
        print(f"{stat.size_diff / n:9.0f} {stat.count_diff / n:11.2f}  {where}")
    client.stdin.write(f"STOP {time.time() + 5} 0\n")
    client.stdin.flush()
    await asyncio.to_thread(client.wait, 30)
    server.should_exit = True
    await serving


if __name__ == "__main__":
    uvloop.run(main())
