"""Property: random create/stop/start/patch/delete/ingest sequences give each webhook exactly the SPEC's feed.

The model is the SPEC's definition (§1, §4, §5.3) written as plainly as possible: an event joins
a webhook's feed when, at the moment it is appended, the webhook is active and one of its filters
matches the event's canonical type (or that type without `.truncated`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.server import Api, Server

ALIASES = {"message_edited": "message.update", "mail_opened": "tracking.open"}
FILTERS = [
    ["all"],
    ["message.new"],
    ["message.*"],
    ["email.new", "message.update"],
    ["message.create.*.chat"],
    ["mail_opened"],
]
TYPES = [
    "message.new",
    "message.update",
    "message_edited",
    "message.new.truncated",
    "email.new",
    "tracking.open",
    "mail_opened",
    "message.create.bot.chat",
    "message.create.contact.card",
    "calendar.created",
]


def model_matches(filters: list[str], event_type: str) -> bool:
    """The SPEC's filter rule, independently of the app's regex implementation."""
    candidates = [event_type]
    if event_type.endswith(".truncated"):
        candidates.append(event_type.removesuffix(".truncated"))
    for raw in filters:
        wanted = ALIASES.get(raw, raw)
        if wanted == "all":
            return True
        for candidate in candidates:
            want, have = wanted.split("."), candidate.split(".")
            if len(want) == len(have) and all(w in ("*", h) for w, h in zip(want, have, strict=True)):
                return True
    return False


@dataclass
class ModelWebhook:
    id: str
    filters: list[str]
    active: bool = True
    deleted: bool = False
    feed: list[tuple[int, str]] = field(default_factory=list)


operations = st.one_of(
    st.tuples(st.just("create"), st.sampled_from(range(len(FILTERS)))),
    st.tuples(st.just("stop"), st.integers(0, 7)),
    st.tuples(st.just("start"), st.integers(0, 7)),
    st.tuples(st.just("patch"), st.integers(0, 7), st.sampled_from(range(len(FILTERS)))),
    st.tuples(st.just("delete"), st.integers(0, 7)),
    st.tuples(st.just("ingest"), st.lists(st.sampled_from(TYPES), min_size=1, max_size=4)),
    st.tuples(st.just("ingest"), st.lists(st.sampled_from(TYPES), min_size=1, max_size=4)),
)


@pytest.fixture(scope="module")
def customer(shared_server: Server) -> Iterator[Api]:
    """One customer for every example; each example uses a fresh account."""
    client = Api(shared_server)
    yield client
    client.close()


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    first=st.lists(st.sampled_from(range(len(FILTERS))), min_size=1, max_size=3),
    steps=st.lists(operations, min_size=4, max_size=24),
)
def test_random_webhook_lifecycles_give_each_webhook_exactly_its_spec_feed(
    customer: Api, first: list[int], steps: list[tuple[Any, ...]]
) -> None:
    api = customer
    account = api.create_account()
    hooks: list[ModelWebhook] = []
    # Start with some webhooks, so most examples exercise feeds rather than an unmonitored account.
    for step in [("create", index) for index in first] + steps:
        kind = step[0]
        live = [hook for hook in hooks if not hook.deleted]
        if kind == "create":
            created = api.create_webhook(account, events=FILTERS[step[1]])
            hooks.append(ModelWebhook(created["webhook_id"], FILTERS[step[1]]))
        elif kind == "ingest":
            events = [{"type": t, "data": {"n": i}} for i, t in enumerate(step[1])]
            response = api.http.post(f"/v2/accounts/{account}/events", json={"events": events}, headers=api.admin)
            if not any(hook.active for hook in live):
                assert response.status_code == 409, response.text
                continue
            assert response.status_code == 201, response.text
            for raw_type, appended in zip(step[1], response.json()["data"]["events"], strict=True):
                canonical = ALIASES.get(raw_type, raw_type)
                for hook in live:
                    if hook.active and model_matches(hook.filters, canonical):
                        hook.feed.append((appended["seq"], canonical))
        elif live:
            hook = live[step[1] % len(live)]
            url = f"/v2/webhooks/{hook.id}"
            if kind == "stop":
                response = api.http.post(url + "/stop", headers=api.auth)
                hook.active = False
            elif kind == "start":
                response = api.http.post(url + "/start", headers=api.auth)
                hook.active = True
            elif kind == "patch":
                response = api.http.patch(url, json={"events": FILTERS[step[2]]}, headers=api.auth)
                hook.filters = FILTERS[step[2]]
            else:
                response = api.http.delete(url, headers=api.auth)
                hook.deleted = True
            assert response.status_code == 200, response.text
            if not hook.deleted:
                assert response.json()["data"]["is_active"] is hook.active

    for hook in hooks:
        if hook.deleted:
            assert api.http.get(f"/v2/webhooks/{hook.id}/events", headers=api.auth).status_code == 404
            continue
        feed = [(event["seq"], event["type"]) for event in api.feed(hook.id, limit=3)]
        assert feed == hook.feed, (hook.filters, steps)
    got = api.http.get(f"/v2/accounts/{account}", headers=api.auth).json()["data"]
    assert got["active_webhooks"] == sum(1 for hook in hooks if hook.active and not hook.deleted)
