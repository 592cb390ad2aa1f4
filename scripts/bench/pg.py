"""The PostgreSQL rows: hookstream with `DATABASE_URL=postgresql://…`, against the same anchors.

Each workload gets a schema of its own in the database `--postgres` names (dropped first, so
every run starts from the same state). Polling and fan-out compare with the anchors of the
SQLite rows, which do not depend on a database; ingest compares with asyncpg inserting the
same rows into the same tables, 100 per transaction, on the same server.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from urllib.parse import urlencode, urlsplit, urlunsplit

import asyncpg
import orjson
from figures import Row
from logs import EVENT_TYPE, build, create_tenant, payload
from procs import anchor_app, hookstream
from workloads import READ_ENV, Plan, Target, _latency_trials, ingest_runs, latency_rows, nchan, polling_runs

from app.envelopes import encode
from app.ids import event_id


def schema_url(base: str, schema: str) -> str:
    parts = urlsplit(base)
    query = "&".join(q for q in (parts.query, urlencode({"schema": schema})) if q)
    return urlunsplit(parts._replace(query=query))


def fresh_schema(plan: Plan, schema: str) -> str:
    """Drop `schema` from the database and return the DATABASE_URL of a hookstream that recreates it."""
    asyncio.run(_drop_schema(plan.postgres, schema))
    return schema_url(plan.postgres, schema)


async def _drop_schema(base: str, schema: str) -> None:
    conn = await asyncpg.connect(base)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def _fill(base: str, schema: str, account: str, webhook: str, events: int, size: int) -> None:
    """Insert a feed of `events` events straight into hookstream's tables, as ingest would have stored them."""
    conn = await asyncpg.connect(base)
    try:
        now = time.time_ns() // 1000
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        rows = []
        for seq in range(1, events + 1):
            event = encode(event_id(), EVENT_TYPE, account, stamp, orjson.dumps(payload(seq, size)))
            rows.append((seq, event.id, account, EVENT_TYPE, now, event.envelope(seq)))
        async with conn.transaction():
            await conn.copy_records_to_table("events", records=rows, schema_name=schema)
            await conn.copy_records_to_table(
                "feed", records=[(webhook, seq) for seq in range(1, events + 1)], schema_name=schema
            )
            await conn.execute(f'UPDATE "{schema}".log_head SET seq = $1', events)
        await conn.execute(f'ANALYZE "{schema}".events')
        await conn.execute(f'ANALYZE "{schema}".feed')
    finally:
        await conn.close()


def polling_pg(plan: Plan) -> list[Row]:
    """Polling with hookstream on PostgreSQL, against the bare Starlette page of the SQLite row."""
    row = Row(
        "polling (PostgreSQL)",
        "pages/s, limit=100",
        "pages/s",
        "bare Starlette, precomputed page",
        "≥ 0.6",
        "higher",
        0.6,
    )
    schema = "bench_polling"
    url = fresh_schema(plan, schema)
    with hookstream(plan.workdir, url, READ_ENV) as server:
        key, account, webhook = create_tenant(server.port)
    asyncio.run(_fill(plan.postgres, schema, account, webhook, plan.poll_events, plan.message_bytes))
    page_log = build(plan.cache, plan.poll_events, plan.message_bytes, plan.workdir)
    args = [f"/v2/webhooks/{webhook}/events", key, str(plan.poll_events), "100", "walk"]
    anchor = anchor_app(
        plan.workdir, "page-anchor", "anchors.page_app", {"BENCH_LOG": page_log.path, "BENCH_LIMIT": "100"}
    )
    polling_runs(plan, hookstream(plan.workdir, url, READ_ENV), anchor, args, row)
    row.notes.append(f"schema {schema} of {urlsplit(plan.postgres).path.lstrip('/')}; PostgreSQL's CPU not counted")
    return [row]


