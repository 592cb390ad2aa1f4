"""The fault suite (SPEC §11, "Storage trouble"): faults under load, and nothing acknowledged lost.

Each test runs the load of tests/chaos.py — producers, 50 streams and pollers — injects one
fault again and again, and ends with the completeness verifier. In CI each fault runs a few
rounds; `scripts/chaos` (HOOKSTREAM_CHAOS=long) runs many more and prints the figures that
docs/reliability.md reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.chaos import (
    ADMIN,
    LONG,
    SERVER_ENV,
    Figures,
    Targets,
    Workload,
    check_credits,
    new_tenant,
    rounds,
)
from tests.private_postgres import PrivateCluster, why_not
from tests.server import TEST_DATABASE, Server

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.skipif(
        TEST_DATABASE != "sqlite", reason="the fault suite picks its backends itself; it runs once, in the first pass"
    ),
]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL of the suite's own (stopping it breaks no one else's tests), else the shared one."""
    reason = why_not()
    if reason is None:
        cluster = PrivateCluster(Path(tempfile.mkdtemp(prefix="hookstream-chaos-pg-"))).create()
        try:
            yield cluster.url
        finally:
            cluster.destroy()
        return
    url = os.environ.get("HOOKSTREAM_TEST_POSTGRES_URL")
    if not url:
        pytest.skip(f"no private PostgreSQL ({reason}) and HOOKSTREAM_TEST_POSTGRES_URL is not set")
    yield url


@pytest.fixture
def private_cluster(tmp_path: Path) -> Iterator[PrivateCluster]:
    """A PostgreSQL cluster this test may stop and start."""
    reason = why_not()
    if reason is not None:
        pytest.skip(f"stopping PostgreSQL needs a private cluster: {reason}")
    cluster = PrivateCluster(Path(tempfile.mkdtemp(prefix="hookstream-chaos-pg-"))).create()
    yield cluster
    cluster.destroy()


def assert_writes_refused_with_503(url: str, key: str, account: str, *, some_fit: bool = False) -> None:
    """Every kind of write is answered 503 storage_unavailable with Retry-After, not only ingest.

    On a full disk a small write may still fit (SQLite reuses the pages of a checkpointed WAL):
    with `some_fit`, a 201 is an answer too, but never any other error.
    """
    with httpx.Client(base_url=url, timeout=20, headers={"x-api-key": key}) as http:
        for response in (
            http.post("/v2/accounts", json={"account_id": f"acc_{uuid.uuid4().hex[:8]}"}),
            http.post("/v2/webhooks", json={"account_id": account}),
            http.post("/v2/admin/api-keys", json={"name": "x"}, headers=ADMIN),
        ):
            if some_fit and response.status_code == 201:
                continue
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "storage_unavailable", response.text
            assert int(response.headers["retry-after"]) >= 1


def schema_url(url: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}schema=chaos_{uuid.uuid4().hex[:10]}"


def database_url(backend: str, directory: Path, postgres: Callable[[], str]) -> str:
    return f"sqlite:///{directory / 'hookstream.db'}" if backend == "sqlite" else schema_url(postgres())


def up(servers: list[Server]) -> Callable[[], list[str]]:
    return lambda: [server.url for server in servers if server.process is not None and server.process.poll() is None]


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.kill()


def serve(servers: list[Server], directory: Path, url: str, env: dict[str, str] | None = None) -> Server:
    directory.mkdir(parents=True, exist_ok=True)
    server = Server(directory, {**SERVER_ENV, **(env or {})}, database_url=url).start()
    servers.append(server)
    return server


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_kill_9_under_load_loses_no_acknowledged_event_and_no_reader_sees_a_gap(
    backend: str, tmp_path: Path, servers: list[Server], request: pytest.FixtureRequest
) -> None:
    url = database_url(backend, tmp_path, lambda: str(request.getfixturevalue("postgres_url")))
    server = serve(servers, tmp_path, url)
    key, account, webhooks = new_tenant(server.url)
    started = time.monotonic()
    load = Workload(Targets(up(servers)), key, account, webhooks).start()
    figures = Figures("kill -9 of the server", backend)
    up_since, uptime = started, 0.0
    for _ in range(rounds(3, 20)):
        load.wait_for_acknowledged(200)
        # Long enough up for a few checkpoints, so the credit bound says something.
        time.sleep(max(0.0, 2.5 - (time.monotonic() - up_since)))
        server.kill()
        killed = time.monotonic()
        uptime += killed - up_since
        server.start()
        up_since = time.monotonic()
        figures.recovery_seconds.append(round(load.wait_for_201_after(killed), 3))
        figures.rounds += 1
    load.wait_for_acknowledged(100)
    load.verify(server.url, figures)
    uptime += time.monotonic() - up_since
    credits, low, high = check_credits(server.url, key, account, time.monotonic() - started, uptime, figures.rounds)
    figures.credits, figures.credits_bound = round(credits, 3), (round(low, 3), round(high, 3))
    figures.report()
    load.assert_complete(figures)
    assert low <= credits <= high, figures


