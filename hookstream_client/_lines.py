"""Polling pages as JSON Lines: the server's own `application/x-ndjson` page, or a JSON page cut into lines.

A JSON Lines page's body is the feed's envelopes, one a line, the bytes the server stored; the page's
own fields (hasMore, lastSeq, epoch, pruned) are `Hookstream-*` headers. A server that predates it
answers the JSON page to the same request (`ACCEPT` admits JSON too), and the page is then cut into
lines here: from the server's own bytes when the parsed page proves where the envelopes end, else
by serializing each envelope again. Either way the caller gets the same `LinesPage`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from hookstream_client.errors import HookstreamError
from hookstream_client.models import LinesPage

LINES_TYPES = ("application/x-ndjson", "application/jsonl")
# JSON Lines first; a server without it answers JSON, which is read too.
ACCEPT = "application/x-ndjson, application/json;q=0.5"

loads: Callable[[bytes], Any]
dumps: Callable[[Any], bytes]
try:  # orjson, where installed (the server's install has it), parses and writes pages several times faster.
    import orjson

    loads, dumps = orjson.loads, orjson.dumps
except ImportError:  # pragma: no cover - the client alone
    loads = json.loads

    def dumps(value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


PAGE_HEAD = b'{"success":true,"events":['
PAGE_END = b'],"hasMore":'
# Between two envelopes of a JSON page: the end of one's `data` object and its own, then the next's first key.
BETWEEN = b'}},{"id":"'


class Headers(Protocol):
    """Response headers looked up by name, whatever the case (httpx's and http.client's both are)."""

    def get(self, name: str, default: None = None, /) -> str | None: ...


def is_lines(content_type: str | None) -> bool:
    """Whether a response's Content-Type is one of the JSON Lines types."""
    return content_type is not None and content_type.partition(";")[0].strip().lower() in LINES_TYPES


def lines_page(content_type: str | None, headers: Headers, body: bytes) -> LinesPage:
    """A polling page's answer (200) as a `LinesPage`, whether the server sent JSON Lines or JSON."""
    try:
        return _from_lines(headers, body) if is_lines(content_type) else _from_json(body)
    except (ValueError, KeyError, TypeError, IndexError) as exc:  # orjson's and json's decode errors are ValueErrors
        raise HookstreamError(f"The server's polling page is not a page of envelopes: {exc}") from None


def _from_lines(headers: Headers, body: bytes) -> LinesPage:
    more = headers.get("hookstream-has-more")
    epoch = headers.get("hookstream-epoch")
    if more not in ("true", "false") or epoch is None:
        raise HookstreamError("The server's JSON Lines page lacks its Hookstream-Has-More or Hookstream-Epoch header.")
    # The server's count, when it sends one, spares a scan of half a megabyte a page.
    raw_count = headers.get("hookstream-count")
    count = int(raw_count) if raw_count is not None and raw_count.isdigit() else body.count(b"\n")
    first = last = None
    if count:
        if not body.endswith(b"\n"):
            raise HookstreamError("The server's JSON Lines page was cut short: its last line has no end.")
        # The first and last lines only: they prove the page continues the cursor and ends where its header says.
        first = int(loads(body[: body.index(b"\n")])["seq"])
        last = int(loads(body[body.rfind(b"\n", 0, -1) + 1 :])["seq"])
        if headers.get("hookstream-last-seq") != str(last):
            raise HookstreamError(f"The server's JSON Lines page ends at seq {last}, not at its Hookstream-Last-Seq.")
    return LinesPage(
        lines=body,
        count=count,
        first_seq=first,
        last_seq=last,
        has_more=more == "true",
        epoch=epoch,
        pruned=headers.get("hookstream-pruned") == "true",
    )


def _from_json(body: bytes) -> LinesPage:
    page = loads(body)
    events = page["events"]
    return LinesPage(
        lines=(cut_lines(body, len(events)) or b"".join([dumps(event) + b"\n" for event in events])) if events else b"",
        count=len(events),
        first_seq=int(events[0]["seq"]) if events else None,
        last_seq=page.get("lastSeq"),
        has_more=bool(page["hasMore"]),
        epoch=page.get("epoch", ""),
        pruned=bool(page.get("pruned", False)),
    )


def cut_lines(body: bytes, count: int) -> bytes | None:
    """A JSON page's envelopes as JSON Lines, cut from the server's own bytes; None when they cannot be cut safely.

    Every boundary between envelopes reads `BETWEEN` (`data` is an envelope's last key and an object),
    but so may bytes inside an event's data. When the page holds exactly `count - 1` of them, where
    `count` is the number of events the parsed page has, they are the boundaries and nothing else.
    """
    end = body.rfind(PAGE_END)
    if not body.startswith(PAGE_HEAD) or end == -1:
        return None
    region = body[len(PAGE_HEAD) : end]
    if region.count(BETWEEN) != count - 1:
        return None
    return region.replace(BETWEEN, b'}}\n{"id":"') + b"\n"
