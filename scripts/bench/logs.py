"""Event logs for the read workloads, written straight into SQLite in hookstream's own row format.

Appending millions of events through HTTP would take most of the run, so the suite starts
hookstream once on an empty file (which migrates it and creates the key, account and webhook),
stops it, and bulk-inserts `events` and `feed` rows with envelopes built by `app.envelopes.encode`
— the same bytes ingest would store. Files are cached by size, so a second run skips this.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson
from procs import ADMIN_TOKEN, hookstream, request

from app.envelopes import encode
from app.ids import event_id

EVENT_TYPE = "message.received"
# The schema this generator writes rows for; bump when storage/migrations.py changes the tables.
FORMAT = 1


@dataclass
class LogFile:
    """A generated log: its path and the credentials that read its one webhook's feed."""

    path: str
    events: int
    api_key: str
    account_id: str
    webhook_id: str
    seconds_to_build: float = 0.0


def payload(n: int, size: int) -> dict[str, object]:
    """Event data of about `size` bytes; `n` and `t` lead so a subscriber finds them without parsing JSON."""
    return {"n": n, "t": 0, "message": {"id": f"msg_{n}", "thread_id": "thr_1"}, "pad": "x" * max(0, size - 90)}


def create_tenant(port: int, name: str = "bench") -> tuple[str, str, str]:
    """An API key, an account and a hosted webhook with filter `all`, created through the API."""
    admin = {"authorization": f"Bearer {ADMIN_TOKEN}", "content-type": "application/json"}
    status, body = request(port, "POST", "/v2/admin/api-keys", orjson.dumps({"name": name}), admin)
    assert status == 201, body
    key = orjson.loads(body)["data"]["api_key"]
    auth = {"x-api-key": key, "content-type": "application/json"}
    account = f"acc_{name}"
    status, body = request(port, "POST", "/v2/accounts", orjson.dumps({"account_id": account}), auth)
    assert status == 201, body
    status, body = request(port, "POST", "/v2/webhooks", orjson.dumps({"account_id": account}), auth)
    assert status == 201, body
    return key, account, orjson.loads(body)["data"]["webhook_id"]


def build(directory: Path, events: int, size: int, workdir: Path) -> LogFile:
    """A log of `events` events in one webhook's feed, reused from `directory` when already built."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"log-{events}-{size}b-v{FORMAT}.db"
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        return LogFile(**json.loads(meta.read_text()))
    for stale in directory.glob(path.name + "*"):
        stale.unlink()
    started = time.monotonic()
    with hookstream(workdir, path) as server:
        key, account, webhook = create_tenant(server.port)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-200000")
    now = time.time_ns() // 1000
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    chunk = 50_000
    for start in range(1, events + 1, chunk):
        rows = []
        feed = []
        for seq in range(start, min(start + chunk, events + 1)):
            event = encode(event_id(), EVENT_TYPE, account, stamp, orjson.dumps(payload(seq, size)))
            rows.append((seq, event.id, account, EVENT_TYPE, now, event.envelope(seq)))
            feed.append((webhook, seq))
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO events (seq, id, account_id, type, appended_at, body) VALUES (?, ?, ?, ?, ?, ?)", rows
        )
        conn.executemany("INSERT INTO feed (webhook_id, seq) VALUES (?, ?)", feed)
        conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    log = LogFile(str(path), events, key, account, webhook, round(time.monotonic() - started, 1))
    meta.write_text(json.dumps(asdict(log)))
    return log


def warm(log: LogFile) -> None:
    """Read the whole file once so it sits in the OS page cache, as a served log's pages would.

    A just-built 6 GB file is not all cached (writeback and reclaim drop part of it), and
    cold pages would measure the disk rather than how page reads scale with the log's size.
    """
    with open(log.path, "rb", buffering=0) as file:
        while file.read(8 << 20):
            pass


def disk_bytes(log: LogFile) -> int:
    return sum(os.path.getsize(p) for p in (log.path, log.path + "-wal") if os.path.exists(p))


__all__ = ["LogFile", "build", "create_tenant", "disk_bytes", "payload", "warm"]
