"""Several hookstream processes on one database: one log, gap-free readers, cross-process wake-ups.

Every test runs on a SQLite file that the processes share and on one PostgreSQL schema.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import orjson
import pytest

from tests.monitoring import eventually, intervals_never_overlap, monitor_env, open_intervals
from tests.server import Api, Server, postgres_test_url

POSTGRES_URL = os.environ.get("HOOKSTREAM_TEST_POSTGRES_URL", "")

NEEDS_POSTGRES = [
    pytest.mark.postgres,
    pytest.mark.skipif(not POSTGRES_URL, reason="set HOOKSTREAM_TEST_POSTGRES_URL=postgresql://… to run it"),
]


def sql(query: str, *args: Any) -> list[asyncpg.Record]:
    """Run one statement on the test database, as an operator with psql would."""

    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(POSTGRES_URL)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    return asyncio.run(run())


def listen_backends(server: Server) -> list[int]:
    """The PostgreSQL backend pids of the server's notification connection."""
    assert server.process is not None
    rows = sql(
        "SELECT pid FROM pg_stat_activity WHERE application_name = $1", f"hookstream-listen-{server.process.pid}"
    )
    return [row[0] for row in rows]


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def client() -> Iterator[Callable[..., Api]]:
    """Make `Api` clients (a new key, or an existing one with `api_key=`); all are closed after the test."""
    clients: list[Api] = []

    def make(server: Server, api_key: str | None = None) -> Api:
        clients.append(Api(server, api_key))
        return clients[-1]

    yield make
    for api in clients:
        api.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=NEEDS_POSTGRES)])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., list[Server]]]:
    """Start server processes sharing one fresh database; all are killed (and a PostgreSQL schema dropped) after."""
    schema = f"t_{uuid4().hex[:12]}"
    url = f"sqlite:///{tmp_path / 'cluster.db'}" if request.param == "sqlite" else postgres_test_url(schema)
    servers: list[Server] = []

    def start(count: int, env: dict[str, str] | None = None) -> list[Server]:
        batch = [Server(tmp_path, env, database_url=url) for _ in range(count)]
        servers.extend(batch)
        # Together, so their migrations of the fresh schema race.
        with ThreadPoolExecutor(count) as pool:
            list(pool.map(lambda server: server.start(timeout=60), batch))
        return batch

    start.database_url = url  # type: ignore[attr-defined]
    yield start
    for server in servers:
        server.kill()
    if request.param == "postgres":
        sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def long_poll(api: Api, webhook_id: str, after_seq: int, wait: float = 30) -> Future[tuple[dict[str, Any], float]]:
    """Start a long poll in a thread; the future gives the page and the monotonic time it came back."""
    pool = ThreadPoolExecutor(1)

    def run() -> tuple[dict[str, Any], float]:
        with httpx.Client(base_url=api.server.url, timeout=wait + 30) as client:
            response = client.get(
                f"/v2/webhooks/{webhook_id}/events",
                params={"afterSeq": after_seq, "wait": wait},
                headers=api.auth,
            )
        assert response.status_code == 200, response.text
        return response.json(), time.monotonic()

    future = pool.submit(run)
    pool.shutdown(wait=False)
    return future


def test_three_processes_started_together_share_one_log_and_survive_one_being_killed(
    cluster: Callable[..., list[Server]], client: Callable[..., Api]
) -> None:
    first, second, third = cluster(3)
    platform = client(first)
    account = platform.create_account()
    hook = platform.create_webhook(account)["webhook_id"]
    on_third = client(third, platform.api_key)
    appended = platform.ingest(account, {"type": "message_received", "data": {"id": "m1"}})

    # Another process serves a page as fresh as what it has heard: the commit reaches it in milliseconds.
    on_second = client(second, platform.api_key)
    wait_for(
        lambda: [e["id"] for e in on_second.feed(hook)] == [appended[0]["id"]], what="the event on another process"
    )
    waiting = long_poll(on_third, hook, appended[0]["seq"])
    first.kill()
    later = client(second, platform.api_key).ingest(account, {"type": "message_received", "data": {"id": "m2"}})

    page, _ = waiting.result(timeout=30)
    assert [e["id"] for e in page["events"]] == [later[0]["id"]]
    assert [e["seq"] for e in on_third.feed(hook)] == [appended[0]["seq"], later[0]["seq"]]


