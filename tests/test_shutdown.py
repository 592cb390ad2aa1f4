"""SIGTERM with streams open: they end cleanly and the process exits promptly (SPEC §9)."""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Callable

import httpx
from httpx_sse import connect_sse

from tests.server import Api, Server


def test_sigterm_ends_open_streams_cleanly_and_the_process_exits_within_seconds(
    start_server: Callable[..., Server],
) -> None:
    server = start_server()
    with contextlib.closing(Api(server)) as api:
        account = api.create_account()
        webhook_id = api.create_webhook(account)["webhook_id"]
    url = f"{server.url}/v2/webhooks/{webhook_id}/stream"
    ended: dict[int, float] = {}
    errors: list[BaseException] = []
    connected = threading.Barrier(3)

    def listen(index: int) -> None:
        try:
            with httpx.Client(timeout=30) as client, connect_sse(client, "GET", url, headers=api.auth) as source:
                events = source.iter_sse()
                next(events)
                connected.wait(10)
                for _ in events:
                    pass  # a clean end of the response ends this loop; a broken one raises
            ended[index] = time.monotonic()
        except BaseException as exc:
            errors.append(exc)

    listeners = [threading.Thread(target=listen, args=(i,)) for i in range(2)]
    curl = subprocess.Popen(["curl", "-sSN", "-H", f"x-api-key: {api.api_key}", url], stdout=subprocess.PIPE)
    for thread in listeners:
        thread.start()
    assert curl.stdout is not None
    assert curl.stdout.readline() == b"retry: 3000\n"
    connected.wait(10)

    sent = time.monotonic()
    assert server.process is not None
    server.process.terminate()
    server.process.wait(timeout=10)
    exited = time.monotonic() - sent
    for thread in listeners:
        thread.join(10)
    curl_status = curl.wait(timeout=10)
    curl.stdout.close()

    assert errors == []
    assert exited < 5.0, f"the server took {exited:.1f}s to exit"
    assert sorted(ended) == [0, 1]
    assert all(moment - sent < 5.0 for moment in ended.values())
    assert curl_status == 0  # curl saw the chunked body end properly, not a cut connection
    assert "Finished server process" in server.log()
    with contextlib.suppress(httpx.TransportError):
        httpx.get(server.url + "/healthz", timeout=2)
        raise AssertionError("the server still answers after SIGTERM")
