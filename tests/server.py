"""A real hookstream server in a subprocess on a free port, and a small client for the tests."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ADMIN_TOKEN = "test-admin-token"
ROOT = Path(__file__).resolve().parent.parent


# HOOKSTREAM_TEST_DATABASE=postgres runs every test server on PostgreSQL, in a schema named after
# this session and the server's directory: a restarted server finds its data, runs never share any.
TEST_DATABASE = os.environ.get("HOOKSTREAM_TEST_DATABASE", "sqlite")
SESSION = uuid.uuid4().hex[:8]


def postgres_test_url(schema: str) -> str:
    """HOOKSTREAM_TEST_POSTGRES_URL with a `schema` of its own."""
    url = os.environ.get("HOOKSTREAM_TEST_POSTGRES_URL")
    if not url:
        raise RuntimeError("set HOOKSTREAM_TEST_POSTGRES_URL=postgresql://… to run tests on PostgreSQL")
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"


def default_database_url(directory: Path) -> str:
    """Where a test server in `directory` keeps its data: a SQLite file there, or a PostgreSQL schema."""
    if TEST_DATABASE == "postgres":
        return postgres_test_url(f"t_{SESSION}_{hashlib.blake2b(str(directory).encode(), digest_size=6).hexdigest()}")
    return f"sqlite:///{directory / 'hookstream.db'}"


def drop_session_schemas() -> None:
    """Drop the PostgreSQL schemas this session's test servers created."""
    import asyncio

    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(os.environ["HOOKSTREAM_TEST_POSTGRES_URL"])
        try:
            rows = await conn.fetch("SELECT nspname FROM pg_namespace WHERE nspname LIKE $1", f"t\\_{SESSION}\\_%")
            for row in rows:
                await conn.execute(f'DROP SCHEMA "{row[0]}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """`hookstream serve` as a child process, as a PaaS would run it."""

    def __init__(self, directory: Path, env: dict[str, str] | None = None, database_url: str | None = None) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database_url = database_url or default_database_url(directory)
        self.env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "HOOKSTREAM_ADMIN_TOKEN": ADMIN_TOKEN,
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = directory / f"server-{self.port}.log"

    def start(self, timeout: float = 20.0) -> Server:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env["PORT"] = str(self.port)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.command(),
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not start within {timeout}s:\n{self.log()}")

    def command(self) -> list[str]:
        """What starts the server on `self.port`."""
        return [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, as a PaaS does, and wait; returns the exit code."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def kill(self) -> None:
        """SIGKILL: a crash with no chance to clean up."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class Api:
    """The calls a customer and the platform make, for tests to read as sentences."""

    def __init__(self, server: Server, api_key: str | None = None) -> None:
        self.server = server
        self.http = httpx.Client(base_url=server.url, timeout=30)
        self.api_key = api_key or self.create_key()

    def close(self) -> None:
        self.http.close()

    @property
    def admin(self) -> dict[str, str]:
        return {"authorization": f"Bearer {ADMIN_TOKEN}"}

    @property
    def auth(self) -> dict[str, str]:
        return {"x-api-key": self.api_key}

    def create_key(self, name: str = "test") -> str:
        response = self.http.post("/v2/admin/api-keys", json={"name": name}, headers=self.admin)
        assert response.status_code == 201, response.text
        return str(response.json()["data"]["api_key"])

    def create_account(self, account_id: str | None = None, **fields: Any) -> str:
        account_id = account_id or f"acc_{uuid.uuid4().hex[:12]}"
        response = self.http.post("/v2/accounts", json={"account_id": account_id, **fields}, headers=self.auth)
        assert response.status_code == 201, response.text
        return account_id

    def create_webhook(self, account_id: str, **fields: Any) -> dict[str, Any]:
        response = self.http.post("/v2/webhooks", json={"account_id": account_id, **fields}, headers=self.auth)
        assert response.status_code == 201, response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    def ingest(self, account_id: str, *events: dict[str, Any]) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"events": list(events)}
        response = self.http.post(f"/v2/accounts/{account_id}/events", json=body, headers=self.admin)
        assert response.status_code == 201, response.text
        result: list[dict[str, Any]] = response.json()["data"]["events"]
        return result

    def poll(self, webhook_id: str, **params: Any) -> dict[str, Any]:
        response = self.http.get(f"/v2/webhooks/{webhook_id}/events", params=params, headers=self.auth)
        assert response.status_code == 200, response.text
        page: dict[str, Any] = response.json()
        return page

    def feed(self, webhook_id: str, after_seq: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """Every event of a webhook's feed after `after_seq`, following `lastSeq` page by page."""
        events: list[dict[str, Any]] = []
        cursor = after_seq
        while True:
            page = self.poll(webhook_id, afterSeq=cursor, limit=limit)
            events.extend(page["events"])
            if page["lastSeq"] is not None:
                cursor = page["lastSeq"]
            if not page["hasMore"]:
                return events


def hosted_webhook(api: Api, **fields: Any) -> tuple[str, str]:
    """A new account with one active hosted webhook: (account_id, webhook_id)."""
    account = api.create_account()
    return account, api.create_webhook(account, **fields)["webhook_id"]


def message(n: int) -> dict[str, Any]:
    """The n-th `message_received` event a test ingests (its message id is m<n>)."""
    return {"type": "message_received", "data": {"message": {"id": f"m{n}"}}}
