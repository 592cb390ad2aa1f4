from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import time

import pytest
from standardwebhooks import Webhook as Verifier
from standardwebhooks.webhooks import WebhookVerificationError

from app.signing import new_secret, secret_key, signed_request


def test_a_signed_request_passes_the_standardwebhooks_verifier() -> None:
    secret = new_secret()
    envelope = b'{"id":"evt_1","seq":7,"type":"message_received","data":{"text":"h\xc3\xa9"}}'
    body, headers = signed_request([secret], "evt_1", envelope, int(time.time()), compressed=False)
    assert body == envelope
    assert Verifier(secret).verify(body, headers)["seq"] == 7


def test_another_secret_does_not_verify() -> None:
    body, headers = signed_request([new_secret()], "evt_1", b"{}", int(time.time()), compressed=False)
    with pytest.raises(WebhookVerificationError):
        Verifier(new_secret()).verify(body, headers)


def test_a_compressed_request_is_signed_over_the_gzip_bytes() -> None:
    secret = new_secret()
    envelope = b'{"id":"evt_2","seq":8}'
    timestamp = int(time.time())
    body, headers = signed_request([secret], "evt_2", envelope, timestamp, compressed=True)
    assert headers["content-encoding"] == "gzip"
    assert gzip.decompress(body) == envelope
    expected = hmac.new(secret_key(secret), b"evt_2.%d.%s" % (timestamp, body), hashlib.sha256).digest()
    assert headers["webhook-signature"] == "v1," + base64.b64encode(expected).decode()


def test_retries_of_a_compressed_event_are_byte_identical() -> None:
    secret = new_secret()
    first, _ = signed_request([secret], "evt_3", b'{"seq":1}', 1, compressed=True)
    time.sleep(1.1)  # gzip would otherwise stamp the current second into its header
    again, _ = signed_request([secret], "evt_3", b'{"seq":1}', 1, compressed=True)
    assert first == again


def test_secrets_are_whsec_and_24_random_bytes() -> None:
    secrets = {new_secret() for _ in range(100)}
    assert len(secrets) == 100
    for secret in secrets:
        assert secret.startswith("whsec_")
        assert len(secret_key(secret)) == 24