@pytest.mark.postgres
def test_kill_9_of_one_of_three_postgres_servers_leaves_the_others_carrying_on(
    tmp_path: Path, servers: list[Server], postgres_url: str
) -> None:
    url = schema_url(postgres_url)
    group = [serve(servers, tmp_path / f"s{n}", url) for n in range(3)]
    key, account, webhooks = new_tenant(group[0].url)
    load = Workload(Targets(up(group)), key, account, webhooks, producers=6).start()
    figures = Figures("kill -9 of one of 3 servers on one database", "postgres")
    victim = group[1]
    for _ in range(rounds(3, 15)):
        load.wait_for_acknowledged(200)
        victim.kill()
        killed = time.monotonic()
        # The others carry on while it is down: ingest keeps being acknowledged.
        load.wait_for_acknowledged(100)
        figures.extra.setdefault("acknowledged_while_one_was_down_seconds", []).append(
            round(time.monotonic() - killed, 3)
        )
        victim.start()
        figures.rounds += 1
    load.wait_for_acknowledged(100)
    load.verify(group[0].url, figures)
    figures.report()
    load.assert_complete(figures)


def terminate_connections(admin_url: str, pids: list[int]) -> int:
    """pg_terminate_backend of every connection those server processes hold (named by their pid)."""

    async def terminate() -> int:
        import asyncpg

        conn = await asyncpg.connect(admin_url)
        try:
            names = [f"hookstream-pool-{pid}" for pid in pids] + [f"hookstream-listen-{pid}" for pid in pids]
            rows = await conn.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ANY($1::text[])",
                names,
            )
            return len(rows)
        finally:
            await conn.close()

    return asyncio.run(terminate())


@pytest.mark.postgres
def test_terminated_postgres_connections_are_replaced_and_streams_resume(
    tmp_path: Path, servers: list[Server], postgres_url: str
) -> None:
    url = schema_url(postgres_url)
    # Producers on one server, readers on the other: the readers see new events only through LISTEN.
    writer, reader = serve(servers, tmp_path / "a", url), serve(servers, tmp_path / "b", url)
    key, account, webhooks = new_tenant(writer.url)
    load = Workload(Targets(up([writer])), key, account, webhooks, reader_targets=Targets(up([reader]))).start()
    figures = Figures("pg_terminate_backend of the servers' connections", "postgres")
    terminated = 0
    for _ in range(rounds(3, 20)):
        load.wait_for_acknowledged(200)
        pids = [server.process.pid for server in (writer, reader) if server.process is not None]
        moment = time.monotonic()
        terminated += terminate_connections(postgres_url, pids)
        figures.recovery_seconds.append(round(load.wait_for_201_after(moment), 3))
        figures.rounds += 1
    load.wait_for_acknowledged(100)
    figures.extra["connections_terminated"] = terminated
    load.verify(writer.url, figures)
    figures.report()
    load.assert_complete(figures)
    assert terminated >= 2 * figures.rounds
    assert httpx.get(f"{reader.url}/readyz", timeout=5).status_code == 200


@pytest.mark.postgres
def test_postgres_stopped_and_started_answers_503_meanwhile_and_recovers_by_itself(
    tmp_path: Path, servers: list[Server], private_cluster: PrivateCluster
) -> None:
    url = schema_url(private_cluster.url)
    writer, reader = serve(servers, tmp_path / "a", url), serve(servers, tmp_path / "b", url)
    key, account, webhooks = new_tenant(writer.url)
    load = Workload(Targets(up([writer])), key, account, webhooks, reader_targets=Targets(up([reader]))).start()
    figures = Figures("PostgreSQL stopped (-m immediate) and started", "postgres")
    outage = 3.0 if LONG else 1.5
    for _ in range(rounds(2, 10)):
        load.wait_for_acknowledged(200)
        refused = load.refused_503
        private_cluster.stop_immediately()
        stopped = time.monotonic()
        time.sleep(outage)
        ready = httpx.get(f"{writer.url}/readyz", timeout=15)
        assert ready.status_code == 503, ready.text
        assert_writes_refused_with_503(writer.url, key, account)
        # While it is down, ingest is answered 503 storage_unavailable with Retry-After (the producers check both).
        assert load.refused_503 > refused
        private_cluster.start()
        started = time.monotonic()
        figures.recovery_seconds.append(round(load.wait_for_201_after(started), 3))
        figures.extra.setdefault("outage_seconds", []).append(round(started - stopped, 3))
        figures.rounds += 1
    load.wait_for_acknowledged(100)
    load.verify(writer.url, figures)
    figures.report()
    load.assert_complete(figures)
    for server in (writer, reader):
        assert httpx.get(f"{server.url}/readyz", timeout=5).status_code == 200


