"""Feed cursors, shared by polling and streaming: parsing, `cursor_ahead`, and `pruned`."""

from __future__ import annotations

import re

from app.errors import BadRequest, CursorAhead
from app.times import micros_ago
from storage.base import LogState, Webhook

# The largest seq a 64-bit integer column holds.
MAX_SEQ = 2**63 - 1
_DIGITS = re.compile(r"\d{1,19}", re.ASCII)


def parse_seq(raw: str, what: str, *, minimum: int = 0, field: str | None = None) -> int:
    """A seq-sized integer from a query parameter or header; 400 naming the field otherwise."""
    if not _DIGITS.fullmatch(raw) or not minimum <= int(raw) <= MAX_SEQ:
        kind = "a positive integer" if minimum == 1 else "a non-negative integer"
        raise BadRequest(f"{what} must be {kind} up to {MAX_SEQ}, not {raw[:40]!r}.", field=field or what)
    return int(raw)


def check_within_log(cursor: int | None, field: str, state: LogState) -> None:
    """409 `cursor_ahead` for a cursor past the newest seq this log ever assigned: it belongs to another log."""
    if cursor is not None and cursor > state.head_seq:
        raise CursorAhead(
            f"{field} {cursor} is beyond the newest seq this log has assigned ({state.head_seq});"
            " the cursor belongs to another log. Restart from afterSeq=0."
        )


def feed_pruned(webhook: Webhook, cursor: int | None, pruned_through: int, retention: float) -> bool:
    """Whether retention may have deleted events of this webhook's feed after `cursor`.

    Retention deletes only events appended before now minus the window; a webhook
    created after that point never had one of them in its feed.
    """
    if cursor is None or pruned_through <= cursor:
        return False
    window_start = micros_ago(retention)
    return webhook.created_at < window_start
