"""Polling pages as JSON Lines (`Accept: application/x-ndjson`), over a real server: the JSON page, line by line."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from tests.server import Api, Server

NDJSON = "application/x-ndjson"
# Every control character, the two characters JavaScript once took for line ends, and text that reads
# like the boundary between two envelopes of either representation.
AWKWARD = {
    "controls": "".join(chr(c) for c in range(32)) + "\x7f",
    "separators": "a\u2028b\u2029c\x85d",
    "next_line": '}\n{"id":"evt_fake","seq":1}',
    "next_envelope": '}},{"id":"evt_fake',
    "nested": [{"x": {"a": 1}}, {"id": "y", "seq": 5}],
    "escaped": "\\n\\r\\u2028",
}


def monitored(api: Api, **fields: Any) -> tuple[str, str]:
    """An account with one hosted webhook: (account id, webhook id)."""
    account = api.create_account()
    return account, api.create_webhook(account, **fields)["webhook_id"]


def get(api: Api, webhook: str, accept: str | None = NDJSON, **params: Any) -> httpx.Response:
    headers = {**api.auth, **({"accept": accept} if accept is not None else {})}
    return api.http.get(f"/v2/webhooks/{webhook}/events", params=params, headers=headers)


def lines_of(response: httpx.Response) -> list[bytes]:
    """The body's lines, each with its newline taken off; every line must have one."""
    body = response.content
    assert body == b"" or body.endswith(b"\n"), body[-100:]
    return body.split(b"\n")[:-1]


def assert_same_page(api: Api, webhook: str, **params: Any) -> httpx.Response:
    """The JSON Lines page for `params` holds the JSON page's events as its lines, and its fields as headers."""
    page = get(api, webhook, accept=None, **params)
    lines = get(api, webhook, **params)
    assert page.status_code == lines.status_code == 200, (page.text, lines.text)
    assert lines.headers["content-type"] == NDJSON and page.headers["content-type"] == "application/json"
    body = page.json()
    # The same stored bytes: the JSON page's array, cut at its commas, is the JSON Lines body.
    assert [orjson.loads(line) for line in lines_of(lines)] == body["events"]
    assert lines.content.replace(b"\n", b",").rstrip(b",") in page.content
    assert lines.headers["hookstream-count"] == str(len(body["events"]))
    assert lines.headers["hookstream-has-more"] == ("true" if body["hasMore"] else "false")
    assert lines.headers.get("hookstream-last-seq") == (None if body["lastSeq"] is None else str(body["lastSeq"]))
    assert lines.headers["hookstream-epoch"] == body["epoch"]
    assert lines.headers.get("hookstream-pruned") == ("true" if body.get("pruned") else None)
    assert page.headers["vary"] == lines.headers["vary"] == "Accept"
    return lines


@pytest.mark.parametrize("cache", ["on", "off"])
def test_a_json_lines_page_is_the_json_pages_events_one_a_line_with_its_fields_in_headers(
    start_server: Callable[..., Server], connect: Callable[..., Api], cache: str
) -> None:
    # Off: every page comes from the database (SQLite joins it); on: pages near the head come from memory.
    server = start_server({"HOOKSTREAM_EVENT_CACHE": "0"} if cache == "off" else {})
    api = connect(server)
    account, everything = monitored(api)
    filtered = api.create_webhook(account, events=["message.new"])["webhook_id"]
    api.create_webhook(account, events=["email.new"])
    other = api.create_account()
    api.create_webhook(other)
    for batch in range(3):
        api.ingest(account, *[{"type": "message.new", "data": {"id": f"m{batch}-{n}"}} for n in range(300)])
        api.ingest(account, {"type": "email.new", "data": {"id": f"e{batch}"}})
        api.ingest(other, {"type": "message.new", "data": {"id": f"o{batch}"}})  # seqs of another feed between
    head = api.poll(everything, afterSeq=0, limit=1000)["lastSeq"]
    for webhook in (everything, filtered):
        for params in ({}, {"afterSeq": 0}, {"afterSeq": 0, "limit": 1000}, {"afterSeq": 250, "limit": 100}):
            assert_same_page(api, webhook, **params)
        first = assert_same_page(api, webhook, afterSeq=0, limit=7)
        assert len(lines_of(first)) == 7 and first.headers["hookstream-has-more"] == "true"
        last = assert_same_page(api, webhook, afterSeq=head - 2, limit=100)
        assert last.headers["hookstream-has-more"] == "false"
        empty = assert_same_page(api, webhook, afterSeq=head)
        assert empty.content == b"" and "hookstream-last-seq" not in empty.headers
    assert not any(b'"type":"email.new"' in line for line in lines_of(get(api, filtered, afterSeq=0, limit=1000)))
    # Walking the feed by the headers alone gives every event once, in order.
    seqs: list[int] = []
    cursor = 0
    while True:
        page = get(api, filtered, afterSeq=cursor, limit=128)
        seqs += [orjson.loads(line)["seq"] for line in lines_of(page)]
        cursor = int(page.headers.get("hookstream-last-seq", cursor))
        if page.headers["hookstream-has-more"] == "false":
            break
    assert seqs == [event["seq"] for event in api.feed(filtered)] and len(seqs) == 900


