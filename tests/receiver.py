"""A real webhook receiver on 127.0.0.1 for delivery tests: records every request, answers as told."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson


@dataclass(frozen=True)
class Received:
    """One request as the receiver got it."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    def json(self) -> Any:
        return orjson.loads(self.body)


class Receiver:
    """An HTTP server in a thread. `script` answers requests in turn; after it runs out, `default` answers.

    An answer is a status code, or "hang": hold the request unanswered (it is then not recorded).
    """

    def __init__(self, default: int | str = 200) -> None:
        self.default: int | str = default
        self.script: list[int | str] = []
        self.requests: list[Received] = []
        self.arrivals = 0
        self._lock = threading.Lock()
        self._closing = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.arrivals += 1
                    answer = receiver.script.pop(0) if receiver.script else receiver.default
                if answer == "hang":
                    # Never answered: the sender times out (or dies), so this is not recorded as received.
                    receiver._closing.wait(30)
                    self.close_connection = True
                    return
                status = int(answer)
                with receiver._lock:
                    headers = {name.lower(): value for name, value in self.headers.items()}
                    receiver.requests.append(Received(self.path, headers, body, status))
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("location", receiver.url + "/redirected")
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()

    def received(self, status: int | None = None) -> list[Received]:
        """Requests answered so far (only those answered with `status`, when given)."""
        with self._lock:
            return [r for r in self.requests if status is None or r.status == status]

    def event_ids(self, status: int = 200) -> list[str]:
        """The `webhook-id` of every request answered with `status`, in arrival order."""
        return [r.headers["webhook-id"] for r in self.received(status)]


def wait_until(condition: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
