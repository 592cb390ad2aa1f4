"""The workloads: each measures hookstream and its anchor on the same machine, checking correctness as it goes."""

from __future__ import annotations

import array
import http.client
import json
import random
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
from figures import Row, percentile
from logs import EVENT_TYPE, LogFile, build, create_tenant, payload, warm
from procs import ADMIN_TOKEN, PYTHON, ROOT, Service, anchor_app, children_cpu, hookstream, raise_file_limit

from app.envelopes import encode
from storage.base import NewEvent

HERE = Path(__file__).resolve().parent
# Read workloads run on cached logs that may be days old; retention must not prune them.
READ_ENV = {"HOOKSTREAM_RETENTION": "3650d"}


@dataclass
class Plan:
    """Sizes and durations for one suite run."""

    runs: int
    seconds: float
    message_bytes: int
    poll_events: int
    small_events: int
    big_events: int
    replay_events: int
    ingest_connections: int
    poll_connections: int
    sse_subscribers: list[int]
    # The fan-out rate of the PostgreSQL row (the fastest of sse_rates).
    sse_rate: float
    sse_seconds: float
    throughput_subscribers: int
    throughput_events: int
    client_processes: int
    synchronous: str
    workdir: Path
    cache: Path
    # A postgresql:// URL for the PostgreSQL rows; empty leaves them out.
    postgres: str = ""
    listen_events: int = 20_000
    export_events: int = 1_000_000
    # Fan-out rates (events/s), one pair of latency rows each; and the idle streams sse-memory opens.
    sse_rates: tuple[float, ...] = (10.0, 100.0)
    memory_streams: int = 5000


class CheckFailed(RuntimeError):
    """The load client saw a wrong answer: the figure would be meaningless."""


# wrk


def wrk(port: int, script: str, args: list[str], *, threads: int, connections: int, seconds: float) -> dict[str, float]:
    """Run wrk with one of our Lua scripts; returns its BENCH summary plus the client's CPU share."""
    before = children_cpu()
    argv = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{max(1, round(seconds))}s",
        "--latency",
        "-s",
        str(HERE / script),
        f"http://127.0.0.1:{port}",
        "--",
        *args,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH ")), None)
    if line is None:
        raise CheckFailed(f"wrk printed no summary: {done.stdout[-500:]} {done.stderr[-500:]}")
    summary: dict[str, float] = json.loads(line[6:])
    summary["client_cpu_share"] = (children_cpu() - before) / summary["seconds"]
    return summary


def _cpu_note(label: str, client_share: float, server_share: float) -> str:
    return f"{label}: load client used {client_share:.0%} of a core, server {server_share:.0%}"


# Polling


def polling(plan: Plan) -> list[Row]:
    """GET /events?afterSeq=…&limit=100 with wrk walking cursors, against the same pages precomputed."""
    log = build(plan.cache, plan.poll_events, plan.message_bytes, plan.workdir)
    row = Row("polling", "pages/s, limit=100", "pages/s", "bare Starlette, precomputed page", "≥ 0.6", "higher", 0.6)
    path = f"/v2/webhooks/{log.webhook_id}/events"
    args = [path, log.api_key, str(log.events), "100", "walk"]
    anchor = anchor_app(plan.workdir, "page-anchor", "anchors.page_app", {"BENCH_LOG": log.path, "BENCH_LIMIT": "100"})
    polling_runs(plan, hookstream(plan.workdir, Path(log.path), READ_ENV), anchor, args, row)
    row.notes.append(
        f"{plan.poll_connections} connections (one per wrk thread), log of {log.events:,} events; every page "
        "checked: first seq = afterSeq+1 and lastSeq = afterSeq+100; every 16th also counted (100 events)"
    )
    return [row]


def polling_runs(plan: Plan, ours: Service, anchor: Service, args: list[str], row: Row) -> None:
    """wrk walking polling cursors on both servers, up at once, their runs alternating, so a shared machine's
    drift lands on both sides alike."""
    connections = plan.poll_connections
    sides = (("hookstream", ours, row.ours), ("anchor", anchor, row.theirs))
    notes = {}
    with ours, anchor:
        for _, server, _ in sides:
            wrk(server.port, "polling.lua", args, threads=connections, connections=connections, seconds=1)
        for _ in range(plan.runs):
            for label, server, figures in sides:
                cpu = server.cpu()
                result = wrk(
                    server.port, "polling.lua", args, threads=connections, connections=connections, seconds=plan.seconds
                )
                _check_pages(result, label)
                figures.append(result["requests"] / result["seconds"])
                server_share = (server.cpu() - cpu) / result["seconds"]
                notes[label] = _cpu_note(label, result["client_cpu_share"], server_share) + (
                    f", p99 {result['p99_us'] / 1000:.1f} ms"
                )
    row.notes += notes.values()


