"""The HTTP layer is bounded (SPEC §11), over raw sockets against the real server: a client library would hide it.

Header deadline and size, the body cut-off after a refusal, the connection cap with /healthz still
answering, and a client that leaves mid-body logged as nothing worse than one quiet line.
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.server import ADMIN_TOKEN, Api, Server

MiB = 1024 * 1024
BODY_LIMIT = MiB


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {"HOOKSTREAM_MAX_BODY_BYTES": "1MiB", "HOOKSTREAM_HEADER_TIMEOUT": "1s"}
    server = Server(Path(tmp_path_factory.mktemp("bounds")), env).start()
    yield server
    server.kill()


@pytest.fixture(scope="module")
def monitored_account(server: Server) -> str:
    api = Api(server)
    account = api.create_account()
    api.create_webhook(account)
    api.close()
    return account


def connect(server: Server, timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length body: status, headers, body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a whole response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-body")
        body += chunk
    return int(status_line.split()[1]), headers, body


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server ends the connection (EOF or reset) within `within` seconds."""
    sock.settimeout(within)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def error_code(body: bytes) -> str:
    return str(orjson.loads(body)["error"]["code"])


def send_until_refused(sock: socket.socket, chunk: bytes, *, limit: int, seconds: float = 10.0) -> int:
    """Send `chunk` repeatedly until the server stops taking bytes; how many it took (at most `limit`)."""
    sent = 0
    deadline = time.monotonic() + seconds
    sock.settimeout(1.0)
    try:
        while sent < limit and time.monotonic() < deadline:
            sent += sock.send(chunk)
    except (BrokenPipeError, ConnectionResetError, TimeoutError):
        pass
    return sent


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def ingest_head(account: str, framing: str) -> bytes:
    return (
        f"POST /v2/accounts/{account}/events HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n"
        f"Content-Type: application/json\r\n{framing}\r\n\r\n"
    ).encode()


# --- bodies


def test_a_declared_8_gib_body_is_413_before_any_of_it_is_read_and_the_connection_ends(
    server: Server, monitored_account: str
) -> None:
    with connect(server) as sock:
        sock.sendall(ingest_head(monitored_account, f"Content-Length: {8 * 1024 * MiB}"))
        status, headers, body = read_response(sock)
        assert status == 413
        assert error_code(body) == "body_too_large"
        assert headers["connection"] == "close"
        # The server stopped reading: what it takes is only what the sockets' buffers hold.
        taken = send_until_refused(sock, b"x" * 65536, limit=1024 * MiB)
        assert taken < 64 * MiB
        assert closed_by_server(sock, within=5)


def test_a_chunked_body_past_the_limit_is_413_and_the_rest_is_never_read(
    server: Server, monitored_account: str
) -> None:
    with connect(server) as sock:
        sock.sendall(ingest_head(monitored_account, "Transfer-Encoding: chunked"))
        chunk = b"10000\r\n" + b"x" * 65536 + b"\r\n"
        taken: list[int] = []
        sender = threading.Thread(target=lambda: taken.append(send_until_refused(sock, chunk, limit=1024 * MiB)))
        sender.start()
        status, _, body = read_response(sock)
        sender.join(15)
        assert status == 413
        assert error_code(body) == "body_too_large"
        # The app read up to the limit; then nothing more was taken but the sockets' buffers.
        assert BODY_LIMIT < taken[0] < BODY_LIMIT + 64 * MiB
        assert closed_by_server(sock, within=5)


def test_an_answer_sent_before_a_large_body_was_read_ends_the_connection(server: Server) -> None:
    # No admin token: 401 before the route reads a byte of the body.
    with connect(server) as sock:
        sock.sendall(b"POST /v2/accounts/acc_x/events HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        status, _, body = read_response(sock)
        assert status == 401
        taken = send_until_refused(sock, b"10000\r\n" + b"x" * 65536 + b"\r\n", limit=500 * MiB)
        assert taken < 64 * MiB
        assert closed_by_server(sock, within=5)


def test_the_small_rest_of_a_body_answered_early_is_dropped_and_the_connection_goes_on(server: Server) -> None:
    with connect(server) as sock:
        for _ in range(3):
            # The body follows the headers in a packet of its own, after the answer (which never reads it).
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n")
            assert read_response(sock)[0] == 200
            sock.sendall(b"x" * 5000)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_response(sock)[0] == 200


def test_keep_alive_still_carries_requests_with_and_without_bodies(server: Server, monitored_account: str) -> None:
    event = orjson.dumps({"type": "message.new", "data": {"id": "k"}})
    with connect(server) as sock:
        for _ in range(3):
            sock.sendall(ingest_head(monitored_account, f"Content-Length: {len(event)}") + event)
            assert read_response(sock)[0] == 201
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            assert read_response(sock)[0] == 200
        # Idle between requests for longer than the header deadline: keep-alive governs that, not the deadline.
        time.sleep(1.5)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_response(sock)[0] == 200


# --- headers


def test_64_headers_of_1_mib_get_431(server: Server) -> None:
    with connect(server) as sock:
        head = b"GET /healthz HTTP/1.1\r\nHost: t\r\n" + b"".join(
            b"X-Big-%d: %s\r\n" % (i, b"a" * MiB) for i in range(64)
        )
        sender = threading.Thread(target=lambda: send_until_refused(sock, head + b"\r\n", limit=len(head) + 2))
        sender.start()
        status, _, body = read_response(sock)
        sender.join(15)
        assert status == 431
        assert error_code(body) == "headers_too_large"
        assert closed_by_server(sock, within=5)


@pytest.mark.parametrize(("size", "status"), [(60_000, 200), (70_000, 431)])
def test_a_whole_header_block_is_measured_against_the_64_kib_default(server: Server, size: int, status: int) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"a" * size + b"\r\n\r\n")
        assert read_response(sock)[0] == status


