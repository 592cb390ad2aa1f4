from __future__ import annotations

import re
import time

from app.ids import event_id, webhook_id

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def ulid_millis(identifier: str) -> int:
    value = 0
    for char in identifier.removeprefix("evt_"):
        value = value * 32 + CROCKFORD.index(char)
    return value >> 80


def test_event_ids_are_ulids_carrying_the_time_they_were_made() -> None:
    before = time.time_ns() // 1_000_000
    identifier = event_id()
    after = time.time_ns() // 1_000_000
    assert re.fullmatch(r"evt_[0-7][0-9A-HJKMNP-TV-Z]{25}", identifier)
    assert before <= ulid_millis(identifier) <= after


def test_event_ids_sort_by_time_and_never_repeat() -> None:
    first = [event_id() for _ in range(1000)]
    time.sleep(0.002)
    second = [event_id() for _ in range(1000)]
    assert len(set(first + second)) == 2000
    assert max(first) < min(second)


def test_webhook_ids_are_24_lowercase_hex_characters() -> None:
    assert re.fullmatch(r"[0-9a-f]{24}", webhook_id())