def _check_pages(result: dict[str, float], label: str) -> None:
    if result["bad"] or result["socket_errors"] or not result["pages"]:
        raise CheckFailed(
            f"{label}: {result['bad']} bad pages, {result['socket_errors']} socket errors: {result.get('first_error')}"
        )


# Ingest


def ingest(plan: Plan) -> list[Row]:
    """HTTP batches of 100 from concurrent clients vs sqlite3 inserting the same rows 100 per transaction."""
    row = Row(
        "ingest",
        f"durable events/s, batches of 100, synchronous={plan.synchronous}",
        "events/s",
        "sqlite3, 100-row transactions",
        "≥ 0.5",
        "higher",
        0.5,
    )
    directory = plan.workdir / "ingest"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    batch = {"events": [{"type": EVENT_TYPE, "data": payload(n, plan.message_bytes)} for n in range(100)]}
    body_file = directory / "batch.json"
    body_file.write_bytes(orjson.dumps(batch))
    envelopes = [
        encode(
            f"evt_{n}",
            EVENT_TYPE,
            "acc_bench",
            "2025-01-15T12:00:00.000Z",
            orjson.dumps(payload(n, plan.message_bytes)),
        )
        for n in range(100)
    ]
    env = {"HOOKSTREAM_SQLITE_SYNCHRONOUS": plan.synchronous}
    with hookstream(plan.workdir, directory / "hookstream.db", env) as server:
        ingest_runs(
            plan,
            server,
            body_file,
            row,
            head=lambda: _head_seq(directory / "hookstream.db"),
            anchor=lambda: _sqlite_ingest(directory / "anchor.db", envelopes, plan.synchronous, plan.seconds),
        )
    row.notes.append("anchor: one connection, WAL, events + feed rows, same disk as hookstream's file")
    return [row]


def ingest_runs(
    plan: Plan, server: Service, body_file: Path, row: Row, *, head: Callable[[], int], anchor: Callable[[], float]
) -> None:
    """wrk posting `body_file` (100 events) to a fresh tenant, checked against the log's growth, alternating
    each run with one of the anchor's, so a shared machine's drift lands on both sides alike."""
    _, account, _ = create_tenant(server.port)
    args = [f"/v2/accounts/{account}/events", ADMIN_TOKEN, str(body_file)]
    conns = plan.ingest_connections
    wrk(server.port, "ingest.lua", args, threads=2, connections=conns, seconds=1)
    for _ in range(plan.runs):
        before = head()
        cpu = server.cpu()
        result = wrk(server.port, "ingest.lua", args, threads=2, connections=conns, seconds=plan.seconds)
        server_share = (server.cpu() - cpu) / result["seconds"]
        grown = head() - before
        created = int(result["created"]) * 100
        # Requests cut off by wrk's deadline may still have committed: at most one batch per connection.
        if result["bad"] or grown < created or grown - created > conns * 100 or grown % 100:
            raise CheckFailed(
                f"{row.workload}: {result['created']} batches acknowledged but the log grew by {grown}; "
                f"{result['bad']} failed: {result.get('first_error')}"
            )
        row.ours.append(created / result["seconds"])
        row.theirs.append(anchor())
    row.notes.append(
        _cpu_note("hookstream", result["client_cpu_share"], server_share)
        + f", p99 {result['p99_us'] / 1000:.1f} ms; {conns} connections; log growth checked against the 201s"
    )


SINGLE_CONNECTIONS = 64