def test_unfinished_64_mib_header_blocks_are_cut_off_and_memory_stays_bounded(server: Server) -> None:
    assert server.process is not None
    before = rss_bytes(server.process.pid)
    sockets = [connect(server) for _ in range(8)]
    try:
        taken: list[int] = []

        def flood(sock: socket.socket) -> None:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Endless: ")
            taken.append(send_until_refused(sock, b"a" * 65536, limit=64 * MiB))

        threads = [threading.Thread(target=flood, args=(sock,)) for sock in sockets]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        grown = rss_bytes(server.process.pid) - before
        for sock in sockets:
            assert read_response(sock)[0] == 431
        assert max(taken) < 32 * MiB
        assert grown < 32 * MiB, grown
    finally:
        for sock in sockets:
            sock.close()


def test_headers_sent_a_byte_at_a_time_are_cut_off_at_the_deadline(server: Server) -> None:
    with connect(server) as sock:
        started = time.monotonic()
        request = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 100
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for byte in request:
                sock.send(bytes([byte]))
                time.sleep(0.1)
        # The deadline is 1 s; the server closed long before the 14 s this request would take.
        assert closed_by_server(sock, within=5)
        assert time.monotonic() - started < 5


def test_a_connection_that_never_sends_a_request_is_closed_at_the_deadline(server: Server) -> None:
    with connect(server) as sock:
        started = time.monotonic()
        assert closed_by_server(sock, within=5)
        assert 0.9 < time.monotonic() - started < 3


def test_a_deadline_applies_to_the_next_request_on_a_kept_alive_connection(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_response(sock)[0] == 200
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")  # and never the blank line
        started = time.monotonic()
        assert closed_by_server(sock, within=5)
        assert time.monotonic() - started < 3


# --- a client that goes away


def test_a_client_that_leaves_mid_body_is_no_error_in_the_log(server: Server, monitored_account: str) -> None:
    mark = len(server.log())
    for framing, part in [("Content-Length: 1000", b'{"type":'), ("Transfer-Encoding: chunked", b'5\r\n{"typ\r\n')]:
        with connect(server) as sock:
            sock.sendall(ingest_head(monitored_account, framing) + part)
            time.sleep(0.3)
    time.sleep(0.5)
    with httpx.Client(base_url=server.url) as http:
        assert http.get("/healthz").status_code == 200
    log = server.log()[mark:]
    assert "Traceback" not in log
    assert "Exception in ASGI application" not in log
    assert "unhandled error" not in log
    assert len([line for line in log.splitlines() if "went away" in line]) <= 2


# --- the connection cap


@pytest.fixture
def capped(start_server: Callable[..., Server]) -> Server:
    return start_server({"HOOKSTREAM_MAX_CONNECTIONS": "100", "HOOKSTREAM_HEARTBEAT_SECONDS": "1"})


def raised_file_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def test_thousands_of_idle_connections_leave_healthz_and_polling_answering(capped: Server) -> None:
    raised_file_limit(5000)
    api = Api(capped)
    webhook = api.create_webhook(api.create_account())["webhook_id"]
    assert capped.process is not None
    idle = []
    try:
        for _ in range(3000):
            idle.append(connect(capped))
        time.sleep(0.5)
        # The cap plus the health reserve plus the server's own files, not 3,000.
        assert open_descriptors(capped.process.pid) < 100 + 32 + 128
        with httpx.Client(base_url=capped.url, timeout=5) as http:
            started = time.monotonic()
            assert http.get("/healthz").status_code == 200
            response = http.get(f"/v2/webhooks/{webhook}/events", params={"afterSeq": 0}, headers=api.auth)
            assert response.status_code == 200
            assert time.monotonic() - started < 1
    finally:
        for sock in idle:
            sock.close()
        api.close()


def test_at_the_cap_of_busy_connections_healthz_answers_and_other_requests_get_503(capped: Server) -> None:
    api = Api(capped)
    webhook = api.create_webhook(api.create_account())["webhook_id"]
    streams = []
    try:
        request = f"GET /v2/webhooks/{webhook}/stream HTTP/1.1\r\nHost: t\r\nx-api-key: {api.api_key}\r\n\r\n"
        for _ in range(100):
            sock = connect(capped)
            sock.sendall(request.encode())
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
            streams.append(sock)
        # Streams are connections with a request in flight: none is closed to make room.
        with connect(capped) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            assert read_response(sock)[0] == 200
        with connect(capped) as sock:
            sock.sendall(f"GET /v2/accounts HTTP/1.1\r\nHost: t\r\nx-api-key: {api.api_key}\r\n\r\n".encode())
            status, headers, body = read_response(sock)
            assert status == 503
            assert error_code(body) == "too_many_connections"
            assert headers["retry-after"] == "1"
            assert closed_by_server(sock, within=5)
        for sock in streams:
            assert sock.recv(4096)  # every stream still flowing (heartbeats)
    finally:
        for sock in streams:
            sock.close()
    time.sleep(0.5)
    response = api.http.get("/v2/accounts", headers=api.auth)
    assert response.status_code == 200
    api.close()
