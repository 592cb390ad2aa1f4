"""`/openapi.json` is valid OpenAPI 3.1 and true to the server: answers conform to it, and schemathesis agrees.

The schemathesis run is bounded for CI (HOOKSTREAM_FUZZ_EXAMPLES cases per operation and phase,
default 20, about two minutes on two cores); raise it by hand for a longer run.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from starlette.routing import Match, Route

from app import errors
from app.main import create_app
from app.settings import Settings
from tests.server import ADMIN_TOKEN, Api, Server, free_port

FUZZ_CONFIG = Path(__file__).with_name("schemathesis.toml")
FUZZ_HOOKS = Path(__file__).with_name("fuzz_hooks.py")


def defined_codes() -> set[str]:
    return {
        cls.code
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.HookstreamError) and cls.__module__ == errors.__name__
    }


def documented_codes(document: dict[str, Any]) -> dict[tuple[str, str, str], set[str]]:
    """(path, method, status) → the error codes the document lists for it."""
    found: dict[tuple[str, str, str], set[str]] = {}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                schema = response.get("content", {}).get("application/json", {}).get("schema", {})
                codes = schema.get("properties", {}).get("error", {}).get("properties", {}).get("code", {})
                if "enum" in codes:
                    found[(path, method, status)] = set(codes["enum"])
    return found


class Conformance:
    """Checks real answers against the document: the status is documented, the body fits its schema."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.routes = [route for route in create_app(Settings()).routes if isinstance(route, Route)]
        self.seen: set[tuple[str, str, int]] = set()

    def template(self, method: str, path: str) -> str:
        scope = {"type": "http", "path": path, "method": method, "root_path": ""}
        for route in self.routes:
            if route.matches(scope)[0] is Match.FULL:
                return route.path
        raise AssertionError(f"no route for {method} {path}")

    def check(self, response: httpx.Response) -> httpx.Response:
        method = response.request.method
        template = self.template(method, response.request.url.path)
        operation = self.document["paths"][template][method.lower()]
        status = str(response.status_code)
        assert status in operation["responses"], f"{method} {template} answered {status}, undocumented"
        self.seen.add((template, method, response.status_code))
        content = operation["responses"][status].get("content")
        if content is None:
            assert not response.content, f"{method} {template} {status} has a body, documented as none"
            return response
        media_type = response.headers["content-type"].split(";")[0]
        assert media_type in content, f"{method} {template} {status} is {media_type}, documented as {list(content)}"
        if media_type == "application/json":
            schema = {**content[media_type]["schema"], "components": self.document["components"]}
            problems = [error.message for error in Draft202012Validator(schema).iter_errors(response.json())]
            assert not problems, f"{method} {template} {status}: {problems} in {response.text[:500]}"
        return response


@pytest.fixture
def document(api: Api) -> dict[str, Any]:
    response = api.http.get("/openapi.json")
    assert response.status_code == 200
    parsed: dict[str, Any] = response.json()
    return parsed


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1.")
    validate(document)


def test_every_operation_has_a_unique_id_and_documents_its_errors(document: dict[str, Any]) -> None:
    ids = [operation["operationId"] for operations in document["paths"].values() for operation in operations.values()]
    assert len(ids) == len(set(ids))
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            if {"apiKey": []} in operation["security"]:
                assert {"401", "429"} <= set(responses), f"{method} {path}"
            if "requestBody" in operation:
                assert {"400", "413"} <= set(responses), f"{method} {path}"
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    assert response["content"]["application/json"]["schema"]["allOf"] == [
                        {"$ref": "#/components/schemas/Error"}
                    ]


def test_every_documented_error_code_is_one_the_server_defines(document: dict[str, Any]) -> None:
    documented = set().union(*documented_codes(document).values())
    assert documented <= defined_codes()
    # Every specific code a route raises appears somewhere; the generic parents and router errors need not.
    generic = {"internal_error", "http_error", "not_found", "conflict", "too_many_requests", "unauthorized"}
    generic |= {"route_not_found", "method_not_allowed", "not_ready"} - documented
    assert defined_codes() - generic <= documented