def test_an_event_ingested_on_one_process_wakes_a_long_poll_on_another_within_milliseconds(
    cluster: Callable[..., list[Server]], client: Callable[..., Api]
) -> None:
    ingesting, polling = cluster(2)
    platform = client(ingesting)
    account = platform.create_account()
    hook = platform.create_webhook(account)["webhook_id"]
    reader = client(polling, platform.api_key)
    latencies = []
    cursor = 0
    for round_ in range(5):
        waiting = long_poll(reader, hook, cursor)
        time.sleep(0.3)  # let the poll reach its wait; arriving late only makes the round trivially fast
        sent = time.monotonic()
        appended = platform.ingest(account, {"type": "message_received", "data": {"id": f"m{round_}"}})
        page, received = waiting.result(timeout=30)
        assert [e["id"] for e in page["events"]] == [appended[0]["id"]]
        latencies.append(received - sent)
        cursor = appended[0]["seq"]
    print(f"cross-process long-poll wake-up, ingest sent -> poll answered: median {statistics.median(latencies):.3f}s")
    assert statistics.median(latencies) < 1.0


@pytest.mark.parametrize("cluster", [pytest.param("postgres", marks=NEEDS_POSTGRES)], indirect=True)
def test_a_lost_notification_connection_is_reopened_and_what_it_missed_still_arrives(
    cluster: Callable[..., list[Server]], client: Callable[..., Api]
) -> None:
    ingesting, polling = cluster(2)
    platform = client(ingesting)
    account = platform.create_account()
    hook = platform.create_webhook(account)["webhook_id"]
    reader = client(polling, platform.api_key)
    [old_backend] = wait_for(lambda: listen_backends(polling), what="the notification connection")

    waiting = long_poll(reader, hook, 0)
    time.sleep(0.3)
    sql("SELECT pg_terminate_backend($1)", old_backend)
    # Appended while the reader's process is not listening: only the catch-up after reconnecting can deliver it.
    missed = platform.ingest(account, {"type": "message_received", "data": {"id": "missed"}})
    page, _ = waiting.result(timeout=30)
    assert [e["id"] for e in page["events"]] == [missed[0]["id"]]

    wait_for(lambda: listen_backends(polling) and listen_backends(polling) != [old_backend], what="a new connection")
    waiting = long_poll(reader, hook, missed[0]["seq"])
    time.sleep(0.3)
    sent = time.monotonic()
    after = platform.ingest(account, {"type": "message_received", "data": {"id": "after"}})
    page, received = waiting.result(timeout=30)
    assert [e["id"] for e in page["events"]] == [after[0]["id"]]
    assert received - sent < 5


def _stream_ids(api: Api, webhook_id: str, count: int, ids: list[str], ready: threading.Event) -> None:
    """Read a webhook's SSE stream from the start until `count` events came."""
    with (
        httpx.Client(base_url=api.server.url, timeout=httpx.Timeout(60, read=60)) as client,
        client.stream("GET", f"/v2/webhooks/{webhook_id}/stream", params={"afterSeq": 0}, headers=api.auth) as stream,
    ):
        assert stream.status_code == 200
        ready.set()
        for line in stream.iter_lines():
            if line.startswith("data:"):
                ids.append(orjson.loads(line[5:])["id"])
                if len(ids) >= count:
                    return


