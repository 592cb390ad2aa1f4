from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.server import Api, Server


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