def ingest_single(plan: Plan) -> list[Row]:
    """One event per POST from 64 connections, against sqlite3 committing each event alone and a bare Starlette app."""
    metric = f"durable events/s, one event per POST, {SINGLE_CONNECTIONS} connections, synchronous={plan.synchronous}"
    vs_sqlite = Row("ingest-single", metric, "events/s", "sqlite3, one transaction per event", "≥ 3×", "higher", 3.0)
    vs_bare = Row("ingest-single", metric, "events/s", "bare Starlette, same POSTs, no storage", "≥ 0.5", "higher", 0.5)
    directory = plan.workdir / "ingest-single"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    body_file = directory / "event.json"
    body_file.write_bytes(orjson.dumps({"type": EVENT_TYPE, "data": payload(0, plan.message_bytes)}))
    envelopes = [
        encode(
            "evt_0", EVENT_TYPE, "acc_bench", "2025-01-15T12:00:00.000Z", orjson.dumps(payload(0, plan.message_bytes))
        )
    ]
    env = {"HOOKSTREAM_SQLITE_SYNCHRONOUS": plan.synchronous}
    bare = anchor_app(plan.workdir, "ingest-anchor", "anchors.ingest_app", {})
    with hookstream(plan.workdir, directory / "hookstream.db", env) as server, bare:
        _, account, _ = create_tenant(server.port)
        args = [f"/v2/accounts/{account}/events", ADMIN_TOKEN, str(body_file)]
        for port in (server.port, bare.port):
            wrk(port, "ingest.lua", args, threads=2, connections=SINGLE_CONNECTIONS, seconds=1)
        for _ in range(plan.runs):
            before = _head_seq(directory / "hookstream.db")
            cpu = server.cpu()
            result = wrk(
                server.port, "ingest.lua", args, threads=2, connections=SINGLE_CONNECTIONS, seconds=plan.seconds
            )
            server_share = (server.cpu() - cpu) / result["seconds"]
            grown = _head_seq(directory / "hookstream.db") - before
            created = int(result["created"])
            if result["bad"] or grown < created or grown - created > SINGLE_CONNECTIONS:
                raise CheckFailed(
                    f"ingest-single: {created} events acknowledged but the log grew by {grown}; "
                    f"{result['bad']} failed: {result.get('first_error')}"
                )
            ours = created / result["seconds"]
            vs_sqlite.ours.append(ours)
            vs_bare.ours.append(ours)
            vs_sqlite.theirs.append(_sqlite_ingest(directory / "anchor.db", envelopes, plan.synchronous, plan.seconds))
            anchor = wrk(bare.port, "ingest.lua", args, threads=2, connections=SINGLE_CONNECTIONS, seconds=plan.seconds)
            if anchor["bad"]:
                raise CheckFailed(f"ingest-single anchor: {anchor['bad']} failed: {anchor.get('first_error')}")
            vs_bare.theirs.append(anchor["created"] / anchor["seconds"])
    vs_sqlite.notes.append(
        _cpu_note("hookstream", result["client_cpu_share"], server_share)
        + f", p99 {result['p99_us'] / 1000:.1f} ms; log growth checked against the 201s"
    )
    vs_sqlite.notes.append("anchor: one connection, WAL, one BEGIN IMMEDIATE … COMMIT per event + its feed row")
    vs_bare.notes.append(
        f"anchor: uvicorn + Starlette parsing each body and answering 201, p99 {anchor['p99_us'] / 1000:.1f} ms"
    )
    return [vs_sqlite, vs_bare, *_ingest_single_workers(plan, directory, body_file, vs_sqlite, envelopes)]


def _ingest_single_workers(
    plan: Plan, directory: Path, body_file: Path, one: Row, envelopes: list[NewEvent]
) -> list[Row]:
    """The same POSTs to WEB_CONCURRENCY=2 processes sharing the file, against one process of the same run, and
    against the anchors on every core too: the bare app with two workers, alternated run by run, and sqlite3."""
    metric = one.metric + ", WEB_CONCURRENCY=2"
    row = Row("ingest-single", metric, "events/s", "itself, 1 process", "—", "none", 0.0)
    vs_sqlite = Row("ingest-single", metric, "events/s", "sqlite3, one transaction per event", "≥ 3×", "higher", 3.0)
    vs_bare = Row("ingest-single", metric, "events/s", "bare Starlette, 2 workers, no storage", "≥ 0.5", "higher", 0.5)
    database = directory / "workers.db"
    env = {"HOOKSTREAM_SQLITE_SYNCHRONOUS": plan.synchronous, "WEB_CONCURRENCY": "2"}
    bare = anchor_app(plan.workdir, "ingest-anchor-2", "anchors.ingest_app", {}, workers=2)
    with hookstream(plan.workdir, database, env) as server, bare:
        _, account, _ = create_tenant(server.port)
        args = [f"/v2/accounts/{account}/events", ADMIN_TOKEN, str(body_file)]
        for port in (server.port, bare.port):
            wrk(port, "ingest.lua", args, threads=2, connections=SINGLE_CONNECTIONS, seconds=1)
        for _ in range(plan.runs):
            before = _head_seq(database)
            result = wrk(
                server.port, "ingest.lua", args, threads=2, connections=SINGLE_CONNECTIONS, seconds=plan.seconds
            )
            grown = _head_seq(database) - before
            if result["bad"] or grown < result["created"] or grown - result["created"] > SINGLE_CONNECTIONS:
                raise CheckFailed(f"ingest-single, 2 processes: {result['created']} acknowledged, log grew by {grown}")
            ours = result["created"] / result["seconds"]
            for both in (row, vs_sqlite, vs_bare):
                both.ours.append(ours)
            vs_sqlite.theirs.append(_sqlite_ingest(directory / "anchor.db", envelopes, plan.synchronous, plan.seconds))
            anchor = wrk(bare.port, "ingest.lua", args, threads=2, connections=SINGLE_CONNECTIONS, seconds=plan.seconds)
            if anchor["bad"]:
                raise CheckFailed(
                    f"ingest-single anchor, 2 workers: {anchor['bad']} failed: {anchor.get('first_error')}"
                )
            vs_bare.theirs.append(anchor["created"] / anchor["seconds"])
    row.theirs = list(one.ours)
    row.notes.append(
        f"2 processes on one file, p99 {result['p99_us'] / 1000:.1f} ms; log growth checked against the 201s"
    )
    vs_bare.notes.append(f"anchor: the bare app under uvicorn --workers 2, p99 {anchor['p99_us'] / 1000:.1f} ms")
    return [row, vs_sqlite, vs_bare]