def test_readers_on_every_process_see_every_event_once_in_order_while_three_processes_append(
    cluster: Callable[..., list[Server]], client: Callable[..., Api]
) -> None:
    servers = cluster(3)
    platform = client(servers[0])
    account = platform.create_account()
    hook = platform.create_webhook(account)["webhook_id"]
    customers = [client(server, platform.api_key) for server in servers]
    writers, rounds, per_batch = 6, 20, 5
    total = writers * rounds * per_batch

    def write(writer: int) -> list[str]:
        api = client(servers[writer % len(servers)], platform.api_key)
        sent = []
        for round_ in range(rounds):
            batch = [
                {"id": f"evt_w{writer}_{round_}_{k}", "type": "message_received", "data": {"id": f"{writer}.{round_}"}}
                for k in range(per_batch)
            ]
            api.ingest(account, *batch)
            sent.extend(event["id"] for event in batch)
        return sent

    def paginate(api: Api, limit: int, wait: float) -> list[dict[str, Any]]:
        """Follow the cursor page by page, as a polling client does, until every event came."""
        seen: list[dict[str, Any]] = []
        cursor = 0
        deadline = time.monotonic() + 120
        while len(seen) < total and time.monotonic() < deadline:
            page = api.poll(hook, afterSeq=cursor, limit=limit, wait=wait)
            seen.extend(page["events"])
            if page["lastSeq"] is not None:
                cursor = page["lastSeq"]
        return seen

    with ThreadPoolExecutor(writers + 2 * len(servers) + len(servers)) as pool:
        readers = [pool.submit(paginate, api, 7, 0) for api in customers]
        readers += [pool.submit(paginate, api, 50, 5) for api in customers]
        streams: list[tuple[list[str], Future[None]]] = []
        for api in customers:
            ids: list[str] = []
            ready = threading.Event()
            streams.append((ids, pool.submit(_stream_ids, api, hook, total, ids, ready)))
            assert ready.wait(30)
        sent = [pool.submit(write, writer) for writer in range(writers)]
        every_id = sorted(event_id for future in sent for event_id in future.result(timeout=120))
        assert len(every_id) == total
        for reader in readers:
            events = reader.result(timeout=150)
            seqs = [event["seq"] for event in events]
            # One account on a fresh log: its feed is seq 1..total, each exactly once, in order.
            assert seqs == list(range(1, total + 1))
            assert sorted(event["id"] for event in events) == every_id
        for ids, done in streams:
            done.result(timeout=150)
            assert sorted(ids) == every_id and len(set(ids)) == total


class OpenStream:
    """A webhook's SSE stream read in a thread: the types of the events it sent, and when it ended."""

    def __init__(self, api: Api, webhook_id: str) -> None:
        self.types: list[str] = []
        self.ended_at: float | None = None
        self._opened = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(api, webhook_id), daemon=True)
        self._thread.start()
        assert self._opened.wait(30), "the stream never opened"

    def _read(self, api: Api, webhook_id: str) -> None:
        with (
            httpx.Client(base_url=api.server.url, timeout=httpx.Timeout(60, read=60)) as http,
            http.stream("GET", f"/v2/webhooks/{webhook_id}/stream", headers=api.auth) as stream,
        ):
            assert stream.status_code == 200
            for line in stream.iter_lines():
                if line.startswith("retry:"):
                    self._opened.set()
                elif line.startswith("event:"):
                    self.types.append(line.partition(":")[2].strip())
        self.ended_at = time.monotonic()

    def ended_within(self, seconds: float, since: float) -> float:
        """Seconds from `since` (monotonic) until the stream ended; fails if it is still open `seconds` from now."""
        self._thread.join(seconds)
        assert self.ended_at is not None, f"the stream was still open after {seconds}s"
        return self.ended_at - since


def stream_status(api: Api, webhook_id: str) -> int:
    """The status a client reconnecting to the stream gets (200 would stay open: the headers are enough)."""
    with httpx.Client(base_url=api.server.url, timeout=30) as http:
        with http.stream("GET", f"/v2/webhooks/{webhook_id}/stream", headers=api.auth) as response:
            return response.status_code