def ingest_pg(plan: Plan) -> list[Row]:
    """Batches of 100 over HTTP into hookstream on PostgreSQL, vs asyncpg inserting the same rows 100 at a time."""
    row = Row(
        "ingest (PostgreSQL)",
        "durable events/s, batches of 100",
        "events/s",
        "asyncpg, 100-row transactions",
        "≥ 0.5",
        "higher",
        0.5,
    )
    schema = "bench_ingest"
    url = fresh_schema(plan, schema)
    directory = plan.workdir / "ingest-pg"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    body_file = directory / "batch.json"
    batch = {"events": [{"type": EVENT_TYPE, "data": payload(n, plan.message_bytes)} for n in range(100)]}
    body_file.write_bytes(orjson.dumps(batch))
    with hookstream(plan.workdir, url) as server:
        ingest_runs(
            plan,
            server,
            body_file,
            row,
            head=lambda: asyncio.run(_settled_head(plan.postgres, schema)),
            anchor=lambda: asyncio.run(_asyncpg_ingest(plan, schema, plan.seconds)),
        )
    row.notes.append(
        "anchor: one asyncpg connection, executemany of the same envelope rows + feed rows into copies of "
        "hookstream's tables (same indexes), one transaction per 100, synchronous_commit as the server has it"
    )
    return [row]


async def _settled_head(base: str, schema: str) -> int:
    """The log's head once requests wrk cut off at its deadline have finished."""
    conn = await asyncpg.connect(base)
    try:
        head = -1
        while True:
            again = await conn.fetchval(f'SELECT seq FROM "{schema}".log_head')
            if again == head:
                return int(head)
            head = again
            await asyncio.sleep(0.5)
    finally:
        await conn.close()


async def _asyncpg_ingest(plan: Plan, schema: str, seconds: float) -> float:
    conn = await asyncpg.connect(plan.postgres)
    anchor = f"{schema}_anchor"
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{anchor}" CASCADE; CREATE SCHEMA "{anchor}"')
        for table in ("events", "feed"):
            await conn.execute(f'CREATE TABLE "{anchor}".{table} (LIKE "{schema}".{table} INCLUDING ALL)')
        now = time.time_ns() // 1000
        stamp = "2025-01-15T12:00:00.000Z"
        envelopes = [
            encode(f"evt_{n}", EVENT_TYPE, "acc_bench", stamp, orjson.dumps(payload(n, plan.message_bytes)))
            for n in range(100)
        ]
        events_sql = (
            f'INSERT INTO "{anchor}".events (seq, id, account_id, type, appended_at, body)'
            " VALUES ($1, $2, $3, $4, $5, $6)"
        )
        feed_sql = f'INSERT INTO "{anchor}".feed (webhook_id, seq) VALUES ($1, $2)'
        seq = 0
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            rows = []
            for envelope in envelopes:
                seq += 1
                rows.append((seq, f"{envelope.id}_{seq}", "acc_bench", EVENT_TYPE, now, envelope.envelope(seq)))
            async with conn.transaction():
                await conn.executemany(events_sql, rows)
                await conn.executemany(feed_sql, [("bench", r[0]) for r in rows])
        rate = seq / (time.perf_counter() - started)
        await conn.execute(f'DROP SCHEMA "{anchor}" CASCADE')
        return rate
    finally:
        await conn.close()


def sse_fanout_pg(plan: Plan) -> list[Row]:
    """Publish→receive latency through hookstream on PostgreSQL, against nchan."""
    subscribers = min(plan.sse_subscribers)
    events = max(1, int(plan.sse_rate * plan.sse_seconds))
    p50, p99 = latency_rows("sse-fanout (PostgreSQL)", plan, subscribers)
    memory = Row("unused", "", "KB", "", "", "none", 0.0)
    schema = "bench_fanout"
    url = fresh_schema(plan, schema)
    with hookstream(plan.workdir, url) as server:
        key, account, webhook = create_tenant(server.port, "fanout")
        target = Target(server, f"/v2/webhooks/{webhook}/stream", [f"x-api-key: {key}"], account)
        _latency_trials(plan, target, subscribers, events, p50, p99, memory)
    with nchan(plan) as server:
        _latency_trials(
            plan, Target(server, "/sub?id=bench", [], kind="nchan"), subscribers, events, p50, p99, memory, anchor=True
        )
    return [p50, p99]


WORKLOADS_PG = {"polling-pg": polling_pg, "ingest-pg": ingest_pg, "sse-fanout-pg": sse_fanout_pg}