def _head_seq(path: Path) -> int:
    """The newest seq once the server has finished the requests wrk cut off at its deadline."""
    head = _read_head(path)
    while True:
        time.sleep(0.5)
        again = _read_head(path)
        if again == head:
            return head
        head = again


def _read_head(path: Path) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        found = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        return int(found[0]) if found else 0
    finally:
        conn.close()


def _sqlite_ingest(path: Path, envelopes: list[NewEvent], synchronous: str, seconds: float) -> float:
    for stale in path.parent.glob(path.name + "*"):
        stale.unlink()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(
        "CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,"
        " account_id TEXT NOT NULL, type TEXT NOT NULL, appended_at INTEGER NOT NULL, body BLOB NOT NULL)"
    )
    conn.execute(
        "CREATE TABLE feed (webhook_id TEXT NOT NULL, seq INTEGER NOT NULL,"
        " PRIMARY KEY (webhook_id, seq)) WITHOUT ROWID"
    )
    seq = 0
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        now = time.time_ns() // 1000
        rows = []
        feed = []
        for event in envelopes:
            seq += 1
            rows.append((seq, f"{event.id}_{seq}", "acc_bench", EVENT_TYPE, now, event.envelope(seq)))
            feed.append(("0123456789abcdef01234567", seq))
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO events (seq, id, account_id, type, appended_at, body) VALUES (?, ?, ?, ?, ?, ?)", rows
        )
        conn.executemany("INSERT INTO feed (webhook_id, seq) VALUES (?, ?)", feed)
        conn.execute("COMMIT")
    elapsed = time.monotonic() - started
    conn.close()
    return seq / elapsed


# Log-size independence


def log_size(plan: Plan) -> list[Row]:
    """Page read latency in a big log vs a small one, same server, same load, for three kinds of page.

    Random cursors with the recent-bodies cache off: every page is read from the database, on
    both logs. Cursors among the newest events with the cache on: what a poller that keeps up
    reads, on both logs. Random cursors with the cache on, as a server runs by default: on the
    small log every page is recent, on the big one nearly none is, so this row compares the
    memory path with the database path as much as a small log with a big one.
    """
    small = build(plan.cache, plan.small_events, plan.message_bytes, plan.workdir)
    big = build(plan.cache, plan.big_events, plan.message_bytes, plan.workdir)
    for log in (small, big):
        warm(log)
    recent = min(small.events, big.events)
    kinds = (
        ("random cursors, read from the database", {"HOOKSTREAM_EVENT_CACHE": "0"}, lambda log: 0),
        (f"cursors among the newest {recent:,} events", {}, lambda log: log.events - recent),
        ("random cursors, recent-bodies cache on (default)", {}, lambda log: 0),
    )
    rows: list[Row] = []
    for kind, env, lowest in kinds:
        p50, p99 = (
            Row(
                "log-size",
                f"page {q} latency, {big.events:,} vs {small.events:,} events, {kind}",
                "ms",
                f"itself at {small.events:,} events",
                "≤ 1.3×",
                "lower",
                1.3,
            )
            for q in ("p50", "p99")
        )
        rows += [p50, p99]
        for log, p50s, p99s in ((big, p50.ours, p99.ours), (small, p50.theirs, p99.theirs)):
            args = [f"/v2/webhooks/{log.webhook_id}/events", log.api_key, str(log.events), "100", "random"]
            args.append(str(lowest(log)))
            with hookstream(plan.workdir, Path(log.path), {**READ_ENV, **env}) as server:
                wrk(server.port, "polling.lua", args, threads=2, connections=2, seconds=2)
                for _ in range(plan.runs):
                    result = wrk(server.port, "polling.lua", args, threads=2, connections=2, seconds=plan.seconds)
                    _check_pages(result, f"log of {log.events}")
                    p50s.append(result["p50_us"] / 1000)
                    p99s.append(result["p99_us"] / 1000)
    rows[0].notes.append(
        "2 connections, limit=100, both files read once before measuring so they sit "
        f"in the OS page cache (cached in {plan.cache}); the {big.events:,}-event file was generated "
        f"directly in hookstream's row format in {big.seconds_to_build:.0f} s"
    )
    rows[-1].notes.append(
        "on the small log every page is among the newest events, so it is served from memory; "
        "on the big one a random page almost never is"
    )
    raw = ", ".join(
        f"{log.events:,} events {_raw_page_micros(log, mmap):.0f} µs{' with mmap' if mmap else ''}"
        for log in (small, big)
        for mmap in (0, 8 << 30)
    )
    rows[1].notes.append(f"the same query through plain sqlite3 (32 MB cache) at random cursors: {raw}")
    return rows


