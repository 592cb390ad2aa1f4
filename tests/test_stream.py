"""`GET /v2/webhooks/{id}/stream` over real sockets: httpx-sse, curl -N, raw sockets (SPEC §5.4)."""

from __future__ import annotations

import contextlib
import json
import random
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent, connect_sse

from tests.server import Api, Server, hosted_webhook, message

HEARTBEAT = 0.3


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the module, with a fast heartbeat so idle streams speak often."""
    server = Server(tmp_path_factory.mktemp("stream"), {"HOOKSTREAM_HEARTBEAT_SECONDS": f"{HEARTBEAT}s"}).start()
    yield server
    server.kill()


def stream_client(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=httpx.Timeout(10.0))


def feed_events(events: Iterator[ServerSentEvent], count: int) -> list[ServerSentEvent]:
    """The next `count` feed events, skipping data-less blocks (the opening `retry:`/`id:`)."""
    received: list[ServerSentEvent] = []
    for sse in events:
        if sse.data:
            received.append(sse)
            if len(received) == count:
                break
    return received


def frames(response: httpx.Response) -> Iterator[dict[str, str]]:
    """Each SSE block of a response as its fields, comments included as `comment` — what a careful client sees."""
    block: dict[str, str] = {}
    for line in response.iter_lines():
        if line == "":
            if block:
                yield block
            block = {}
            continue
        name, _, value = line.partition(":")
        block[name or "comment"] = value[1:] if value.startswith(" ") else value


def wait_until(condition: Callable[[], bool], timeout: float = 20.0, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(0.05)


def test_stream_opens_with_retry_and_proxy_headers_then_sends_events_exactly_as_stored(
    server: Server, customer: Api
) -> None:
    account, webhook_id = hosted_webhook(customer)
    appended = customer.ingest(account, message(1), {"type": "email.new", "data": {"id": "e1", "subject": "a\nb"}})
    stored = customer.poll(webhook_id, afterSeq=0)
    with (
        stream_client(server) as client,
        client.stream(
            "GET", f"/v2/webhooks/{webhook_id}/stream", params={"afterSeq": 0}, headers=customer.auth
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        assert response.headers["hookstream-epoch"] == stored["epoch"]
        blocks = frames(response)
        assert next(blocks) == {"retry": "3000", "id": "0"}
        first, second = next(blocks), next(blocks)
    assert [first["id"], second["id"]] == [str(a["seq"]) for a in appended]
    assert [first["event"], second["event"]] == ["message_received", "email.new"]
    # One line of JSON per event, the same envelope polling returns.
    assert [json.loads(first["data"]), json.loads(second["data"])] == stored["events"]


def test_stream_without_a_cursor_starts_at_the_live_tail(server: Server, customer: Api) -> None:
    account, webhook_id = hosted_webhook(customer)
    before = customer.ingest(account, message(1))[0]["seq"]
    with (
        stream_client(server) as client,
        connect_sse(client, "GET", f"/v2/webhooks/{webhook_id}/stream", headers=customer.auth) as source,
    ):
        events = source.iter_sse()
        opening = next(events)
        assert opening.retry == 3000 and int(opening.id) >= before
        after = customer.ingest(account, message(2))[0]["seq"]
        [event] = feed_events(events, 1)
    assert int(event.id) == after
    assert json.loads(event.data)["data"] == {"message": {"id": "m2"}}


def test_last_event_id_wins_over_after_seq_and_delivers_only_later_events(server: Server, customer: Api) -> None:
    account, webhook_id = hosted_webhook(customer)
    seqs = [a["seq"] for a in customer.ingest(account, *(message(n) for n in range(5)))]
    headers = {**customer.auth, "Last-Event-ID": str(seqs[2])}
    with (
        stream_client(server) as client,
        connect_sse(
            client, "GET", f"/v2/webhooks/{webhook_id}/stream", params={"afterSeq": 0}, headers=headers
        ) as source,
    ):
        received = feed_events(source.iter_sse(), 2)
    assert [int(sse.id) for sse in received] == seqs[3:]


def test_curl_n_prints_events_as_they_are_appended(server: Server, customer: Api) -> None:
    account, webhook_id = hosted_webhook(customer)
    curl = subprocess.Popen(
        ["curl", "-sN", "-H", f"x-api-key: {customer.api_key}", f"{server.url}/v2/webhooks/{webhook_id}/stream"],
        stdout=subprocess.PIPE,
    )
    try:
        assert curl.stdout is not None
        assert curl.stdout.readline() == b"retry: 3000\n"
        seq = customer.ingest(account, message(1))[0]["seq"]
        lines = [curl.stdout.readline() for _ in range(5)]
    finally:
        curl.kill()
        curl.wait()
        if curl.stdout is not None:
            curl.stdout.close()
    assert lines[0].startswith(b"id: ")  # the opening cursor
    assert lines[1] == b"\n"
    assert lines[2] == b"id: %d\n" % seq
    assert lines[3] == b"event: message_received\n"
    assert lines[4].startswith(b"data: {") and b'"m1"' in lines[4]


def test_reconnect_storm_under_a_concurrent_producer_delivers_every_event_once_in_order(
    server: Server, customer: Api
) -> None:
    account, webhook_id = hosted_webhook(customer)
    produced: list[int] = []
    done = threading.Event()

    # Seeded sizes: how many events, and so how many reconnects, is the same on every run and
    # under any load; only the timing between producer and consumers varies.
    sizes = random.Random(1)

    def produce() -> None:
        with contextlib.closing(Api(server, customer.api_key)) as producer:
            for batch in range(40):
                appended = producer.ingest(account, *(message(batch * 10 + n) for n in range(sizes.randint(1, 10))))
                produced.extend(a["seq"] for a in appended)
                time.sleep(random.uniform(0, 0.02))
        done.set()

    def consume(received: list[int], connections: list[int], seed: int) -> None:
        rng = random.Random(seed)
        with stream_client(server) as client:
            while not (done.is_set() and received[-1:] == produced[-1:]):
                headers = {**customer.auth, "Last-Event-ID": str(received[-1])} if received else customer.auth
                params = {} if received else {"afterSeq": 0}
                wanted = rng.randint(1, 25)
                got = 0
                with client.stream("GET", f"/v2/webhooks/{webhook_id}/stream", params=params, headers=headers) as r:
                    assert r.status_code == 200
                    connections.append(1)
                    for block in frames(r):
                        if "data" in block:
                            received.append(int(block["id"]))
                            got += 1
                        if got >= wanted or (done.is_set() and received[-1:] == produced[-1:]):
                            break

    consumers = [([], []) for _ in range(3)]
    threads = [threading.Thread(target=produce)]
    threads += [threading.Thread(target=consume, args=(*pair, seed)) for seed, pair in enumerate(consumers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert done.is_set()
    assert len(produced) >= 40
    for received, connections in consumers:
        assert received == produced
        # Each connection ends after 1 to 25 events: the storm really reconnected many times.
        assert len(connections) >= len(produced) // 25 > 5


def test_many_live_streams_of_one_webhook_and_a_late_resume_all_get_the_same_events_once_in_order(
    server: Server, customer: Api
) -> None:
    account, webhook_id = hosted_webhook(customer)
    opened = threading.Semaphore(0)
    results: list[list[tuple[str, str, str]]] = []

    def watch(params: dict[str, Any], count: int) -> None:
        received: list[tuple[str, str, str]] = []
        with (
            stream_client(server) as client,
            client.stream("GET", f"/v2/webhooks/{webhook_id}/stream", params=params, headers=customer.auth) as r,
        ):
            for block in frames(r):
                if "retry" in block:
                    # Only the opening block says the stream is at the live tail: a `: ping` from a stream
                    # opened earlier must not let the events go out before this one has opened.
                    opened.release()
                if "data" not in block:
                    continue
                received.append((block["id"], block["event"], block["data"]))
                if len(received) == count:
                    break
        results.append(received)

    live = [threading.Thread(target=watch, args=({}, 30)) for _ in range(20)]
    for thread in live:
        thread.start()
    for _ in live:
        assert opened.acquire(timeout=20), "a stream did not open"
    for batch in range(6):
        customer.ingest(account, *(message(batch * 5 + n) for n in range(5)))
    late = threading.Thread(target=watch, args=({"afterSeq": 0}, 30))
    late.start()
    for thread in [*live, late]:
        thread.join(30)
    stored = customer.poll(webhook_id, afterSeq=0)["events"]
    assert len(results) == 21
    assert len(stored) == 30
    expected = [(str(event["seq"]), event["type"], event) for event in stored]
    for received in results:
        assert [(seq, type_, json.loads(data)) for seq, type_, data in received] == expected
    # Every stream sent the very same bytes, whether from the live tail or from storage.
    assert all(received == results[0] for received in results)


def test_idle_stream_sends_a_ping_comment_every_heartbeat(server: Server, customer: Api) -> None:
    _, webhook_id = hosted_webhook(customer)
    pings: list[float] = []
    with (
        stream_client(server) as client,
        client.stream("GET", f"/v2/webhooks/{webhook_id}/stream", headers=customer.auth) as response,
    ):
        for block in frames(response):
            if block == {"comment": "ping"}:
                pings.append(time.monotonic())
                if len(pings) == 6:
                    break
    # Judged over the whole run: a busy test process may read two pings in one go.
    gaps = [b - a for a, b in zip(pings, pings[1:], strict=False)]
    assert HEARTBEAT * 0.8 <= sum(gaps) / len(gaps) <= HEARTBEAT * 2.5, gaps
    assert max(gaps) <= HEARTBEAT * 6, gaps


def test_stopping_a_webhook_flushes_then_ends_its_streams_and_new_ones_get_204(server: Server, customer: Api) -> None:
    account, webhook_id = hosted_webhook(customer)
    with (
        stream_client(server) as client,
        connect_sse(
            client, "GET", f"/v2/webhooks/{webhook_id}/stream", params={"afterSeq": 0}, headers=customer.auth
        ) as source,
    ):
        seqs = [a["seq"] for a in customer.ingest(account, *(message(n) for n in range(3)))]
        assert customer.http.post(f"/v2/webhooks/{webhook_id}/stop", headers=customer.auth).status_code == 200
        # The stream delivers what joined the feed before the stop, then the response ends.
        received = [int(sse.id) for sse in source.iter_sse() if sse.data]
    assert received == seqs
    response = customer.http.get(f"/v2/webhooks/{webhook_id}/stream", headers=customer.auth)
    assert response.status_code == 204
    assert customer.http.post(f"/v2/webhooks/{webhook_id}/start", headers=customer.auth).status_code == 200
    with (
        stream_client(server) as client,
        client.stream("GET", f"/v2/webhooks/{webhook_id}/stream", headers=customer.auth) as response,
    ):
        assert response.status_code == 200


def test_deleting_a_webhook_ends_its_streams_and_its_stream_is_then_404(server: Server, customer: Api) -> None:
    _, webhook_id = hosted_webhook(customer)
    with (
        stream_client(server) as client,
        connect_sse(client, "GET", f"/v2/webhooks/{webhook_id}/stream", headers=customer.auth) as source,
    ):
        events = source.iter_sse()
        next(events)
        assert customer.http.delete(f"/v2/webhooks/{webhook_id}", headers=customer.auth).status_code == 200
        assert [sse for sse in events if sse.data] == []
    response = customer.http.get(f"/v2/webhooks/{webhook_id}/stream", headers=customer.auth)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "webhook_not_found"


def test_stream_refuses_missing_keys_and_other_keys_webhooks(server: Server, customer: Api) -> None:
    _, webhook_id = hosted_webhook(customer)
    assert customer.http.get(f"/v2/webhooks/{webhook_id}/stream").status_code == 401
    with contextlib.closing(Api(server)) as stranger:
        response = stranger.http.get(f"/v2/webhooks/{webhook_id}/stream", headers=stranger.auth)
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("params", "headers", "field"),
    [
        ({"afterSeq": "-1"}, {}, "afterSeq"),
        ({"afterSeq": "ten"}, {}, "afterSeq"),
        ({}, {"Last-Event-ID": "abc"}, "Last-Event-ID"),
        ({}, {"Last-Event-ID": "1.5"}, "Last-Event-ID"),
        # The header wins over afterSeq, but a malformed afterSeq is still refused, not ignored.
        ({"afterSeq": "-4.5e-62"}, {"Last-Event-ID": "0"}, "afterSeq"),
    ],
)
def test_a_malformed_cursor_is_400_naming_it(
    customer: Api, params: dict[str, str], headers: dict[str, str], field: str
) -> None:
    _, webhook_id = hosted_webhook(customer)
    response = customer.http.get(
        f"/v2/webhooks/{webhook_id}/stream", params=params, headers={**customer.auth, **headers}
    )
    assert response.status_code == 400
    assert response.json()["error"]["field"] == field


def test_a_cursor_beyond_the_newest_seq_is_409_cursor_ahead(customer: Api) -> None:
    _, webhook_id = hosted_webhook(customer)
    for extra in ({"params": {"afterSeq": 10**15}}, {"headers": {"Last-Event-ID": str(10**15)}}):
        headers = {**customer.auth, **extra.get("headers", {})}
        response = customer.http.get(f"/v2/webhooks/{webhook_id}/stream", params=extra.get("params"), headers=headers)
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "cursor_ahead"


def test_a_resumed_stream_says_when_retention_deleted_events_after_its_cursor(
    start_server: Callable[..., Server],
) -> None:
    server = start_server({"HOOKSTREAM_RETENTION": "1s", "HOOKSTREAM_RETENTION_INTERVAL": "100ms"})
    with contextlib.closing(Api(server)) as api:
        account, webhook_id = hosted_webhook(api)
        old = api.ingest(account, message(1))[0]["seq"]
        wait_until(lambda: api.poll(webhook_id, afterSeq=0)["events"] == [], message="retention")
        with (
            stream_client(server) as client,
            connect_sse(
                client, "GET", f"/v2/webhooks/{webhook_id}/stream", params={"afterSeq": 0}, headers=api.auth
            ) as source,
        ):
            events = source.iter_sse()
            next(events)
            pruned = next(events)
            new = api.ingest(account, message(2))[0]["seq"]
            [event] = feed_events(events, 1)
    assert pruned.event == "pruned"
    assert json.loads(pruned.data) == {"afterSeq": 0, "oldestSeq": old + 1}
    assert pruned.id == "0"  # no `id:` line: the client's cursor stays where it was
    assert int(event.id) == new


def test_streams_past_the_per_key_limit_get_429_until_one_closes(start_server: Callable[..., Server]) -> None:
    server = start_server({"HOOKSTREAM_MAX_STREAMS_PER_KEY": "2"})
    with contextlib.closing(Api(server)) as api, stream_client(server) as client:
        _, webhook_id = hosted_webhook(api)
        url = f"/v2/webhooks/{webhook_id}/stream"
        first = client.send(client.build_request("GET", url, headers=api.auth), stream=True)
        second = client.send(client.build_request("GET", url, headers=api.auth), stream=True)
        assert (first.status_code, second.status_code) == (200, 200)
        refused = client.get(url, headers=api.auth)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "too_many_streams"
        with contextlib.closing(Api(server)) as other:
            _, other_webhook = hosted_webhook(other)
            with client.stream("GET", f"/v2/webhooks/{other_webhook}/stream", headers=other.auth) as response:
                assert response.status_code == 200
        first.close()

        def third_stream_opens() -> bool:
            with client.stream("GET", url, headers=api.auth) as response:
                return response.status_code == 200

        wait_until(third_stream_opens, message="a slot to free up")
        second.close()


def _read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection; fails if it never does."""
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    sock.settimeout(1.0)
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(1 << 20)
        except TimeoutError:
            continue
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
    raise AssertionError("the server never ended the stalled stream")


