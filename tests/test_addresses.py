from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.receiver import Receiver, wait_until
from tests.server import Api, Server

# Loopback, private, link-local, metadata and other non-public addresses, in the spellings an attacker tries.
REFUSED_URLS = [
    "https://127.0.0.1/hook",
    "https://2130706433/hook",  # 127.0.0.1 as one decimal number
    "https://0x7f.1/hook",  # hex, short form
    "https://0x7f000001/hook",
    "https://0177.0.0.1/hook",  # octal
    "https://127.1/hook",
    "https://localhost/hook",
    "https://[::1]/hook",
    "https://[::ffff:127.0.0.1]/hook",  # IPv4-mapped IPv6
    "https://[::ffff:a9fe:a9fe]/hook",  # mapped metadata address
    "https://169.254.169.254/latest/meta-data",
    "https://10.0.0.1/hook",
    "https://172.16.5.4/hook",
    "https://192.168.1.1/hook",
    "https://0.0.0.0/hook",
    "https://0/hook",
    "https://100.64.0.1/hook",
    "https://[fe80::1]/hook",
    "https://[fc00::1]/hook",
    "https://[2002:7f00:1::]/hook",  # 6to4 wrapping 127.0.0.1
    "https://224.0.0.1/hook",
]


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with the default policy: https only, public addresses only."""
    server = Server(tmp_path_factory.mktemp("strict")).start()
    yield server
    server.kill()


@pytest.fixture
def strict(strict_server: Server) -> Iterator[Api]:
    client = Api(strict_server)
    yield client
    client.close()


def _create(api: Api, account: str, url: str) -> httpx.Response:
    return api.http.post("/v2/webhooks", json={"account_id": account, "url": url}, headers=api.auth)


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_a_url_on_a_non_public_address_is_refused_in_every_spelling(strict: Api, url: str) -> None:
    account = strict.create_account()
    response = _create(strict, account, url)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["field"] == "url"
    assert "public addresses" in error["message"]


@pytest.mark.parametrize("url", ["http://example.com/hook", "ftp://example.com/hook", "https://user:pw@example.com/"])
def test_plain_http_and_other_schemes_and_credentials_are_refused(strict: Api, url: str) -> None:
    response = _create(strict, strict.create_account(), url)
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "url"


def test_an_update_to_a_private_address_is_refused(strict: Api) -> None:
    account = strict.create_account()
    webhook = strict.create_webhook(account)
    response = strict.http.patch(
        f"/v2/webhooks/{webhook['webhook_id']}", json={"url": "https://10.1.1.1/"}, headers=strict.auth
    )
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "url"


def test_the_address_is_checked_again_at_delivery(start_server, tmp_path: Path) -> None:
    """A URL accepted under a lax policy is refused at delivery once the policy is strict."""
    receiver = Receiver()
    try:
        lax = start_server(env={"HOOKSTREAM_ALLOW_HTTP": "1", "HOOKSTREAM_ALLOW_PRIVATE_URLS": "1"})
        api = Api(lax)
        account = api.create_account()
        webhook = api.create_webhook(account, url=receiver.url + "/hook")
        api.close()
        lax.stop()
        strict = start_server(env={"HOOKSTREAM_ALLOW_HTTP": "1"}, directory=tmp_path)
        api = Api(strict, api.api_key)
        api.ingest(account, {"type": "message_received", "data": {"id": "m1"}})

        def refused() -> list[dict]:
            response = api.http.get(f"/v2/webhooks/{webhook['webhook_id']}/attempts", headers=api.auth)
            return [a for a in response.json()["data"]["attempts"] if a["error"] and "refused" in a["error"]]

        attempts = wait_until(refused, what="a refused attempt")
        assert attempts[0]["status_code"] is None
        assert "loopback" in attempts[0]["error"]
        assert receiver.received() == []
        api.close()
    finally:
        receiver.close()