def _raw_page_micros(log: LogFile, mmap: int, pages: int = 2000) -> float:
    """Microseconds per page for hookstream's feed query run directly, to tell SQLite's cost from the server's."""
    conn = sqlite3.connect(f"file:{log.path}?mode=ro", uri=True)
    conn.execute("PRAGMA cache_size=-32000")
    conn.execute(f"PRAGMA mmap_size={mmap}")
    sql = (
        "SELECT e.seq, e.id, e.account_id, e.type, e.body FROM feed f JOIN events e ON e.seq = f.seq"
        " WHERE f.webhook_id = ? AND f.seq > ? ORDER BY f.seq LIMIT 101"
    )
    rng = random.Random(6)
    for _ in range(200):
        conn.execute(sql, (log.webhook_id, rng.randint(0, log.events - 100))).fetchall()
    started = time.perf_counter()
    for _ in range(pages):
        conn.execute(sql, (log.webhook_id, rng.randint(0, log.events - 100))).fetchall()
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed / pages * 1e6


# Replay


def replay(plan: Plan) -> list[Row]:
    """Read the first N events of a log through /events with limit=1000, vs sqlite3 + orjson doing the same."""
    log = build(plan.cache, max(plan.replay_events, plan.big_events), plan.message_bytes, plan.workdir)
    total = min(plan.replay_events, log.events)
    row = Row(
        "replay",
        f"events/s reading {total:,} events, limit=1000",
        "events/s",
        "sqlite3 + orjson",
        "≥ 0.5",
        "higher",
        0.5,
    )
    with hookstream(plan.workdir, Path(log.path), READ_ENV) as server:
        _replay_http(server, log, min(total, 20_000))
        for _ in range(plan.runs):
            rate, client_share, server_share = _replay_http(server, log, total)
            row.ours.append(rate)
    row.notes.append(
        _cpu_note("hookstream", client_share, server_share)
        + "; one client walking lastSeq, every page checked to continue the cursor"
    )
    for _ in range(plan.runs):
        row.theirs.append(_replay_sqlite(log, total))
    return [row]


def _replay_http(server: Service, log: LogFile, total: int) -> tuple[float, float, float]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    headers = {"x-api-key": log.api_key}
    path = f"/v2/webhooks/{log.webhook_id}/events?limit=1000&afterSeq="
    cursor = 0
    client_cpu = time.process_time()
    server_cpu = server.cpu()
    started = time.monotonic()
    while cursor < total:
        conn.request("GET", path + str(cursor), headers=headers)
        response = conn.getresponse()
        body = response.read()
        first = body.find(b'"seq":')
        last = body.rfind(b'"lastSeq":')
        count = body.count(b',"seq":')
        first_seq = int(body[first + 6 : body.index(b",", first)])
        last_seq = int(body[last + 10 : body.index(b",", last)])
        if (
            response.status != 200
            or first_seq != cursor + 1
            or last_seq != cursor + count
            or count != min(1000, log.events - cursor)
        ):
            raise CheckFailed(f"replay: page after {cursor} starts at {first_seq}, ends at {last_seq}, has {count}")
        cursor = last_seq
    elapsed = time.monotonic() - started
    conn.close()
    return cursor / elapsed, (time.process_time() - client_cpu) / elapsed, (server.cpu() - server_cpu) / elapsed


def _replay_sqlite(log: LogFile, total: int) -> float:
    conn = sqlite3.connect(f"file:{log.path}?mode=ro", uri=True)
    epoch = conn.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()[0]
    cursor = 0
    started = time.monotonic()
    while cursor < total:
        rows = conn.execute(
            "SELECT e.seq, e.id, e.account_id, e.type, e.body FROM feed f JOIN events e ON e.seq = f.seq"
            " WHERE f.webhook_id = ? AND f.seq > ? ORDER BY f.seq LIMIT ?",
            (log.webhook_id, cursor, 1001),
        ).fetchall()
        page = rows[:1000]
        orjson.dumps(
            {
                "success": True,
                "events": [orjson.Fragment(r[4]) for r in page],
                "hasMore": len(rows) > 1000,
                "lastSeq": page[-1][0],
                "epoch": epoch,
            }
        )
        cursor = page[-1][0]
    elapsed = time.monotonic() - started
    conn.close()
    return cursor / elapsed