def test_the_filters_the_document_lists_are_exactly_those_the_server_accepts(
    api: Api, document: dict[str, Any]
) -> None:
    listed = document["paths"]["/v2/webhooks"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    values = listed["properties"]["events"]["items"]["enum"]
    assert {"all", "message.*", "message.create.*.chat", "*"} <= set(values)
    account = api.create_account()
    refused = []
    for value in values[::7]:
        response = api.http.post("/v2/webhooks", json={"account_id": account, "events": [value]}, headers=api.auth)
        if response.status_code != 201:
            refused.append((value, response.text))
    assert refused == []
    for value in ("message.*.*.*.*.*", "nothing.here", "message.new.truncated", "*.*.*.*.*.*"):
        response = api.http.post("/v2/webhooks", json={"account_id": account, "events": [value]}, headers=api.auth)
        assert response.status_code == 400 and value not in values, value


def test_answers_across_every_route_are_documented_with_their_bodies(
    start_server: Callable[..., Server], connect: Callable[..., Api]
) -> None:
    server = start_server({"HOOKSTREAM_ALLOW_HTTP": "1", "HOOKSTREAM_ALLOW_PRIVATE_URLS": "1"})
    api = connect(server)
    document = orjson.loads(api.http.get("/openapi.json").content)
    conform = Conformance(document)
    http, auth, admin = api.http, api.auth, api.admin

    def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
        return conform.check(http.request(method, path, **kwargs))

    assert call("GET", "/healthz").status_code == 200
    assert call("GET", "/readyz").status_code == 200
    assert call("GET", "/metrics").status_code == 200
    created = call("POST", "/v2/admin/api-keys", json={"name": "other"}, headers=admin)
    assert created.status_code == 201
    assert call("GET", "/v2/admin/api-keys", headers=admin).status_code == 200
    assert call("GET", "/v2/admin/api-keys", headers={"authorization": "Bearer nope"}).status_code == 401
    assert call("DELETE", f"/v2/admin/api-keys/{created.json()['data']['id']}", headers=admin).status_code == 200
    assert call("DELETE", "/v2/admin/api-keys/key_unknown", headers=admin).status_code == 404
    assert call("POST", "/v2/admin/api-keys", json={"name": ""}, headers=admin).status_code == 400

    assert call("POST", "/v2/accounts", headers=auth).status_code == 201
    assert call("POST", "/v2/accounts", json={"account_id": "acc_doc", "name": "A"}, headers=auth).status_code == 201
    assert call("POST", "/v2/accounts", json={"account_id": "acc_doc"}, headers=auth).status_code == 409
    assert call("POST", "/v2/accounts", content=b"{", headers=auth).status_code == 400
    assert call("POST", "/v2/accounts", json={"connector": "nope"}, headers=auth).status_code == 400
    assert call("GET", "/v2/accounts", headers=auth).status_code == 200
    assert call("GET", "/v2/accounts", headers={"x-api-key": "hk_wrong"}).status_code == 401
    assert call("GET", "/v2/accounts/acc_doc", headers=auth).status_code == 200
    assert call("GET", "/v2/accounts/acc_none", headers=auth).status_code == 404
    assert call("GET", "/v2/accounts/acc_doc/usage", headers=auth).status_code == 200
    assert call("GET", "/v2/event-types", headers=auth).status_code == 200
    assert call("POST", "/v2/webhooks/mock-payload", json={"type": "message.new"}, headers=auth).status_code == 200
    assert call("POST", "/v2/webhooks/mock-payload", json={"type": "x"}, headers=auth).status_code == 400

    event = {"type": "message.new", "data": {"id": "m1"}}
    assert call("POST", "/v2/accounts/acc_doc/events", json=event, headers=admin).status_code == 409
    hosted = call("POST", "/v2/webhooks", json={"account_id": "acc_doc"}, headers=auth)
    assert hosted.status_code == 201
    hosted_id = hosted.json()["data"]["webhook_id"]
    url = f"http://127.0.0.1:{free_port()}/closed"
    custom = call("POST", "/v2/webhooks", json={"account_id": "acc_doc", "url": url}, headers=auth)
    assert custom.status_code == 201
    custom_id = custom.json()["data"]["webhook_id"]
    bad_url = {"account_id": "acc_doc", "url": "ftp://example.com"}
    assert call("POST", "/v2/webhooks", json=bad_url, headers=auth).status_code == 400
    assert call("POST", "/v2/webhooks", json={"account_id": "acc_none"}, headers=auth).status_code == 404
    assert call("GET", "/v2/webhooks", params={"account_id": "acc_doc"}, headers=auth).status_code == 200
    assert call("POST", "/v2/accounts/acc_doc/events", json=event, headers=admin).status_code == 201
    batch = {"events": [event, {"type": "message.new", "data": {}, "id": "evt-doc-1"}]}
    assert call("POST", "/v2/accounts/acc_doc/events", json=batch, headers=admin).status_code == 201
    assert call("POST", "/v2/accounts/acc_doc/events", json={"events": []}, headers=admin).status_code == 400
    assert call("POST", "/v2/accounts/acc_none/events", json=event, headers=admin).status_code == 404
    too_large = b'{"type": "a", "data": {"x": "' + b"x" * (11 * 1024 * 1024) + b'"}}'
    assert call("POST", "/v2/accounts/acc_doc/events", content=too_large, headers=admin).status_code == 413

    webhook = f"/v2/webhooks/{hosted_id}"
    assert call("GET", webhook, headers=auth).status_code == 200
    assert call("PATCH", webhook, json={"events": ["message.*"]}, headers=auth).status_code == 200
    assert call("PUT", webhook, json={"url": url}, headers=auth).status_code == 400
    assert call("GET", f"{webhook}/events", params={"afterSeq": 0}, headers=auth).status_code == 200
    assert call("GET", f"{webhook}/events", params={"afterSeq": 10**9}, headers=auth).status_code == 409
    assert call("GET", f"{webhook}/events", params={"limit": 0}, headers=auth).status_code == 400
    assert call("POST", f"{webhook}/test", headers=auth).status_code == 201
    assert call("POST", f"/v2/webhooks/{custom_id}/test", headers=auth).status_code == 200
    assert call("POST", f"{webhook}/rotate-secret", headers=auth).status_code == 400
    assert call("POST", f"/v2/webhooks/{custom_id}/rotate-secret", headers=auth).status_code == 200
    assert call("GET", f"/v2/webhooks/{custom_id}/attempts", headers=auth).status_code == 200
    assert call("GET", f"/v2/webhooks/{custom_id}/attempts?outcome=pending", headers=auth).status_code == 200
    assert call("GET", f"/v2/webhooks/{custom_id}/undelivered", headers=auth).status_code == 200
    rotated = call("POST", f"/v2/webhooks/{custom_id}/rotate-secret", json={"overlap": "1h"}, headers=auth)
    assert rotated.status_code == 200 and rotated.json()["data"]["previous_expires_at"] is not None
    since = {"since": "2026-01-01T00:00:00Z"}
    assert call("POST", f"/v2/webhooks/{custom_id}/recover", json=since, headers=auth).status_code == 200
    signed = {"account_id": "acc_doc", "url": url, "signature_scheme": "ed25519", "max_rate": 5, "ordering": "strict"}
    ed25519 = call("POST", "/v2/webhooks", json=signed, headers=auth)
    assert ed25519.status_code == 201 and ed25519.json()["data"]["public_key"].startswith("whpk_")
    assert call("POST", f"/v2/webhooks/{custom_id}/recover", json={"afterSeq": 0}, headers=auth).status_code == 200
    recover_ahead = {"afterSeq": 10**9}
    assert call("POST", f"/v2/webhooks/{custom_id}/recover", json=recover_ahead, headers=auth).status_code == 409
    token = call("POST", f"{webhook}/stream-token", headers=auth)
    assert token.status_code == 200
    with http.stream("GET", f"{webhook}/stream", params={"token": token.json()["data"]["token"]}) as stream:
        assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
        conform.seen.add((conform.template("GET", f"{webhook}/stream"), "GET", 200))
    assert call("GET", f"{webhook}/stream", headers={**auth, "last-event-id": "x"}).status_code == 400
    assert call("GET", f"{webhook}/stream", params={"token": "forged"}).status_code == 401
    assert call("POST", f"{webhook}/stop", headers=auth).status_code == 200
    assert call("GET", f"{webhook}/stream", headers=auth).status_code == 204
    assert call("POST", f"{webhook}/start", headers=auth).status_code == 200
    assert call("DELETE", webhook, headers=auth).status_code == 200
    assert call("GET", webhook, headers=auth).status_code == 404
    assert call("DELETE", "/v2/accounts/acc_doc", headers=auth).status_code == 200

    operations = {(path, method.upper()) for path, ops in document["paths"].items() for method in ops}
    exercised = {(path, method) for path, method, _ in conform.seen}
    assert operations - exercised == {("/openapi.json", "GET")}


def test_a_json_lines_page_is_documented_line_by_line_and_header_by_header(document: dict[str, Any], api: Api) -> None:
    account = api.create_account()
    webhook = api.create_webhook(account)["webhook_id"]
    api.ingest(account, {"type": "message.new", "data": {"id": "m1"}}, {"type": "message.new", "data": {"id": "m2"}})
    response = document["paths"]["/v2/webhooks/{webhook_id}/events"]["get"]["responses"]["200"]
    envelope = Draft202012Validator({**document["components"]["schemas"]["Envelope"], **document})
    for media in ("application/x-ndjson", "application/jsonl"):
        for params in ({"afterSeq": 0, "limit": 1}, {"afterSeq": 2}):
            page = api.http.get(f"/v2/webhooks/{webhook}/events", params=params, headers={**api.auth, "accept": media})
            assert page.status_code == 200 and page.headers["content-type"] == media
            assert response["content"][media]["schema"]["type"] == "string"
            for line in page.content.splitlines():
                assert not list(envelope.iter_errors(orjson.loads(line))), line
            for name, header in response["headers"].items():
                value = page.headers.get(name)
                assert value is not None or not header.get("required"), name
                if value is not None:
                    typed = {"boolean": lambda v: v == "true", "integer": int}.get(header["schema"].get("type"), str)
                    assert value in ("true", "false") or header["schema"].get("type") != "boolean", name
                    problems = list(Draft202012Validator(header["schema"]).iter_errors(typed(value)))
                    assert not problems, (name, value, problems)
            documented = {name.lower() for name in response["headers"]}
            assert {name for name in page.headers if name.startswith("hookstream-")} <= documented


def test_schemathesis_finds_no_server_error_and_no_answer_outside_the_document(
    start_server: Callable[..., Server], connect: Callable[..., Api], tmp_path: Path
) -> None:
    """Every operation, every phase (examples, coverage, fuzzing, stateful links), every check."""
    server = start_server({"HOOKSTREAM_ALLOW_HTTP": "1", "HOOKSTREAM_ALLOW_PRIVATE_URLS": "1"})
    api = connect(server)
    account = api.create_account("acc_fuzz")
    api.create_webhook(account)
    # A custom webhook for the operations only they have; its url is a closed port, so deliveries fail fast.
    custom = api.create_webhook(account, url=f"http://127.0.0.1:{free_port()}/closed")
    examples = os.environ.get("HOOKSTREAM_FUZZ_EXAMPLES", "20")
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(FUZZ_CONFIG),
        "run",
        f"{server.url}/openapi.json",
        "--max-examples",
        examples,
        "--workers",
        "2",
        "--no-color",
        "--report",
        "json",
        "--report-dir",
        str(tmp_path / "report"),
    ]
    if os.environ.get("HOOKSTREAM_FUZZ_SEED"):
        command += ["--seed", os.environ["HOOKSTREAM_FUZZ_SEED"]]
    env = {
        **os.environ,
        "HOOKSTREAM_FUZZ_API_KEY": api.api_key,
        "HOOKSTREAM_FUZZ_ADMIN_TOKEN": ADMIN_TOKEN,
        "HOOKSTREAM_FUZZ_HOOKS": str(FUZZ_HOOKS),
        "HOOKSTREAM_FUZZ_CUSTOM_WEBHOOK_ID": custom["webhook_id"],
    }
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900, check=False)
    (report,) = (tmp_path / "report").glob("*.json")
    figures = json.loads(report.read_text())  # not orjson: the seed is a 128-bit integer
    cases, operations = figures["test_cases"], figures["operations"]
    print(
        f"schemathesis: {operations['tested']}/{operations['total']} operations, {cases['generated']} cases,"
        f" {cases['unique_failures']} failures, {cases['errored']} errored, seed {figures['seed']},"
        f" {figures['running_time']:.0f}s"
    )
    sections = [run.stdout.find(heading) for heading in ("=== ERRORS", "=== FAILURES")]
    details = run.stdout[min([start for start in sections if start >= 0], default=0) :]
    assert run.returncode == 0, details[-30000:] + run.stderr[-5000:] + "\nserver log:\n" + server.log()[-5000:]
    assert "Traceback" not in server.log()