def _complete_event_seqs(raw: bytes) -> list[int]:
    """Seqs of the events fully received in a (possibly cut) chunked SSE response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    payload = bytearray()
    while body:
        size_line, sep, rest = body.partition(b"\r\n")
        if not sep:
            break
        size = int(size_line, 16)
        if size == 0 or len(rest) < size + 2:
            payload += rest[:size]
            break
        payload += rest[:size]
        body = rest[size + 2 :]
    seqs = []
    for block in bytes(payload).split(b"\n\n")[:-1]:  # the last piece may be cut mid-event
        fields = dict(line.split(b": ", 1) for line in block.split(b"\n") if b": " in line)
        if b"data" in fields:
            seqs.append(int(fields[b"id"]))
    return seqs


def test_a_reader_that_stops_reading_is_cut_off_and_resumes_without_loss(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    server = start_server({"HOOKSTREAM_STREAM_BACKLOG": "5"})
    with contextlib.closing(Api(server)) as api:
        account, webhook_id = hosted_webhook(api)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: no autotuning
        sock.connect(("127.0.0.1", server.port))
        request = (
            f"GET /v2/webhooks/{webhook_id}/stream?afterSeq=0 HTTP/1.1\r\nhost: x\r\nx-api-key: {api.api_key}\r\n\r\n"
        )
        sock.sendall(request.encode())
        opening = sock.recv(64)
        assert opening.startswith(b"HTTP/1.1 200")
        blob = "x" * 100_000
        produced: list[int] = []
        # Far more than the socket buffers hold, so the server's writes stall; then more while they do.
        for round_ in range(20):
            batch = [{"type": "message_received", "data": {"n": round_ * 4 + n, "blob": blob}} for n in range(4)]
            produced += [a["seq"] for a in api.ingest(account, *batch)]
        time.sleep(1.5)
        for round_ in range(4):
            produced += [a["seq"] for a in api.ingest(account, message(round_), message(round_ + 100))]
            time.sleep(0.3)
        raw = opening + _read_until_closed(sock, timeout=30)
        sock.close()
        before_cut = _complete_event_seqs(raw)
        assert before_cut == produced[: len(before_cut)]
        assert len(before_cut) < len(produced)
        with (
            stream_client(server) as client,
            connect_sse(
                client,
                "GET",
                f"/v2/webhooks/{webhook_id}/stream",
                headers={**api.auth, "Last-Event-ID": str(before_cut[-1] if before_cut else 0)},
            ) as source,
        ):
            rest = [int(sse.id) for sse in feed_events(source.iter_sse(), len(produced) - len(before_cut))]
    assert before_cut + rest == produced
    assert "client stopped reading" in server.log()