@contextlib.contextmanager
def small_tmpfs(directory: Path, size: str) -> Iterator[Path]:
    directory.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)], check=True)
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem has no byte left."""
    filler = directory / "filler"
    # Unbuffered, so the last failed write is not tried again (and raised) when the file closes.
    with open(filler, "wb", buffering=0) as out:
        with contextlib.suppress(OSError):
            while True:
                out.write(b"\0" * 65536)
        with contextlib.suppress(OSError):
            while True:
                out.write(b"\0" * 512)
    return filler


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None, reason="mounting a small tmpfs needs root")
def test_a_full_disk_refuses_ingest_with_503_keeps_reads_working_and_recovers_when_space_returns(
    tmp_path: Path, servers: list[Server]
) -> None:
    figures = Figures("full disk (8 MiB tmpfs)", "sqlite")
    with small_tmpfs(tmp_path / "disk", "8m") as disk:
        # The server's log stays off the full disk: only the database is on it.
        server = serve(servers, tmp_path / "server", f"sqlite:///{disk / 'hookstream.db'}")
        key, account, webhooks = new_tenant(server.url)
        load = Workload(Targets(up(servers)), key, account, webhooks, streams=20).start()
        for _ in range(rounds(2, 6)):
            load.wait_for_acknowledged(200)
            refused = load.refused_503
            filler = fill(disk)
            deadline = time.monotonic() + 30
            while load.refused_503 == refused:
                assert time.monotonic() < deadline, "ingest was still acknowledged on a full disk"
                time.sleep(0.05)
            # Reads keep working: a poll of the whole first page, and the health probe.
            poll = httpx.get(
                f"{server.url}/v2/webhooks/{webhooks[0]}/events", params={"limit": 10}, headers={"x-api-key": key}
            )
            assert poll.status_code == 200, poll.text
            assert httpx.get(f"{server.url}/healthz").status_code == 200
            assert_writes_refused_with_503(server.url, key, account, some_fit=True)
            time.sleep(0.5)
            filler.unlink()
            freed = time.monotonic()
            figures.recovery_seconds.append(round(load.wait_for_201_after(freed), 3))
            figures.rounds += 1
        load.wait_for_acknowledged(100)
        load.verify(server.url, figures)
        assert server.process is not None and server.process.poll() is None, "the server died on a full disk"
        server.kill()
    figures.report()
    load.assert_complete(figures)
    assert figures.refused_503 > 0


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_floods_of_idle_and_slow_header_connections_leave_healthz_and_polling_fast(
    tmp_path: Path, servers: list[Server]
) -> None:
    idle, slow = (5000, 500) if LONG else (2000, 200)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * (idle + slow) + 1000
    if soft < needed:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))
    env = {"HOOKSTREAM_HEADER_TIMEOUT": "5s", "HOOKSTREAM_MAX_CONNECTIONS": str(idle + slow + 500)}
    server = serve(servers, tmp_path, f"sqlite:///{tmp_path / 'hookstream.db'}", env)
    assert server.process is not None
    key, account, webhooks = new_tenant(server.url)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        body = {"events": [{"type": "message.new", "data": {"i": i}} for i in range(100)]}
        assert http.post(f"/v2/accounts/{account}/events", json=body, headers=ADMIN).status_code == 201
    rss_before = rss_kib(server.process.pid)
    stop = threading.Event()
    sockets: list[socket.socket] = []

    def open_flood() -> None:
        for n in range(idle + slow):
            if stop.is_set():
                return
            with contextlib.suppress(OSError):
                sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
                if n >= idle:
                    sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # then a header byte now and then, never the end
                sockets.append(sock)

    def trickle() -> None:
        while not stop.wait(1.0):
            for sock in sockets[idle:]:
                with contextlib.suppress(OSError):
                    sock.send(b"X")

    flood = threading.Thread(target=open_flood, daemon=True)
    dribble = threading.Thread(target=trickle, daemon=True)
    flood.start()
    dribble.start()
    health: list[float] = []
    polls: list[float] = []
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            deadline = time.monotonic() + (30 if LONG else 8)
            while time.monotonic() < deadline:
                began = time.monotonic()
                assert http.get("/healthz").status_code == 200
                health.append(time.monotonic() - began)
                began = time.monotonic()
                page = http.get(f"/v2/webhooks/{webhooks[0]}/events", params={"limit": 100}, headers={"x-api-key": key})
                assert page.status_code == 200
                assert len(page.json()["events"]) == 100
                polls.append(time.monotonic() - began)
                time.sleep(0.02)
        rss_during = rss_kib(server.process.pid)
    finally:
        stop.set()
        flood.join(30)
        dribble.join(5)
        opened = len(sockets)
        for sock in sockets:
            sock.close()
    health.sort()
    polls.sort()
    figures = Figures("flood of idle and slow-header connections", "sqlite", rounds=1)
    figures.extra = {
        "connections_opened": opened,
        "healthz_p50_ms": round(1000 * health[len(health) // 2], 2),
        "healthz_p99_ms": round(1000 * health[int(len(health) * 0.99)], 2),
        "poll_p50_ms": round(1000 * polls[len(polls) // 2], 2),
        "poll_p99_ms": round(1000 * polls[int(len(polls) * 0.99)], 2),
        "rss_before_mib": round(rss_before / 1024, 1),
        "rss_during_mib": round(rss_during / 1024, 1),
    }
    figures.report()
    assert opened >= idle, figures
    assert figures.extra["healthz_p99_ms"] < 500, figures
    assert figures.extra["poll_p99_ms"] < 500, figures
    assert rss_during - rss_before < 200 * 1024, figures