# SSE


def nchan(plan: Plan) -> Service:
    """nginx with Debian's nchan module: one worker (hookstream is one process), EventSource subscribers."""
    directory = plan.workdir / "nginx"
    directory.mkdir(parents=True, exist_ok=True)
    service = Service("nchan", [], plan.workdir, ready_path="/healthz")
    (directory / "nginx.conf").write_text(f"""
load_module /usr/lib/nginx/modules/ngx_nchan_module.so;
user root;
worker_processes 1;
worker_rlimit_nofile 19000;
daemon off;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 18000; }}
http {{
    access_log off;
    client_body_temp_path {directory}/body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    server {{
        listen 127.0.0.1:{service.port} backlog=4096;
        location = /healthz {{ return 200 "ok"; }}
        location = /pub {{
            nchan_publisher;
            nchan_channel_id $arg_id;
            nchan_message_buffer_length 2000;
            nchan_message_timeout 10m;
        }}
        location = /sub {{
            nchan_subscriber eventsource;
            nchan_channel_id $arg_id;
            nchan_subscriber_first_message newest;
        }}
    }}
}}
""")
    service.argv = ["nginx", "-p", str(directory), "-c", str(directory / "nginx.conf")]
    return service


@dataclass
class Target:
    """Where subscribers connect and how events are published, for one server under test."""

    server: Service
    sub_path: str
    sub_headers: list[str]
    account: str = ""
    kind: str = "hookstream"

    def publish(self, conn: http.client.HTTPConnection, first_n: int, count: int, size: int) -> None:
        """Publish events n = first_n … first_n+count-1, each stamped with time.time_ns() as it is sent."""
        stamp = time.time_ns()
        datas = [dict(payload(n, size), t=stamp) for n in range(first_n, first_n + count)]
        if self.kind == "nchan":
            # The same envelope bytes hookstream would stream, so messages are the same size.
            for n, data in enumerate(datas, start=first_n):
                event = encode(f"evt_{n}", EVENT_TYPE, "acc_bench", "2025-01-15T12:00:00.000Z", orjson.dumps(data))
                _post(conn, "/pub?id=bench", event.envelope(n + 1), {})
            return
        body = orjson.dumps({"events": [{"type": EVENT_TYPE, "data": data} for data in datas]})
        path = f"/v2/accounts/{self.account}/events" if self.kind == "hookstream" else "/pub"
        _post(conn, path, body, {"authorization": f"Bearer {ADMIN_TOKEN}", "content-type": "application/json"})


def _post(conn: http.client.HTTPConnection, path: str, body: bytes, headers: dict[str, str]) -> None:
    conn.request("POST", path, body=body, headers=headers)
    response = conn.getresponse()
    text = response.read()
    if response.status not in (200, 201, 202):
        raise CheckFailed(f"publish {path}: {response.status} {text[:200]!r}")


def _hookstream_target(plan: Plan, name: str) -> tuple[Target | None, Service, str]:
    database = plan.workdir / f"{name}.db"
    for stale in plan.workdir.glob(f"{name}.db*"):
        # The -wake directory holds the cross-process wake-up's markers.
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    server = hookstream(plan.workdir, database, {"HOOKSTREAM_SQLITE_SYNCHRONOUS": plan.synchronous}).start()
    key, account, webhook = create_tenant(server.port, name)
    path = f"/v2/webhooks/{webhook}/stream"
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", path, headers={"x-api-key": key, "accept": "text/event-stream"})
        status = conn.getresponse().status
    finally:
        conn.close()
    if status != 200:
        server.stop()
        return None, server, "skipped: stream endpoint missing" if status in (404, 405) else f"skipped: {status}"
    return Target(server, path, [f"x-api-key: {key}"], account), server, ""


@dataclass
class FanOut:
    """What the subscribers of one trial saw."""

    connected: int
    complete: int
    latencies: list[int]
    last_receive: float
    client_cpu: float
    idle_rss_per_connection: float
    published: int


