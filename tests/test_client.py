"""hookstream_client against a real server: every route, errors, cursor-exact streams, gaps, epochs, verify."""

from __future__ import annotations

import base64
import gzip
import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from standardwebhooks import Webhook as StandardWebhook

from hookstream_client import (
    AsyncClient,
    BadRequest,
    Client,
    CursorAhead,
    CursorFile,
    EpochChanged,
    Event,
    FeedPruned,
    InvalidSignature,
    MemoryCursor,
    NotFound,
    TransportError,
    Unauthorized,
    sign,
    verify,
)
from tests.json_only import JsonOnlyServer
from tests.proxy import Proxy
from tests.receiver import Receiver, wait_until
from tests.server import ROOT, Api, Server, message

HEARTBEAT = 1.0


@pytest.fixture
def tenant(api: Api) -> Iterator[tuple[Api, str, str]]:
    account = api.create_account()
    webhook = api.create_webhook(account)["webhook_id"]
    yield api, account, webhook


def test_the_library_imports_nothing_of_the_server() -> None:
    code = (
        "import sys\n"
        "for name in ('app', 'storage', 'starlette', 'uvicorn', 'orjson', 'asyncpg', 'sse_starlette'):\n"
        "    sys.modules[name] = None  # importing any of them now fails\n"
        "import hookstream_client, hookstream_client.cli, hookstream_client._listen, hookstream_client._tail\n"
        "import hookstream_client._export, hookstream_client._lines\n"
        "leaked = sorted(m for m in sys.modules if m.split('.')[0] in ('app', 'storage') and sys.modules[m])\n"
        "assert not leaked, leaked\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_every_customer_route_is_a_method(tenant: tuple[Api, str, str], shared_server: Server) -> None:
    api, account, webhook_id = tenant
    with Client(shared_server.url, api.api_key) as client:
        created = client.create_account(name="Ada")
        assert created.name == "Ada" and created.monitoring == "idle"
        assert {a.account_id for a in client.list_accounts()} == {account, created.account_id}
        assert client.get_account(account).active_webhooks == 1
        hook = client.create_webhook(created.account_id, events=["message_received"])
        assert hook.mode == "hosted" and hook.events == ["message_received"] and hook.is_active
        assert [w.webhook_id for w in client.list_webhooks(created.account_id)] == [hook.webhook_id]
        assert client.get_webhook(hook.webhook_id).events == ["message_received"]
        assert client.update_webhook(hook.webhook_id, events=["all"]).events == ["all"]
        assert client.stop_webhook(hook.webhook_id).is_active is False
        assert client.start_webhook(hook.webhook_id).is_active is True
        test = client.test_webhook(hook.webhook_id)
        assert test["type"] == "webhook.test"
        assert [e.seq for e in client.events(hook.webhook_id, after=0)] == [test["seq"]]
        page = client.poll(hook.webhook_id, after=0, limit=10)
        assert page.last_seq == test["seq"] and not page.has_more and page.epoch
        assert client.mock_payload("message_received").seq == 0
        assert any(t["type"] == "message_received" for t in client.event_types())
        token = client.stream_token(hook.webhook_id)
        assert token.stream_url.endswith(token.token)
        assert client.usage(created.account_id)["account_id"] == created.account_id
        client.delete_webhook(hook.webhook_id)
        with pytest.raises(NotFound):
            client.get_webhook(hook.webhook_id)
        assert client.delete_account(created.account_id)["deleted"] is True


def test_custom_mode_routes_rotate_attempts_and_recover(start_server: Any, tmp_path: Path) -> None:
    server = start_server({"HOOKSTREAM_ALLOW_HTTP": "1", "HOOKSTREAM_ALLOW_PRIVATE_URLS": "1"})
    api = Api(server)
    receiver = Receiver()
    try:
        with Client(server.url, api.api_key) as client:
            account = client.create_account().account_id
            hook = client.create_webhook(account, url=receiver.url + "/hook")
            assert hook.mode == "custom" and hook.secret and hook.secret.startswith("whsec_")
            rotated = client.rotate_secret(hook.webhook_id)
            assert rotated.secret != hook.secret
            api.ingest(account, message(1))
            wait_until(lambda: receiver.received(200), what="a delivery")
            attempts = wait_until(lambda: client.attempts(hook.webhook_id)["attempts"], what="an attempt")
            assert attempts[0]["status_code"] == 200
            assert client.recover(hook.webhook_id, after_seq=0)["after_seq"] == 0
            wait_until(lambda: len(receiver.received(200)) >= 2, what="the re-delivery")
    finally:
        receiver.close()
        api.close()


def test_errors_carry_status_code_message_and_field(tenant: tuple[Api, str, str], shared_server: Server) -> None:
    api, account, webhook_id = tenant
    with Client(shared_server.url, api.api_key) as client:
        with pytest.raises(BadRequest) as bad:
            client.create_webhook(account, events=["no.such.type"])
        assert bad.value.status == 400 and bad.value.field == "events" and "valid" in bad.value.message
        with pytest.raises(BadRequest) as limit:
            client.poll(webhook_id, limit=0)
        assert limit.value.field == "limit"
        with pytest.raises(NotFound) as missing:
            client.get_webhook("0" * 24)
        assert missing.value.code == "webhook_not_found" and missing.value.status == 404
    with Client(shared_server.url, "hk_not_a_key") as client, pytest.raises(Unauthorized) as refused:
        client.list_accounts()
    assert refused.value.status == 401 and refused.value.code
    with Client("http://127.0.0.1:1", "hk_x") as client, pytest.raises(TransportError) as unreachable:
        list(client.events(webhook_id))
    assert "Cannot reach" in unreachable.value.message


def test_events_pages_through_the_feed_and_follows_it(tenant: tuple[Api, str, str], shared_server: Server) -> None:
    api, account, webhook_id = tenant
    api.ingest(account, *[message(n) for n in range(25)])
    with Client(shared_server.url, api.api_key) as client:
        seqs = [e.seq for e in client.events(webhook_id, after=0, limit=10)]
        assert len(seqs) == 25 and seqs == sorted(seqs)
        follow = client.events(webhook_id, after=seqs[-1], follow=True, wait=5)
        later = threading.Timer(0.5, lambda: api.ingest(account, message(99)))
        later.start()
        late = next(follow)
        later.join()
        assert isinstance(late, Event) and late.seq > seqs[-1] and late.data == {"message": {"id": "m99"}}


def test_poll_lines_gives_the_stored_envelopes_one_a_line_and_reads_a_json_page_from_an_older_server(
    tenant: tuple[Api, str, str], shared_server: Server
) -> None:
    api, account, webhook_id = tenant
    # Data that reads like the boundary between two envelopes: the older server's page is re-serialized, not cut.
    tricky = {"items": [{"x": {"a": 1}}, {"id": "y"}], "text": '}\n{"id":"evt', "separators": "\u2028\u2029"}
    api.ingest(account, *[message(n) for n in range(4)], {"type": "message_received", "data": tricky}, message(5))
    feed = api.feed(webhook_id)
    epoch = api.poll(webhook_id)["epoch"]
    older = JsonOnlyServer(shared_server.port)
    path = f"/v2/webhooks/{webhook_id}/events"
    accept = {**api.auth, "accept": "application/x-ndjson"}
    assert httpx.get(older.url + path, headers=accept).headers["content-type"] == "application/json"
    assert httpx.get(shared_server.url + path, headers=accept).headers["content-type"] == "application/x-ndjson"
    try:
        for url in (shared_server.url, older.url):
            with Client(url, api.api_key) as client:
                first = client.poll_lines(webhook_id, after=0, limit=3)
                assert [json.loads(line) for line in first.lines.splitlines()] == feed[:3]
                assert (first.count, first.first_seq, first.last_seq) == (3, feed[0]["seq"], feed[2]["seq"])
                assert first.has_more and first.epoch == epoch and not first.pruned
                rest = client.poll_lines(webhook_id, after=first.last_seq, wait=1)
                assert rest.events() == [Event.from_json(envelope) for envelope in feed[3:]], url
                assert rest.lines.endswith(b"\n") and rest.count == 3 and not rest.has_more
                empty = client.poll_lines(webhook_id, after=feed[-1]["seq"])
                assert (empty.lines, empty.count, empty.last_seq, empty.has_more) == (b"", 0, None, False)
                with pytest.raises(CursorAhead):
                    client.poll_lines(webhook_id, after=10**9)
                with pytest.raises(NotFound):
                    client.poll_lines("0" * 24)
    finally:
        older.close()


def test_a_cursor_file_gives_at_least_once_processing(
    tenant: tuple[Api, str, str], shared_server: Server, tmp_path: Path
) -> None:
    api, account, webhook_id = tenant
    api.ingest(account, *[message(n) for n in range(10)])
    path = tmp_path / "orders.cursor"
    processed: list[int] = []
    with Client(shared_server.url, api.api_key) as client:
        cursor = CursorFile(path)
        for event in client.events(webhook_id, cursor=cursor):
            processed.append(event.seq)
            if len(processed) == 4:
                break  # a crash before the 4th is acknowledged
            cursor.ack(event)
        again = CursorFile(path)
        assert again.seq == processed[2] and again.epoch
        rest = [e.seq for e in client.events(webhook_id, cursor=again)]
    assert rest[0] == processed[3] and processed[:3] + rest == sorted(set(processed + rest))
    assert not list(tmp_path.glob("*.tmp"))


def restart(server: Server, proxy: Proxy) -> None:
    server.stop()
    server.start()
    proxy.retarget(server.port)


def test_stream_resumes_cursor_exactly_across_a_server_restart(start_server: Any) -> None:
    server = start_server({"HOOKSTREAM_HEARTBEAT_SECONDS": f"{HEARTBEAT}s"})
    proxy = Proxy(server.port)
    api = Api(server)
    account = api.create_account()
    webhook_id = api.create_webhook(account)["webhook_id"]
    api.ingest(account, *[message(n) for n in range(20)])
    statuses: list[str] = []
    try:
        with Client(proxy.url, api.api_key) as client:
            stream = client.stream(webhook_id, after=0, heartbeat=HEARTBEAT, on_status=lambda s, d: statuses.append(s))
            seen = [next(stream).seq for _ in range(10)]
            restart(server, proxy)
            api.http.base_url = server.url  # the platform reaches the restarted server directly
            api.ingest(account, *[message(n) for n in range(20, 30)])
            seen += [next(stream).seq for _ in range(20)]
            proxy.cut()  # a dropped connection
            api.ingest(account, message(30))
            seen.append(next(stream).seq)
            stream.close()
        assert seen == list(range(1, 32))
        assert statuses.count("connected") >= 3 and "reconnecting" in statuses
    finally:
        proxy.close()
        api.close()


def test_stream_reconnects_after_three_silent_heartbeats(start_server: Any) -> None:
    server = start_server({"HOOKSTREAM_HEARTBEAT_SECONDS": f"{HEARTBEAT}s"})
    proxy = Proxy(server.port)
    api = Api(server)
    account = api.create_account()
    webhook_id = api.create_webhook(account)["webhook_id"]
    statuses: list[str] = []
    try:
        with Client(proxy.url, api.api_key) as client:
            stream = client.stream(webhook_id, after=0, heartbeat=HEARTBEAT, on_status=lambda s, d: statuses.append(s))
            api.ingest(account, message(1))
            assert next(stream).seq == 1
            proxy.freeze()  # the connection stays open but nothing comes through: not even pings
            api.ingest(account, message(2))
            threading.Timer(3 * HEARTBEAT + 0.5, proxy.thaw).start()
            started = time.monotonic()
            assert next(stream).seq == 2
            assert time.monotonic() - started >= 3 * HEARTBEAT
            assert "reconnecting" in statuses
            stream.close()
    finally:
        proxy.close()
        api.close()


def test_stream_stops_on_204_and_backs_off_on_429(start_server: Any) -> None:
    server = start_server({"HOOKSTREAM_MAX_STREAMS_PER_KEY": "1", "HOOKSTREAM_HEARTBEAT_SECONDS": "1s"})
    api = Api(server)
    account = api.create_account()
    webhook_id = api.create_webhook(account)["webhook_id"]
    api.ingest(account, message(1))
    statuses: list[str | None] = []
    try:
        with Client(server.url, api.api_key) as first, Client(server.url, api.api_key) as second:
            held = first.stream(webhook_id, after=0, heartbeat=1)
            assert next(held).seq == 1
            waiting = second.stream(webhook_id, after=0, heartbeat=1, on_status=lambda s, d: statuses.append(d))
            threading.Timer(1.0, held.close).start()  # frees the one stream allowed
            assert next(waiting).seq == 1
            assert any(d and d.startswith("429") for d in statuses)
            stop = threading.Timer(0.5, lambda: api.http.post(f"/v2/webhooks/{webhook_id}/stop", headers=api.auth))
            stop.start()
            assert list(waiting) == []  # the stream ends, and 204 keeps it ended
            stop.join()
    finally:
        api.close()


def test_pruned_gaps_raise_or_reach_the_callback(start_server: Any) -> None:
    server = start_server({"HOOKSTREAM_RETENTION": "2s", "HOOKSTREAM_RETENTION_INTERVAL": "500ms"})
    api = Api(server)
    account = api.create_account()
    webhook_id = api.create_webhook(account)["webhook_id"]
    api.ingest(account, message(1), message(2))
    time.sleep(3.5)
    kept = api.ingest(account, message(3))[0]["seq"]
    try:
        with Client(server.url, api.api_key) as client:
            with pytest.raises(FeedPruned) as gap:
                list(client.events(webhook_id, after=0))
            assert gap.value.after_seq == 0
            gaps: list[FeedPruned] = []
            assert [e.seq for e in client.events(webhook_id, after=0, on_pruned=gaps.append)] == [kept]
            assert len(gaps) == 1
            stream = client.stream(webhook_id, after=0, on_pruned=gaps.append)
            assert next(stream).seq == kept
            stream.close()
            assert gaps[1].oldest_seq is not None and gaps[1].oldest_seq <= kept
            with pytest.raises(FeedPruned):
                next(client.stream(webhook_id, after=0))
            # A consumer whose cursor has never acknowledged anything starts at the oldest retained event:
            # what retention deleted before it existed is no gap of its own.
            assert [e.seq for e in client.events(webhook_id, cursor=MemoryCursor())] == [kept]
            fresh = client.stream(webhook_id, cursor=MemoryCursor())
            assert next(fresh).seq == kept
            fresh.close()
    finally:
        api.close()


def set_epoch(database_url: str, epoch: str) -> None:
    """Give a stopped server's log another epoch, on either backend."""
    if database_url.startswith("sqlite:///"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as db:
            db.execute("UPDATE meta SET value = ? WHERE key = 'epoch'", (epoch,))
        return
    import asyncio

    import asyncpg

    from storage.postgres import split_schema

    url, schema = split_schema(database_url)

    async def update() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f"UPDATE \"{schema}\".meta SET value = $1 WHERE key = 'epoch'", epoch)
        finally:
            await conn.close()

    asyncio.run(update())


def test_a_new_epoch_raises_or_restarts_the_feed(start_server: Any, tmp_path: Path) -> None:
    server = start_server()
    api = Api(server)
    account = api.create_account()
    webhook_id = api.create_webhook(account)["webhook_id"]
    api.ingest(account, *[message(n) for n in range(3)])
    cursor = CursorFile(tmp_path / "c.cursor")
    with Client(server.url, api.api_key) as client:
        for event in client.events(webhook_id, cursor=cursor):
            cursor.ack(event)
    assert cursor.seq == 3 and cursor.epoch
    server.stop()
    # The log recreated under the same ids: what a restore onto a fresh database looks like to a client.
    set_epoch(server.database_url, "a-new-epoch")
    server.start()
    api.http.base_url = server.url
    try:
        with Client(server.url, api.api_key) as client:
            with pytest.raises(EpochChanged) as changed:
                list(client.events(webhook_id, cursor=CursorFile(tmp_path / "c.cursor")))
            assert changed.value.expected == cursor.epoch and changed.value.current == "a-new-epoch"
            with pytest.raises(EpochChanged):
                next(client.stream(webhook_id, cursor=CursorFile(tmp_path / "c.cursor")))
            told: list[EpochChanged] = []
            again = CursorFile(tmp_path / "c.cursor")
            seqs = [e.seq for e in client.events(webhook_id, cursor=again, on_epoch_change=told.append)]
            assert seqs == [1, 2, 3] and len(told) == 1
            assert CursorFile(tmp_path / "c.cursor").epoch == "a-new-epoch"
            with pytest.raises(EpochChanged):  # a cursor past the log's head belongs to another log
                list(client.events(webhook_id, cursor=MemoryCursor(10**6, "a-new-epoch")))
    finally:
        api.close()


@pytest.mark.anyio
async def test_the_async_client_has_the_same_methods_and_guarantees(
    tenant: tuple[Api, str, str], shared_server: Server
) -> None:
    api, account, webhook_id = tenant
    api.ingest(account, *[message(n) for n in range(5)])
    async with AsyncClient(shared_server.url, api.api_key) as client:
        assert (await client.get_webhook(webhook_id)).account_id == account
        assert [a.account_id for a in await client.list_accounts()] == [account]
        seqs = [e.seq async for e in client.events(webhook_id, after=0, limit=2)]
        assert len(seqs) == 5
        streamed: list[int] = []
        with anyio.fail_after(10):
            async for event in client.stream(webhook_id, after=seqs[1]):
                streamed.append(event.seq)
                if len(streamed) == 3:
                    break
        assert streamed == seqs[2:]
        with pytest.raises(NotFound):
            await client.get_account("nope")
        with pytest.raises(BadRequest) as bad:
            await client.create_webhook(account, events=["nope.nope"])
        assert bad.value.field == "events"
        lines = await client.poll_lines(webhook_id, after=seqs[0], limit=3)
        assert [json.loads(line)["seq"] for line in lines.lines.splitlines()] == seqs[1:4] and lines.has_more
        assert [e.seq for e in lines.events()] == seqs[1:4] and lines.last_seq == seqs[3]


def test_verify_accepts_the_servers_deliveries_plain_and_gzip(start_server: Any) -> None:
    server = start_server({"HOOKSTREAM_ALLOW_HTTP": "1", "HOOKSTREAM_ALLOW_PRIVATE_URLS": "1"})
    api = Api(server)
    receiver = Receiver()
    try:
        account = api.create_account()
        plain = api.create_webhook(account, url=receiver.url + "/plain")
        packed = api.create_webhook(account, url=receiver.url + "/gzip", compressed_delivery=True)
        api.ingest(account, message(1))
        wait_until(lambda: len(receiver.received(200)) == 2, what="two deliveries")
        by_path = {r.path: r for r in receiver.received(200)}
        got = by_path["/plain"]
        envelope = verify(got.body, got.headers, plain["secret"])
        assert envelope["data"] == {"message": {"id": "m1"}}
        assert StandardWebhook(plain["secret"]).verify(got.body, got.headers)["id"] == envelope["id"]
        zipped = by_path["/gzip"]
        assert zipped.headers["content-encoding"] == "gzip"
        assert verify(zipped.body, zipped.headers, packed["secret"]) == envelope
        with pytest.raises(InvalidSignature):
            verify(got.body, got.headers, packed["secret"])  # another webhook's secret
        with pytest.raises(InvalidSignature):
            verify(got.body.replace(b"m1", b"m2"), got.headers, plain["secret"])
        with pytest.raises(InvalidSignature):
            verify(got.body, got.headers, plain["secret"], now=time.time() + 3600)
    finally:
        receiver.close()
        api.close()


def test_verify_takes_any_of_several_signatures_and_ed25519() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    body = gzip.compress(json.dumps({"id": "evt_1", "seq": 1}).encode())
    now = int(time.time())
    old, new = "whsec_" + base64.b64encode(b"o" * 24).decode(), "whsec_" + base64.b64encode(b"n" * 24).decode()
    headers = {
        "Webhook-Id": "evt_1",
        "Webhook-Timestamp": str(now),
        "Webhook-Signature": f"{sign(new, 'evt_1', now, body)} {sign(old, 'evt_1', now, body)}",
        "Content-Encoding": "gzip",
    }
    assert verify(body, headers, old)["seq"] == 1
    assert verify(body, headers, new)["seq"] == 1
    with pytest.raises(InvalidSignature):
        verify(body, headers, "whsec_" + base64.b64encode(b"x" * 24).decode())
    key = Ed25519PrivateKey.generate()
    public = "whpk_" + base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
    signature = base64.b64encode(key.sign(b"evt_1.%d.%s" % (now, body))).decode()
    ed_headers = {**headers, "webhook-signature": f"v1a,{signature}"}
    assert verify(body, ed_headers, public)["id"] == "evt_1"
    other = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    with pytest.raises(InvalidSignature):
        verify(body, ed_headers, "whpk_" + base64.b64encode(other).decode())


def test_cursor_files_replace_or_overwrite_and_read_back(tmp_path: Path) -> None:
    event = Event("evt_1", 41, "message_received", "acc", "2025-01-15T12:00:00.000Z", "1.0", {})
    for overwrite in (False, True):
        path = tmp_path / f"overwrite-{overwrite}.cursor"
        cursor = CursorFile(path, fsync=not overwrite, overwrite=overwrite)
        cursor.reset("epoch-1")
        cursor.ack(event)
        cursor.ack(Event(**{**event.__dict__, "seq": 7}))  # a shorter record over a longer one
        cursor.sync()
        again = CursorFile(path)
        assert (again.seq, again.epoch) == (7, "epoch-1")
        cursor.close()
    (tmp_path / "bad.cursor").write_text("not json")
    with pytest.raises(ValueError, match="not a hookstream cursor file"):
        CursorFile(tmp_path / "bad.cursor")


def test_the_client_builds_as_a_package_of_its_own(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), "./hookstream_client"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("hookstream_client-*.whl")
    import zipfile

    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = next(archive.read(n).decode() for n in names if n.endswith("METADATA"))
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert {"hookstream_client/__init__.py", "hookstream_client/py.typed", "hookstream_client/cli.py"} <= names
    assert not any(n.startswith(("app/", "storage/")) or n.endswith("pyproject.toml") for n in names)
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert [r for r in requires if "extra ==" not in r] == ["Requires-Dist: httpx>=0.27"]
    assert "hookstream-client = hookstream_client.cli:main" in entry_points


@pytest.mark.anyio
async def test_every_route_of_the_async_client(tenant: tuple[Api, str, str], shared_server: Server) -> None:
    api, account, webhook_id = tenant
    async with AsyncClient(shared_server.url, api.api_key) as client:
        created = await client.create_account(name="Ada")
        assert (await client.get_account(created.account_id)).name == "Ada"
        hook = await client.create_webhook(created.account_id)
        assert [w.webhook_id for w in await client.list_webhooks(created.account_id)] == [hook.webhook_id]
        assert (await client.update_webhook(hook.webhook_id, events=["message_received"])).events == [
            "message_received"
        ]
        assert (await client.stop_webhook(hook.webhook_id)).is_active is False
        assert (await client.start_webhook(hook.webhook_id)).is_active is True
        test = await client.test_webhook(hook.webhook_id)
        page = await client.poll(hook.webhook_id, after=0)
        assert [e.seq for e in page.events] == [test["seq"]]
        assert (await client.mock_payload("message_received")).type == "message_received"
        assert await client.event_types()
        assert (await client.stream_token(hook.webhook_id)).token
        assert (await client.usage(created.account_id))["account_id"] == created.account_id
        with pytest.raises(BadRequest) as not_custom:
            await client.attempts(hook.webhook_id)
        assert not_custom.value.code == "not_custom_mode"
        with pytest.raises(BadRequest):
            await client.recover(hook.webhook_id, after_seq=0)
        with pytest.raises(BadRequest):
            await client.rotate_secret(hook.webhook_id)
        await client.delete_webhook(hook.webhook_id)
        assert (await client.delete_account(created.account_id))["deleted"] is True