def test_a_webhook_stopped_or_deleted_on_one_process_ends_its_streams_on_another_even_after_a_kill_9(
    cluster: Callable[..., list[Server]], client: Callable[..., Api]
) -> None:
    changing, streaming, doomed = cluster(3)
    platform = client(changing)
    account = platform.create_account()
    hook = platform.create_webhook(account)["webhook_id"]
    viewer = client(streaming, platform.api_key)
    viewer.poll(hook)  # its webhook is now in the streaming process's cache
    doomed.kill()  # kill -9: a neighbour gone without a word must not stop the others hearing each other

    stream = OpenStream(viewer, hook)
    sent = time.monotonic()
    assert platform.http.post(f"/v2/webhooks/{hook}/stop", headers=platform.auth).status_code == 200
    stopped = stream.ended_within(5, since=sent)
    assert stream_status(viewer, hook) == 204

    assert platform.http.post(f"/v2/webhooks/{hook}/start", headers=platform.auth).status_code == 200
    wait_for(lambda: stream_status(viewer, hook) == 200, timeout=5, what="the webhook started on the other process")
    stream = OpenStream(viewer, hook)
    sent = time.monotonic()
    assert platform.http.delete(f"/v2/webhooks/{hook}", headers=platform.auth).status_code == 200
    deleted = stream.ended_within(5, since=sent)
    assert stream_status(viewer, hook) == 404
    # Its cached webhook went with the change: polling there says 404 at once, not a second later.
    assert viewer.http.get(f"/v2/webhooks/{hook}/events", headers=viewer.auth).status_code == 404
    # Counted from the request being sent: the change's own HTTP round trip is part of it.
    print(
        f"stream on another process ended {stopped * 1000:.1f} ms after a stop, {deleted * 1000:.1f} ms after a delete"
    )
    assert stopped < 1 and deleted < 1


def test_a_filter_updated_on_one_process_applies_to_a_stream_open_on_another(
    cluster: Callable[..., list[Server]], client: Callable[..., Api]
) -> None:
    changing, streaming = cluster(2)
    platform = client(changing)
    account = platform.create_account()
    hook = platform.create_webhook(account)["webhook_id"]
    stream = OpenStream(client(streaming, platform.api_key), hook)
    platform.ingest(
        account, {"type": "message.new", "data": {"id": "a"}}, {"type": "message.update", "data": {"id": "b"}}
    )
    wait_for(lambda: len(stream.types) == 2, timeout=10, what="both events on the stream")
    response = platform.http.patch(f"/v2/webhooks/{hook}", json={"events": ["message.update"]}, headers=platform.auth)
    assert response.status_code == 200, response.text
    # Ingested through the process that streams, whose view of the webhook must not be the old one.
    on_streaming = client(streaming, platform.api_key)
    on_streaming.ingest(
        account, {"type": "message.new", "data": {"id": "c"}}, {"type": "message.update", "data": {"id": "d"}}
    )
    wait_for(lambda: len(stream.types) == 3, timeout=10, what="the matching event on the stream")
    time.sleep(0.3)
    assert stream.types == ["message.new", "message.update", "message.update"]
    assert platform.http.post(f"/v2/webhooks/{hook}/stop", headers=platform.auth).status_code == 200
    stream.ended_within(5, since=time.monotonic())


