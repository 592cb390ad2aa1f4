"""Turning a producer's event into the envelope the log stores (SPEC §3).

The envelope is serialized once, here, with a hole for the seq the log will
assign; every reader afterwards sends those exact bytes.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import orjson

from app.catalog import EventCatalog, is_valid_type
from app.errors import BadRequest
from app.ids import event_id
from app.times import iso_millis
from storage.base import NewEvent

VERSION = "1.0"
_VERSION_BYTES = VERSION.encode()
EVENT_FIELDS = ("type", "data", "id", "timestamp")
TRUNCATED = ".truncated"
_PRODUCER_ID = re.compile(r"\A[\x21-\x7e]{1,255}\Z")  # \Z: `$` would allow a trailing newline
# Room for the longest seq the log can assign, which is not known before append.
_SEQ_ROOM = 19


def _identifier_key(key: str) -> bool:
    return key == "id" or key.endswith(("_id", "Id"))


def identifier_fields(data: dict[str, Any]) -> dict[str, Any]:
    """Only the identifier fields of `data`, at the top level and one level down."""
    kept: dict[str, Any] = {}
    for key, value in data.items():
        if _identifier_key(key):
            kept[key] = value
        elif isinstance(value, dict):
            inner = {k: v for k, v in value.items() if _identifier_key(k)}
            if inner:
                kept[key] = inner
    return kept


def _timestamp(value: object, field: str, now: str | None) -> str:
    if value is None:
        return now or iso_millis()
    if not isinstance(value, str):
        raise BadRequest(f"{field} must be an ISO 8601 string like 2025-01-15T12:00:00.000Z.", field=field)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(
            f"{field} {value!r} is not an ISO 8601 time like 2025-01-15T12:00:00.000Z.", field=field
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return iso_millis(int(moment.timestamp() * 1_000_000))
    except (OverflowError, ValueError, OSError):
        # An offset can push year 1 or 9999 out of range once converted to UTC.
        raise BadRequest(f"{field} {value!r} is out of the representable range of times.", field=field) from None


def encode(
    event_id: str, event_type: str, account_id: str, timestamp: str, data: bytes, *, minted: bool = True
) -> NewEvent:
    """The envelope bytes around the seq hole; `minted` when hookstream made the id (so it is new)."""
    head = b'{"id":%b,"seq":' % orjson.dumps(event_id)
    tail = b',"type":"%b","account_id":%b,"timestamp":"%b","version":"%b","data":%b}' % (
        event_type.encode(),
        orjson.dumps(account_id),
        timestamp.encode(),
        _VERSION_BYTES,
        data,
    )
    return NewEvent(event_id, event_type, head, tail, minted)


def system_event(event_type: str, account_id: str, data: dict[str, Any]) -> NewEvent:
    """An event hookstream itself writes (a test, a webhook's status change): a new id, the time now."""
    return encode(event_id(), event_type, account_id, iso_millis(), orjson.dumps(data))


def test_event(webhook_id: str, account_id: str) -> NewEvent:
    """The `webhook.test` event that `POST /v2/webhooks/{id}/test` sends."""
    return system_event(
        "webhook.test", account_id, {"webhook_id": webhook_id, "message": "This is a test event from hookstream."}
    )


def build_event(
    raw: object,
    *,
    account_id: str,
    catalog: EventCatalog,
    max_bytes: int,
    where: str = "",
    now: str | None = None,
) -> NewEvent:
    """Validate one producer event and serialize its envelope, truncating it past `max_bytes`.

    `now` is the timestamp of events that bring none: one per request, not one per event.
    """
    if not isinstance(raw, dict):
        raise BadRequest(f"{where or 'the event'} must be a JSON object.", field=where or None)
    for name in raw:
        if name not in EVENT_FIELDS:
            raise BadRequest(
                f"Unknown field {where}{name}; an event has: {', '.join(EVENT_FIELDS)}.", field=f"{where}{name}"
            )
    event_type = raw.get("type")
    if not isinstance(event_type, str) or not is_valid_type(event_type):
        raise BadRequest(
            f"{where}type must be 1-128 characters of letters, digits, '_' and '-', in dot-separated segments"
            f" (like message.created); got {event_type!r}.",
            field=f"{where}type",
        )
    event_type = catalog.canonical(event_type) or event_type
    data = raw.get("data")
    if not isinstance(data, dict):
        raise BadRequest(f"{where}data must be a JSON object.", field=f"{where}data")
    given_id = raw.get("id")
    if given_id is None:
        identifier = event_id()
    elif isinstance(given_id, str) and _PRODUCER_ID.match(given_id):
        identifier = given_id
    else:
        raise BadRequest(f"{where}id must be 1-255 printable ASCII characters without spaces.", field=f"{where}id")
    timestamp = _timestamp(raw.get("timestamp"), f"{where}timestamp", now)
    minted = given_id is None
    try:
        serialized = orjson.dumps(data)
    except TypeError:
        # orjson reads JSON nested up to 1024 levels but writes only up to 254.
        raise BadRequest(f"{where}data is nested too deeply; keep it under 250 levels.", field=f"{where}data") from None
    event = encode(identifier, event_type, account_id, timestamp, serialized, minted=minted)
    if len(event.head) + len(event.tail) + _SEQ_ROOM <= max_bytes:
        return event
    truncated = encode(
        identifier, event_type + TRUNCATED, account_id, timestamp, orjson.dumps(identifier_fields(data)), minted=minted
    )
    if len(truncated.head) + len(truncated.tail) + _SEQ_ROOM > max_bytes:
        raise BadRequest(
            f"{where}data is over {max_bytes} bytes even with only its identifier fields.", field=f"{where}data"
        )
    return truncated
