"""One spelling of a number for every numeric query parameter and header: ASCII digits (and a fraction for seconds)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server import Api, Server

# What Python's int() or float() would take, and no client means as a number.
BAD_SPELLINGS = [
    " 5",
    "5 ",
    "1_0",
    "\u0665",  # ARABIC-INDIC DIGIT FIVE
    "\uff15",  # FULLWIDTH DIGIT FIVE
    "+5",
    "-5",
    "1e1",
    "0x10",
    "nan",
    "inf",
    "",
]
BAD_SECONDS = [*BAD_SPELLINGS, "Infinity", ".5", "5.", "1.5e1", "61", "60.5"]
BAD_INTEGERS = [*BAD_SPELLINGS, "5.0", "1.5"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # Custom webhooks (for `attempts`) pointing at a local port.
    env = {"HOOKSTREAM_ALLOW_HTTP": "1", "HOOKSTREAM_ALLOW_PRIVATE_URLS": "1"}
    server = Server(Path(tmp_path_factory.mktemp("numbers")), env).start()
    yield server
    server.kill()


@pytest.fixture(scope="module")
def api(server: Server) -> Iterator[Api]:
    client = Api(server)
    yield client
    client.close()


@pytest.fixture(scope="module")
def hosted(api: Api) -> str:
    return str(api.create_webhook(api.create_account())["webhook_id"])


@pytest.fixture(scope="module")
def custom(api: Api) -> str:
    return str(api.create_webhook(api.create_account(), url="http://127.0.0.1:9/hook")["webhook_id"])


def assert_400_naming(response: object, field: str) -> None:
    assert response.status_code == 400, response.text  # type: ignore[attr-defined]
    error = response.json()["error"]  # type: ignore[attr-defined]
    assert error["field"] == field
    assert field in error["message"]


@pytest.mark.parametrize("raw", BAD_INTEGERS)
@pytest.mark.parametrize("name", ["afterSeq", "limit"])
def test_polling_refuses_every_other_spelling_of_an_integer(api: Api, hosted: str, name: str, raw: str) -> None:
    response = api.http.get(f"/v2/webhooks/{hosted}/events", params={name: raw}, headers=api.auth)
    assert_400_naming(response, name)


@pytest.mark.parametrize("raw", BAD_SECONDS)
def test_polling_refuses_every_other_spelling_of_wait(api: Api, hosted: str, raw: str) -> None:
    response = api.http.get(f"/v2/webhooks/{hosted}/events", params={"afterSeq": 0, "wait": raw}, headers=api.auth)
    assert_400_naming(response, "wait")


@pytest.mark.parametrize("raw", ["0", "0.25", "1", "0.0"])
def test_wait_takes_digits_with_an_optional_fraction(api: Api, hosted: str, raw: str) -> None:
    response = api.http.get(f"/v2/webhooks/{hosted}/events", params={"afterSeq": 0, "wait": raw}, headers=api.auth)
    assert response.status_code == 200, response.text
    assert response.json()["events"] == []


@pytest.mark.parametrize("raw", BAD_INTEGERS)
@pytest.mark.parametrize("name", ["limit", "before"])
def test_attempts_refuse_every_other_spelling_of_an_integer(api: Api, custom: str, name: str, raw: str) -> None:
    response = api.http.get(f"/v2/webhooks/{custom}/attempts", params={name: raw}, headers=api.auth)
    assert_400_naming(response, name)


@pytest.mark.parametrize("raw", BAD_INTEGERS)
def test_the_stream_refuses_every_other_spelling_of_after_seq(api: Api, hosted: str, raw: str) -> None:
    response = api.http.get(f"/v2/webhooks/{hosted}/stream", params={"afterSeq": raw}, headers=api.auth)
    assert_400_naming(response, "afterSeq")


# A header value cannot begin or end with spaces on the wire, nor be empty and still mean "resume".
@pytest.mark.parametrize("raw", [b for b in BAD_INTEGERS if b and b == b.strip()] + ["5\xa0", "\xa05"])
def test_the_stream_refuses_every_other_spelling_of_last_event_id(api: Api, hosted: str, raw: str) -> None:
    value = raw.encode("utf-8") if any(ord(char) > 0xFF for char in raw) else raw.encode("latin-1")
    response = api.http.get(
        f"/v2/webhooks/{hosted}/stream", headers=[("x-api-key", api.api_key), ("last-event-id", value)]
    )
    assert_400_naming(response, "Last-Event-ID")
