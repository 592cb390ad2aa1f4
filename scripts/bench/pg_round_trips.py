"""Round trips to PostgreSQL per polling page: pg_stat_database's transactions around walks of the feed.

Usage: .venv/bin/python scripts/bench/pg_round_trips.py TREE, TREE a checkout or a `git archive`
snapshot. Starts hookstream from TREE on the database pgpoll_rt (schema rt, recreated), ingests
10,000 events through it, restarts it (a cold process, as the benchmark's), then walks the feed
twice, 100 events a page, and prints transactions per page for each walk and for a caught-up
poll. Every asyncpg statement outside a transaction is one transaction (and the pool's reset of
a connection another); the count is for the whole database, which nothing else uses.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import asyncpg
import httpx

SOURCE = sys.argv[1]
BASE = "postgresql://postgres@127.0.0.1:5432/pgpoll_rt"
URL = BASE + "?schema=rt"
PORT = 18731
ADMIN = "rt-admin"


async def sql(query: str) -> object:
    conn = await asyncpg.connect(BASE)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


def transactions() -> int:
    time.sleep(11)  # an idle backend flushes its pg_stat counters within 10 s (PostgreSQL 15+)
    return int(asyncio.run(sql("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = 'pgpoll_rt'")))


def serve() -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": URL,
        "HOOKSTREAM_ADMIN_TOKEN": ADMIN,
        "HOOKSTREAM_RETENTION": "3650d",
        "PYTHONPATH": SOURCE,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(PORT)],
        cwd=SOURCE,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            if httpx.get(f"http://127.0.0.1:{PORT}/healthz").status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit("server did not start")


def main() -> None:
    async def reset() -> None:
        conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test")
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = 'pgpoll_rt'")
        if not exists:
            await conn.execute("CREATE DATABASE pgpoll_rt")
        await conn.close()
        await sql("DROP SCHEMA IF EXISTS rt CASCADE")

    asyncio.run(reset())
    proc = serve()
    admin = {"authorization": f"Bearer {ADMIN}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{PORT}", timeout=30) as http:
        key = http.post("/v2/admin/api-keys", json={"name": "rt"}, headers=admin).json()["data"]["api_key"]
        auth = {"x-api-key": key}
        http.post("/v2/accounts", json={"account_id": "acc_rt"}, headers=auth)
        hook = http.post("/v2/webhooks", json={"account_id": "acc_rt"}, headers=auth).json()["data"]["webhook_id"]
        for batch in range(10):
            events = [{"type": "message.new", "data": {"id": f"m{batch}.{n}", "text": "x" * 300}} for n in range(1000)]
            assert http.post("/v2/accounts/acc_rt/events", json={"events": events}, headers=admin).status_code == 201
    proc.terminate()
    proc.wait()
    proc = serve()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{PORT}", timeout=30, headers=auth) as http:
            http.get(f"/v2/webhooks/{hook}/events", params={"afterSeq": 10000})  # key, webhook, log state cached

            def walk(label: str) -> None:
                before = transactions()
                started = time.monotonic()
                for cursor in range(0, 10000, 100):
                    page = http.get(f"/v2/webhooks/{hook}/events", params={"afterSeq": cursor, "limit": 100}).json()
                    assert page["events"][0]["seq"] == cursor + 1 and page["lastSeq"] == cursor + 100
                seconds = time.monotonic() - started
                count = transactions() - before
                print(f"{label}: {count} transactions for 100 pages in {seconds:.2f}s: {count / 100:.2f} per page")

            walk("first walk (cold process)")
            walk("second walk")
            before = transactions()
            for _ in range(100):
                assert http.get(f"/v2/webhooks/{hook}/events", params={"afterSeq": 10000}).json()["lastSeq"] is None
            print(f"caught up, empty page: {(transactions() - before) / 100:.2f} transactions per page")
    finally:
        proc.terminate()
        proc.wait()


main()
