"""The customer routes as request descriptions, and reading their answers: shared by both clients."""

from __future__ import annotations

import http
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from hookstream_client._feed import retry_after
from hookstream_client._lines import ACCEPT, lines_page
from hookstream_client.errors import ApiError, HookstreamError, api_error
from hookstream_client.models import LinesPage

if TYPE_CHECKING:  # not at run time: `hookstream export` reads pages with http.client and starts faster without httpx
    import httpx

USER_AGENT = "hookstream-client"
DEFAULT_TIMEOUT = 30.0
# The server's default HOOKSTREAM_HEARTBEAT_SECONDS: a stream silent for three of them is taken for dead.
DEFAULT_HEARTBEAT = 15.0


class Call(NamedTuple):
    """One request: method, path, query parameters, JSON body, extra headers, and a longer read timeout (s)."""

    method: str
    path: str
    params: dict[str, Any] | None = None
    body: dict[str, Any] | None = None
    headers: dict[str, str] | None = None
    read_timeout: float | None = None


def body_of(**fields: Any) -> dict[str, Any]:
    """A JSON body of the fields that were given (None means: not given)."""
    return {name: value for name, value in fields.items() if value is not None}


def error_from(response: httpx.Response) -> ApiError:
    """The exception for an error answer, with the server's code, message and field."""
    return error_of(response.status_code, response.headers, response.content)


def error_of(status: int, headers: Mapping[str, str], body: bytes) -> ApiError:
    """The exception for an error answer given as its status, headers and body."""
    code = message = field = None
    try:
        error = json.loads(body)["error"]
        code, message, field = error.get("code"), error.get("message"), error.get("field")
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    if not message:
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = ""
        message = f"The server answered {status} {reason}".rstrip() + "."
    return api_error(status, code, message, field, retry_after(headers))


def lines_call(webhook_id: str, after: int | None, limit: int | None, wait: float | None) -> Call:
    """One polling page asked for as JSON Lines (read its answer with `lines_answer`); a long poll reads longer."""
    params = body_of(afterSeq=after, limit=limit, wait=wait)
    return Call(
        "GET",
        f"/v2/webhooks/{webhook_id}/events",
        params,
        headers={"accept": ACCEPT},
        read_timeout=(wait or 0.0) + DEFAULT_TIMEOUT,
    )


def lines_answer(response: httpx.Response) -> LinesPage:
    """The JSON Lines page of a `lines_call`, or a JSON page cut into the same lines; raises any error."""
    if response.status_code != 200:
        raise error_from(response)
    return lines_page(response.headers.get("content-type"), response.headers, response.content)


def answer(response: httpx.Response, *, whole: bool = False) -> Any:
    """The `data` of a success answer (the whole body when `whole`); raises the error of any other."""
    if response.status_code >= 400:
        raise error_from(response)
    try:
        body = json.loads(response.content)
    except ValueError:
        raise HookstreamError(
            f"The server answered {response.status_code} with a body that is not JSON.", status=response.status_code
        ) from None
    return body if whole else body.get("data")


def base_url_of(base_url: str) -> str:
    url = base_url.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"base_url must start with http:// or https://, not {base_url!r}")
    return url


def headers_for(api_key: str) -> dict[str, str]:
    return {"x-api-key": api_key, "user-agent": USER_AGENT}


def transport_message(exc: httpx.TransportError, base_url: str) -> str:
    """A sentence saying what went wrong talking to the server."""
    import httpx  # already imported by the client that met `exc`

    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return f"Cannot reach the hookstream server at {base_url}: {exc or type(exc).__name__}."
    if isinstance(exc, httpx.TimeoutException):
        return f"The hookstream server at {base_url} did not answer in time."
    return f"The connection to the hookstream server at {base_url} broke: {exc or type(exc).__name__}."


def account_call(account_id: str | None, name: str | None, connector: str | None) -> Call:
    return Call("POST", "/v2/accounts", body=body_of(account_id=account_id, name=name, connector=connector))