def test_event_data_with_newlines_line_separators_and_lookalike_boundaries_keeps_each_envelope_on_its_line(
    start_server: Callable[..., Server], connect: Callable[..., Api]
) -> None:
    api = connect(start_server({"HOOKSTREAM_MAX_EVENT_BYTES": "2000"}))
    account, webhook = monitored(api)
    api.ingest(
        account,
        {"type": "message.new", "data": {"id": "awkward", **AWKWARD}},
        {"type": "message.new", "data": {"id": "\n\u2028", "message": {"id": "m\r\n"}}},
        {"type": "message.new", "data": {"id": "big", "text": "\n\u2028" * 1000}},  # stored truncated
    )
    assert api.http.post(f"/v2/webhooks/{webhook}/test", headers=api.auth).status_code == 201
    lines = lines_of(assert_same_page(api, webhook, afterSeq=0))
    envelopes = [orjson.loads(line) for line in lines]
    assert envelopes[0]["data"] == {"id": "awkward", **AWKWARD}
    assert envelopes[1]["data"] == {"id": "\n\u2028", "message": {"id": "m\r\n"}}
    assert envelopes[2]["type"] == "message.new.truncated" and envelopes[2]["data"] == {"id": "big"}
    assert envelopes[3]["type"] == "webhook.test"
    # No stored envelope holds a raw CR or LF, so a text-mode reader splits the body where JSON Lines does
    # (U+2028, U+2029 and NEL stay raw inside their strings, as JSON allows, and end no line).
    body = b"\n".join(lines) + b"\n"
    assert all(b"\r" not in line for line in lines)
    assert b"\xe2\x80\xa8" in lines[0] and b"\xc2\x85" in lines[0]
    assert [line.rstrip("\n").encode() for line in io.TextIOWrapper(io.BytesIO(body), encoding="utf-8")] == lines


@pytest.mark.parametrize(
    ("accept", "answered"),
    [
        (None, "application/json"),
        ("*/*", "application/json"),
        ("application/json", "application/json"),
        ("application/x-ndjson", "application/x-ndjson"),
        ("application/jsonl", "application/jsonl"),
        ("Application/X-NDJSON; charset=utf-8", "application/x-ndjson"),
        ("application/x-ndjson, application/json;q=0.5", "application/x-ndjson"),
        ("application/json, application/x-ndjson", "application/json"),  # a tie: JSON, as before
        ("application/json;q=0.2, application/jsonl;q=0.9", "application/jsonl"),
        ("*/*;q=0.1, application/x-ndjson", "application/x-ndjson"),
        ("application/x-ndjson;q=0, */*", "application/json"),
        ("application/x-ndjson;q=2", "application/json"),  # a malformed weight is no range
        ("text/html", "application/json"),  # nothing servable: the Accept is disregarded
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "application/json"),
    ],
)
def test_accept_chooses_the_representation_and_anything_else_gets_json(
    api: Api, accept: str | None, answered: str
) -> None:
    account, webhook = monitored(api)
    api.ingest(account, {"type": "message.new", "data": {"id": "m1"}})
    response = get(api, webhook, accept=accept, afterSeq=0)
    assert response.status_code == 200 and response.headers["content-type"] == answered
    assert response.headers["vary"] == "Accept"
    if answered == "application/json":
        assert len(response.json()["events"]) == 1
    else:
        assert len(lines_of(response)) == 1


def test_two_accept_headers_are_one_list(api: Api) -> None:
    _, webhook = monitored(api)
    headers = [("x-api-key", api.api_key), ("accept", "text/html"), ("accept", NDJSON)]
    response = api.http.get(f"/v2/webhooks/{webhook}/events", headers=headers)
    assert response.status_code == 200 and response.headers["content-type"] == NDJSON


