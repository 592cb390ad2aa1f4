"""A real webhook receiver on 127.0.0.1 for delivery tests: records every request, answers as told."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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
    # time.monotonic() when it was answered.
    at: float = 0.0

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass(frozen=True)
class Answer:
    """A status with extra response headers, sent after `delay` seconds."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


Reply = int | str | Answer


class Receiver:
    """An HTTP server in a thread. `script` answers requests in turn; after it runs out, `default` answers.

    An answer is a status code, an `Answer`, or "hang": hold the request unanswered (it is then not
    recorded). When `decide` is set, it picks the answer from the request's headers and body instead.
    """

    def __init__(self, default: Reply = 200) -> None:
        self.default: Reply = default
        self.script: list[Reply] = []
        self.decide: Callable[[dict[str, str], bytes], Reply] | None = None
        self.requests: list[Received] = []
        self.arrivals = 0
        self._lock = threading.Lock()
        self._closing = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                headers = {name.lower(): value for name, value in self.headers.items()}
                with receiver._lock:
                    receiver.arrivals += 1
                    if receiver.decide is not None:
                        answer = receiver.decide(headers, body)
                    else:
                        answer = receiver.script.pop(0) if receiver.script else receiver.default
                if answer == "hang":
                    # Never answered: the sender times out (or dies), so this is not recorded as received.
                    receiver._closing.wait(30)
                    self.close_connection = True
                    return
                reply = answer if isinstance(answer, Answer) else Answer(int(answer))
                if reply.delay:
                    time.sleep(reply.delay)
                status = reply.status
                with receiver._lock:
                    receiver.requests.append(Received(self.path, headers, body, status, time.monotonic()))
                self.send_response(status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
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