def fan_out(plan: Plan, target: Target, subscribers: int, events: int, *, rate: float | None, batch: int) -> FanOut:
    """Connect subscribers across client processes, publish `events`, and collect what each one received."""
    processes: list[subprocess.Popen[str]] = []
    try:
        return _fan_out(plan, target, subscribers, events, rate, batch, processes)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def _fan_out(
    plan: Plan,
    target: Target,
    subscribers: int,
    events: int,
    rate: float | None,
    batch: int,
    processes: list[subprocess.Popen[str]],
) -> FanOut:
    share = -(-subscribers // plan.client_processes)
    rss_before = target.server.rss()
    for index in range(plan.client_processes):
        count = min(share, subscribers - index * share)
        if count <= 0:
            break
        argv = [
            PYTHON,
            str(HERE / "sse_load.py"),
            "--port",
            str(target.server.port),
            "--path",
            target.sub_path,
            "--subscribers",
            str(count),
            "--expect",
            str(events),
            "--latencies",
            str(plan.workdir / f"latencies-{index}.bin"),
        ]
        for header in target.sub_headers:
            argv += ["--header", header]
        processes.append(
            subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT, preexec_fn=raise_file_limit
            )
        )
    connected = 0
    for process in processes:
        assert process.stdout is not None
        ready = process.stdout.readline().split()
        if not ready or ready[0] != "READY":
            raise CheckFailed(f"SSE client failed to start: {ready}")
        connected += int(ready[1])
    if connected < subscribers:
        raise CheckFailed(f"{target.kind}: only {connected} of {subscribers} subscribers connected")
    time.sleep(1.0)
    idle_rss = (target.server.rss() - rss_before) / max(1, connected)
    conn = http.client.HTTPConnection("127.0.0.1", target.server.port, timeout=60)
    started = time.time()
    # Bounded in time: a saturated server slows the publisher down; past this it stops publishing.
    budget = (events / rate if rate else 0.0) + max(10.0, plan.sse_seconds)
    sent = 0
    while sent < events and time.time() - started < budget:
        if rate is not None:
            delay = started + sent / rate - time.time()
            if delay > 0:
                time.sleep(delay)
        count = min(batch, events - sent)
        target.publish(conn, sent, count, plan.message_bytes)
        sent += count
    conn.close()
    grace = max(10.0, plan.sse_seconds)
    for process in processes:
        assert process.stdin is not None
        process.stdin.write(f"STOP {time.time() + grace} {sent}\n")
        process.stdin.flush()
    results = []
    for process in processes:
        assert process.stdout is not None
        results.append(json.loads(process.stdout.readline()))
        process.wait(grace + 30)
    latencies: array.array[int] = array.array("i")
    for index in range(len(processes)):
        path = plan.workdir / f"latencies-{index}.bin"
        latencies.frombytes(path.read_bytes())
        path.unlink()
    errors = sum(r["errors"] for r in results)
    complete = sum(r["complete"] for r in results)
    if errors or complete != subscribers:
        first = next((r["first_error"] for r in results if r["first_error"]), "")
        raise CheckFailed(
            f"{target.kind}: {complete}/{subscribers} subscribers got all {sent} events in order "
            f"within {grace:.0f} s of the last publish; {errors} errors, first: {first}"
        )
    return FanOut(
        connected,
        complete,
        sorted(latencies),
        max(r["last_receive"] for r in results) - started,
        sum(r["cpu"] for r in results),
        idle_rss,
        sent,
    )


def latency_rows(workload: str, plan: Plan, subscribers: int, rate: float | None = None) -> tuple[Row, Row]:
    """The p50 (for context) and p99 (against the target: at most nchan's) rows of one fan-out size and rate."""
    metric = f"latency, {subscribers:,} subs, {rate or plan.sse_rate:g} ev/s"
    return (
        Row(workload, f"p50 {metric}", "ms", "nchan", "—", "none", 0.0),
        Row(workload, f"p99 {metric}", "ms", "nchan", "≤ 1×", "lower", 1.0),
    )


def sse_fanout(plan: Plan) -> list[Row]:
    """Publish→receive latency at steady rates to many live-tail subscribers vs nchan."""
    rows: list[Row] = []
    unused = Row("unused", "", "KB", "", "", "none", 0.0)
    for rate in plan.sse_rates:
        events = max(1, int(rate * plan.sse_seconds))
        for subscribers in plan.sse_subscribers:
            p50, p99 = latency_rows("sse-fanout", plan, subscribers, rate)
            rows += [p50, p99]
            target, server, skipped = _hookstream_target(plan, f"fanout{subscribers}")
            try:
                if target is None:
                    p50.skipped = p99.skipped = skipped
                else:
                    _latency_trials(plan, target, subscribers, events, p50, p99, unused, rate=rate)
            finally:
                server.stop()
            with nchan(plan) as server:
                target = Target(server, "/sub?id=bench", [], kind="nchan")
                _latency_trials(plan, target, subscribers, events, p50, p99, unused, anchor=True, rate=rate)
    return rows