def test_errors_are_json_whatever_accept_says(api: Api) -> None:
    _, webhook = monitored(api)
    cases = {
        "invalid_request": get(api, webhook, limit=0),
        "cursor_ahead": get(api, webhook, afterSeq=10**9),
        "webhook_not_found": get(api, "0" * 24),
        "invalid_api_key": api.http.get(
            f"/v2/webhooks/{webhook}/events", headers={"x-api-key": "hk_nope", "accept": NDJSON}
        ),
    }
    for code, response in cases.items():
        assert response.status_code >= 400 and response.headers["content-type"] == "application/json", code
        assert response.json()["error"]["code"] == code
        assert not any(name.startswith("hookstream-") for name in response.headers), code
    assert cases["invalid_request"].json()["error"]["field"] == "limit"


def test_a_json_lines_long_poll_wakes_when_an_event_arrives_and_times_out_empty(api: Api) -> None:
    account, webhook = monitored(api)
    started = time.monotonic()
    empty = get(api, webhook, afterSeq=0, wait=1)
    assert time.monotonic() - started >= 0.9
    assert empty.content == b"" and empty.headers["hookstream-has-more"] == "false"
    result: dict[str, httpx.Response] = {}

    def poll() -> None:
        with httpx.Client(base_url=api.server.url, timeout=30) as http:
            result["page"] = http.get(
                f"/v2/webhooks/{webhook}/events",
                params={"afterSeq": 0, "wait": 20},
                headers={**api.auth, "accept": NDJSON},
            )

    reader = threading.Thread(target=poll)
    reader.start()
    time.sleep(0.5)
    [appended] = api.ingest(account, {"type": "message.new", "data": {"id": "late"}})
    reader.join(30)
    page = result["page"]
    assert [orjson.loads(line)["seq"] for line in lines_of(page)] == [appended["seq"]]
    assert page.headers["hookstream-last-seq"] == str(appended["seq"])


def test_a_stopped_webhooks_past_feed_reads_as_json_lines(api: Api) -> None:
    account, webhook = monitored(api)
    api.ingest(account, *[{"type": "message.new", "data": {"id": f"m{n}"}} for n in range(3)])
    assert api.http.post(f"/v2/webhooks/{webhook}/stop", headers=api.auth).status_code == 200
    assert len(lines_of(assert_same_page(api, webhook, afterSeq=0))) == 3


def test_the_pruned_and_epoch_headers_say_what_the_json_page_says(
    start_server: Callable[..., Server], connect: Callable[..., Api]
) -> None:
    server = start_server(
        {"HOOKSTREAM_RETENTION": "2s", "HOOKSTREAM_RETENTION_INTERVAL": "200ms", "HOOKSTREAM_RETENTION_BATCH": "2"}
    )
    api = connect(server)
    account, webhook = monitored(api)
    old = api.ingest(account, *[{"type": "message.new", "data": {"id": f"m{n}"}} for n in range(7)])
    epoch = get(api, webhook).headers["hookstream-epoch"]
    deadline = time.monotonic() + 30
    while get(api, webhook, afterSeq=0).content and time.monotonic() < deadline:
        time.sleep(0.2)
    gone = assert_same_page(api, webhook, afterSeq=0)
    assert gone.content == b"" and gone.headers["hookstream-pruned"] == "true"
    [fresh] = api.ingest(account, {"type": "message.new", "data": {}})
    after_old = assert_same_page(api, webhook, afterSeq=old[0]["seq"])
    assert after_old.headers["hookstream-pruned"] == "true"
    assert [orjson.loads(line)["seq"] for line in lines_of(after_old)] == [fresh["seq"]]
    assert "hookstream-pruned" not in assert_same_page(api, webhook).headers  # from the oldest retained: no gap
    assert "hookstream-pruned" not in assert_same_page(api, webhook, afterSeq=old[-1]["seq"]).headers
    # The epoch belongs to the log: the same across a restart, another for another log.
    server.stop()
    server.start()
    assert get(connect(server, api.api_key), webhook).headers["hookstream-epoch"] == epoch
    (server.directory / "other").mkdir()
    elsewhere = connect(start_server(directory=server.directory / "other"))
    _, other_webhook = monitored(elsewhere)
    assert get(elsewhere, other_webhook).headers["hookstream-epoch"] != epoch
