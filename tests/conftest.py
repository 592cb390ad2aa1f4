from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.backends import backend_name, backend_schema, same_backend, storage_backend  # noqa: F401 - fixtures
from tests.receiver import Receiver
from tests.server import TEST_DATABASE, Api, Server, drop_session_schemas


@pytest.fixture(scope="session", autouse=True)
def postgres_schemas_dropped_after_the_session() -> Iterator[None]:
    """With HOOKSTREAM_TEST_DATABASE=postgres, leave no test schema behind in the shared database."""
    yield
    if TEST_DATABASE == "postgres":
        drop_session_schemas()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start hookstream servers (env overrides as keyword arguments); all are stopped after the test."""
    servers: list[Server] = []

    def start(env: dict[str, str] | None = None, directory: Path | None = None, **kwargs: str) -> Server:
        server = Server(directory or tmp_path, env, **kwargs)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.kill()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for a whole test module; tests isolate themselves by API key and account."""
    server = Server(tmp_path_factory.mktemp("server")).start()
    yield server
    server.kill()


@pytest.fixture
def api(shared_server: Server) -> Iterator[Api]:
    """A customer with a fresh API key on the shared server."""
    client = Api(shared_server)
    yield client
    client.close()


@pytest.fixture
def customer(server: Server) -> Iterator[Api]:
    """A customer with its own API key on the module's `server` (a module that streams defines one)."""
    client = Api(server)
    yield client
    client.close()


@pytest.fixture
def connect() -> Iterator[Callable[..., Api]]:
    """Make customer clients, `connect(server, api_key=None)`; all are closed after the test."""
    clients: list[Api] = []

    def make(server: Server, api_key: str | None = None) -> Api:
        client = Api(server, api_key)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A local webhook receiver over a real socket; closed after the test."""
    server = Receiver()
    yield server
    server.close()