def sse_memory(plan: Plan) -> list[Row]:
    """Server RSS growth per idle stream, N streams open on one webhook and nothing published, vs nchan."""
    streams = plan.memory_streams
    row = Row(
        "sse-memory",
        f"RSS per idle SSE connection at {streams:,}",
        "KB",
        "nchan",
        "≤ 12 KB (absolute)",
        "absolute",
        12.0,
    )
    # A fresh server each run: one that served streams before reuses the memory they freed.
    for _ in range(plan.runs):
        target, server, skipped = _hookstream_target(plan, "memory")
        try:
            if target is None:
                row.skipped = skipped
                break
            row.ours.append(fan_out(plan, target, streams, 0, rate=None, batch=1).idle_rss_per_connection / 1024)
        finally:
            server.stop()
    for _ in range(plan.runs):
        with nchan(plan) as server:
            target = Target(server, "/sub?id=bench", [], kind="nchan")
            row.theirs.append(fan_out(plan, target, streams, 0, rate=None, batch=1).idle_rss_per_connection / 1024)
    row.notes.append(
        "server RSS growth 1 s after the streams connected, divided by their number; a fresh server each run"
    )
    return [row]


def _latency_trials(
    plan: Plan,
    target: Target,
    subscribers: int,
    events: int,
    p50: Row,
    p99: Row,
    memory: Row,
    anchor: bool = False,
    rate: float | None = None,
) -> None:
    accepted = events
    rate = rate or plan.sse_rate
    for run in range(plan.runs):
        cpu = target.server.cpu()
        result = fan_out(plan, target, subscribers, events, rate=rate, batch=1)
        accepted = min(accepted, result.published)
        server_share = (target.server.cpu() - cpu) / max(result.last_receive, 0.001)
        (p50.theirs if anchor else p50.ours).append(percentile(result.latencies, 0.50) / 1000)
        (p99.theirs if anchor else p99.ours).append(percentile(result.latencies, 0.99) / 1000)
        if run == 0 and memory.workload != "unused" and subscribers == max(plan.sse_subscribers):
            (memory.theirs if anchor else memory.ours).append(result.idle_rss_per_connection / 1024)
    shortfall = ""
    if accepted < events:
        for row in (p50, p99):
            if anchor:
                row.anchor_saturated = True
            else:
                row.saturated = True
        shortfall = f" — SATURATED: only {accepted} of {events} events were accepted within the time bound"
    p50.notes.append(
        f"{target.kind}: {result.published} events to each subscriber, all received once and in order{shortfall}; "
        + _client_note(plan, result)
        + f", server {server_share:.0%}"
    )


def _client_note(plan: Plan, result: FanOut) -> str:
    share = result.client_cpu / max(result.last_receive, 0.001)
    # Each client process is one event loop: near a full core per process it, not the server, sets the pace.
    bound = " — CLIENT-BOUND, figure is a bound" if share > 0.85 * plan.client_processes else ""
    return f"clients used {share:.0%} of a core over {plan.client_processes} processes{bound}"


def sse_throughput(plan: Plan) -> list[Row]:
    """Publish as fast as possible (batches of 100) to many subscribers; delivered events/s vs bare sse-starlette."""
    subscribers, events = plan.throughput_subscribers, plan.throughput_events
    row = Row(
        "sse-throughput",
        f"delivered events/s, {subscribers:,} subs, {events:,} events",
        "events/s",
        "bare sse-starlette, from memory",
        "≥ 0.7",
        "higher",
        0.7,
    )
    target, server, skipped = _hookstream_target(plan, "throughput")
    try:
        if target is None:
            row.skipped = skipped
        else:
            _throughput_trials(plan, target, subscribers, events, row, anchor=False)
    finally:
        server.stop()
    with anchor_app(plan.workdir, "sse-anchor", "anchors.broadcast_app", {}) as server:
        target = Target(server, "/sub", [], kind="sse-starlette")
        _throughput_trials(plan, target, subscribers, events, row, anchor=True)
    return [row]


def _throughput_trials(plan: Plan, target: Target, subscribers: int, events: int, row: Row, anchor: bool) -> None:
    for _ in range(plan.runs):
        cpu = target.server.cpu()
        result = fan_out(plan, target, subscribers, events, rate=None, batch=100)
        (row.theirs if anchor else row.ours).append(subscribers * result.published / result.last_receive)
        server_share = (target.server.cpu() - cpu) / result.last_receive
    row.notes.append(
        f"{target.kind}: every subscriber got all {result.published} events once and in order; "
        + _client_note(plan, result)
        + f", server {server_share:.0%}"
    )


WORKLOADS = {
    "polling": polling,
    "ingest": ingest,
    "ingest-single": ingest_single,
    "log-size": log_size,
    "replay": replay,
    "sse-fanout": sse_fanout,
    "sse-memory": sse_memory,
    "sse-throughput": sse_throughput,
}
