"""What the HTTP layer lets through: the cases of docs/reliability.md, measured over raw sockets.

Starts `hookstream serve` from a tree (this one, or `--source DIR`, e.g. an older snapshot), tries
each case as an abusive client would, bounded so the machine survives, and prints one table.

    .venv/bin/python scripts/http_layer.py [--source DIR] [--seconds 15] [--idle 3000] [--cap 1000]
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
ADMIN = "http-layer-admin"
MiB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(source: Path, directory: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = free_port()
    log = directory / f"server-{port}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=source,
        env={
            **os.environ,
            "DATABASE_URL": f"sqlite:///{directory / f'{port}.db'}",
            "HOOKSTREAM_ADMIN_TOKEN": ADMIN,
            "PYTHONUNBUFFERED": "1",
            **env,
        },
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process, port, log
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"server did not start:\n{log.read_text()}")


def connect(port: int, timeout: float = 10) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def status_of(sock: socket.socket, timeout: float = 5) -> str:
    sock.settimeout(timeout)
    try:
        data = sock.recv(65536)
    except (TimeoutError, ConnectionResetError) as exc:
        return f"no answer ({type(exc).__name__})"
    return data.split(b"\r\n", 1)[0].decode("latin-1")[9:] if data else "closed, no answer"


def pump(sock: socket.socket, chunk: bytes, seconds: float, limit: int = 1 << 62) -> tuple[int, float, str]:
    """Send `chunk` for `seconds`: bytes the server took, for how long, and how it ended."""
    sent = 0
    started = time.monotonic()
    sock.settimeout(1)
    ended = f"still taking bytes after {seconds:g} s"
    try:
        while time.monotonic() - started < seconds and sent < limit:
            sent += sock.send(chunk)
    except (BrokenPipeError, ConnectionResetError) as exc:
        ended = f"closed by the server ({type(exc).__name__})"
    except TimeoutError:
        ended = "server stopped reading"
    return sent, time.monotonic() - started, ended


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def gib(count: int) -> str:
    return f"{count / 1024**3:.2f} GiB" if count >= 1024**3 else f"{count / MiB:.1f} MiB"


def ingest_head(account: str, framing: str) -> bytes:
    return (
        f"POST /v2/accounts/{account}/events HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {ADMIN}\r\n"
        f"Content-Type: application/json\r\n{framing}\r\n\r\n"
    ).encode()


def bodies(port: int, account: str, seconds: float) -> list[tuple[str, str]]:
    rows = []
    with connect(port) as sock:
        sock.sendall(ingest_head(account, f"Content-Length: {8 * 1024**3}"))
        answer = status_of(sock, timeout=1)
        sent, took, ended = pump(sock, b"x" * 65536, seconds)
        outcome = f"{answer}; took {gib(sent)} in {took:.1f} s, {ended}"
        rows.append(("Content-Length: 8589934592, then the body", outcome))
    with connect(port) as sock:
        sock.sendall(ingest_head(account, "Transfer-Encoding: chunked"))
        result: list[tuple[int, float, str]] = []
        sender = threading.Thread(
            target=lambda: result.append(pump(sock, b"10000\r\n" + b"x" * 65536 + b"\r\n", seconds))
        )
        sender.start()
        answer = status_of(sock, timeout=seconds + 5)
        sender.join()
        sent, took, ended = result[0]
        outcome = f"{answer}; took {gib(sent)} in {took:.1f} s, {ended}"
        rows.append((f"chunked body streamed for {seconds:g} s", outcome))
    return rows


def slow_headers(port: int, seconds: float) -> tuple[str, str]:
    with connect(port) as sock:
        started = time.monotonic()
        request = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 1000
        outcome = f"still open after {seconds:g} s"
        try:
            for byte in request:
                if time.monotonic() - started > seconds:
                    break
                sock.send(bytes([byte]))
                time.sleep(1)
        except (BrokenPipeError, ConnectionResetError):
            outcome = f"closed after {time.monotonic() - started:.1f} s"
    return (f"headers at one byte per second, for up to {seconds:g} s", outcome)


def headers(port: int, pid: int) -> list[tuple[str, str]]:
    rows = []
    with connect(port, timeout=30) as sock:
        big = b"".join(b"X-Big-%d: %s\r\n" % (i, b"a" * MiB) for i in range(64))
        head = b"GET /healthz HTTP/1.1\r\nHost: t\r\n" + big
        result: list[tuple[int, float, str]] = []
        sender = threading.Thread(target=lambda: result.append(pump(sock, head + b"\r\n", 30, len(head) + 2)))
        sender.start()
        answer = status_of(sock, timeout=30)
        sender.join()
        rows.append(("64 headers of 1 MiB", f"{answer}; server took {gib(result[0][0])}"))
    before = rss(pid)
    sockets = [connect(port) for _ in range(8)]
    taken: list[int] = []

    def endless(sock: socket.socket) -> None:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Endless: ")
        taken.append(pump(sock, b"a" * 65536, 20, 64 * MiB)[0])

    threads = [threading.Thread(target=endless, args=(sock,)) for sock in sockets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    after = rss(pid)
    answers = {status_of(sock, timeout=1) for sock in sockets}
    for sock in sockets:
        sock.close()
    rows.append(
        (
            "8 connections each sending an unfinished 64 MiB header block",
            f"server RSS {before / MiB:.0f} → {after / MiB:.0f} MiB; took {gib(max(taken))} at most per"
            f" connection; answers: {', '.join(sorted(answers))}",
        )
    )
    return rows


def idle_flood(port: int, pid: int, count: int, webhook: str, api_key: str) -> tuple[str, str]:
    before_fds = len(os.listdir(f"/proc/{pid}/fd"))
    before_rss = rss(pid)
    idle = []
    refused = 0
    for _ in range(count):
        try:
            idle.append(connect(port))
        except OSError:
            refused += 1
    time.sleep(1)
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
        started = time.monotonic()
        try:
            health = str(http.get("/healthz").status_code)
        except httpx.TransportError as exc:
            health = type(exc).__name__
        health_ms = (time.monotonic() - started) * 1000
        started = time.monotonic()
        try:
            page = http.get(f"/v2/webhooks/{webhook}/events", params={"afterSeq": 0}, headers={"x-api-key": api_key})
            poll = str(page.status_code)
        except httpx.TransportError as exc:
            poll = type(exc).__name__
        poll_ms = (time.monotonic() - started) * 1000
    grown = rss(pid) - before_rss
    for sock in idle:
        sock.close()
    return (
        f"{count:,} idle connections (never a byte sent)",
        f"server descriptors {before_fds} → {fds}, RSS +{grown / MiB:.0f} MiB; /healthz {health} in {health_ms:.1f} ms,"
        f" a poll {poll} in {poll_ms:.1f} ms",
    )


def disconnect_mid_body(port: int, account: str, log: Path) -> tuple[str, str]:
    mark = len(log.read_bytes())
    with connect(port) as sock:
        sock.sendall(ingest_head(account, "Content-Length: 1000") + b'{"type":')
        time.sleep(0.3)
    time.sleep(1)
    text = log.read_bytes()[mark:].decode(errors="replace")
    return (
        "client leaves after 8 of 1000 body bytes",
        f"{text.count('Traceback')} tracebacks, {len(text.splitlines())} log lines",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=ROOT, help="the hookstream tree to run (default: this one)")
    parser.add_argument("--seconds", type=float, default=15, help="how long each body is pushed")
    parser.add_argument("--slow-seconds", type=float, default=30, help="how long slow headers go on at most")
    parser.add_argument("--idle", type=int, default=3000, help="idle connections to open")
    parser.add_argument("--cap", type=int, default=1000, help="HOOKSTREAM_MAX_CONNECTIONS (0: the default)")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, args.idle + 1000)), hard))
    with tempfile.TemporaryDirectory(prefix="hookstream-http-layer-") as tmp:
        directory = Path(tmp)
        env = {"HOOKSTREAM_MAX_CONNECTIONS": str(args.cap)} if args.cap else {}
        process, port, log = start(args.source.resolve(), directory, env)
        try:
            base = f"http://127.0.0.1:{port}"
            admin = {"authorization": f"Bearer {ADMIN}"}
            api_key = httpx.post(f"{base}/v2/admin/api-keys", json={"name": "flood"}, headers=admin).json()["data"][
                "api_key"
            ]
            customer = {"x-api-key": api_key}
            account = httpx.post(f"{base}/v2/accounts", json={}, headers=customer).json()["data"]["account_id"]
            webhook = httpx.post(f"{base}/v2/webhooks", json={"account_id": account}, headers=customer).json()["data"][
                "webhook_id"
            ]
            slow: list[tuple[str, str]] = []
            slow_thread = threading.Thread(target=lambda: slow.append(slow_headers(port, args.slow_seconds)))
            slow_thread.start()
            rows = bodies(port, account, args.seconds)
            rows += headers(port, process.pid)
            # Before the flood: at the cap, a slow-header connection is among the idle ones closed to make room.
            slow_thread.join()
            rows.insert(2, slow[0])
            rows.append(idle_flood(port, process.pid, args.idle, webhook, api_key))
            rows.append(disconnect_mid_body(port, account, log))
        finally:
            process.kill()
            process.wait()
    print(f"source: {args.source}  (HOOKSTREAM_MAX_CONNECTIONS={args.cap or 'default'})\n")
    print("| tried | what the server did |\n|---|---|")
    for tried, outcome in rows:
        print(f"| {tried} | {outcome} |")


if __name__ == "__main__":
    main()