def lease_owners(database_url: str) -> dict[str, str]:
    """Which process holds each account's monitor lease, read from the database as an operator would."""
    query = "SELECT account_id, owner FROM monitor_leases"
    if database_url.startswith("sqlite:///"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as conn:
            return dict(conn.execute(query).fetchall())
    schema = database_url.rpartition("schema=")[2]
    return {row[0]: row[1] for row in sql(f'SELECT account_id, owner FROM "{schema}".monitor_leases')}


def test_each_account_has_one_monitor_across_processes_and_a_survivor_takes_over_after_a_kill_9(
    cluster: Callable[..., list[Server]], client: Callable[..., Api], tmp_path: Path
) -> None:
    servers = cluster(3, monitor_env(tmp_path))
    platform = client(servers[0])
    apis = [client(server, platform.api_key) for server in servers]
    hooks: dict[str, str] = {}
    for number in range(6):
        api = apis[number % 3]
        account = api.create_account(connector="tests.example_connector:EchoConnector")
        hooks[account] = api.create_webhook(account)["webhook_id"]
    for hook in hooks.values():
        eventually(lambda hook=hook: len(platform.feed(hook)) == 1)
    time.sleep(1)  # several checkpoints, on every process: none may start a second connector
    for account, hook in hooks.items():
        assert len(platform.feed(hook)) == 1
        assert len(open_intervals(apis[2], account)) == 1

    owners = lease_owners(cluster.database_url)  # type: ignore[attr-defined]
    assert sorted(owners) == sorted(hooks)
    victim = next(server for server in servers if f":{server.process.pid}:" in owners[next(iter(hooks))])  # type: ignore[union-attr]
    taken = [account for account, owner in owners.items() if f":{victim.process.pid}:" in owner]  # type: ignore[union-attr]
    survivor = apis[(servers.index(victim) + 1) % 3]
    victim.kill()
    for account in taken:
        # Its connector starts again on a surviving process, once, and emits its first event again.
        eventually(lambda account=account: len(survivor.feed(hooks[account])) == 2, timeout=30)
        intervals = survivor.http.get(f"/v2/accounts/{account}/usage", headers=survivor.auth).json()["data"][
            "intervals"
        ]
        assert [interval["stopped_at"] is None for interval in intervals] == [False, True]
        assert intervals_never_overlap(intervals)
    time.sleep(1)
    for account, hook in hooks.items():
        assert len(survivor.feed(hook)) == (2 if account in taken else 1)
        assert len(open_intervals(survivor, account)) == 1


def test_a_kill_9_of_one_process_loses_no_event_that_any_process_acknowledged(
    cluster: Callable[..., list[Server]], client: Callable[..., Api]
) -> None:
    doomed, surviving = cluster(2)
    platform = client(doomed)
    account = platform.create_account()
    hook = platform.create_webhook(account)["webhook_id"]
    acknowledged: dict[str, int] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def produce(server: Server, worker: int) -> None:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            while not stop.is_set():
                body = {"events": [{"type": "message.new", "data": {"worker": worker, "i": i}} for i in range(3)]}
                try:
                    response = http.post(f"/v2/accounts/{account}/events", json=body, headers=platform.admin)
                except httpx.TransportError:
                    if server is doomed:
                        return  # it died under us: this batch was never acknowledged
                    raise
                assert response.status_code == 201, response.text
                with lock:
                    acknowledged.update((e["id"], e["seq"]) for e in response.json()["data"]["events"])

    with ThreadPoolExecutor(8) as pool:
        producers = [pool.submit(produce, (doomed, surviving)[worker % 2], worker) for worker in range(8)]
        wait_for(lambda: len(acknowledged) >= 600, what="acknowledged events")
        doomed.kill()
        time.sleep(0.3)  # the survivor goes on appending after its neighbour died
        stop.set()
        for producer in producers:
            producer.result(timeout=30)

    stored = {event["id"]: event["seq"] for event in client(surviving, platform.api_key).feed(hook)}
    lost = [event_id for event_id, seq in acknowledged.items() if stored.get(event_id) != seq]
    assert not lost, f"{len(lost)} acknowledged events lost or moved"
    # One account on a fresh log: whatever was rolled back by the kill took no seq with it.
    assert sorted(stored.values()) == list(range(1, len(stored) + 1))


@pytest.mark.parametrize("cluster", ["sqlite"], indirect=True)
def test_on_sqlite_a_missed_wake_up_still_arrives_within_the_head_check(
    cluster: Callable[..., list[Server]], client: Callable[..., Api], tmp_path: Path
) -> None:
    ingesting, polling = cluster(2)
    platform = client(ingesting)
    account = platform.create_account()
    hook = platform.create_webhook(account)["webhook_id"]
    reader = client(polling, platform.api_key)
    waiting = long_poll(reader, hook, 0)
    time.sleep(0.3)
    # Without its marker the polling process is unknown to the others: no datagram will reach it.
    markers = list((tmp_path / "cluster.db-wake").iterdir())
    assert len(markers) == 2
    for marker in markers:
        if marker.name.startswith(f"{polling.process.pid}-"):  # type: ignore[union-attr]
            marker.unlink()
    sent = time.monotonic()
    appended = platform.ingest(account, {"type": "message_received", "data": {"id": "m1"}})
    page, received = waiting.result(timeout=30)
    assert [e["id"] for e in page["events"]] == [appended[0]["id"]]
    assert received - sent < 3
