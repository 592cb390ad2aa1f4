from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.catalog import (
    MAX_FILTERS,
    CatalogError,
    EventCatalog,
    EventType,
    filter_matches,
    is_valid_type,
)
from app.errors import BadRequest

CATALOG = EventCatalog.load(None)


def reference_matches(filters: tuple[str, ...], event_type: str) -> bool:
    """Segment-by-segment reading of SPEC §4, written independently of the regex in app.catalog."""

    def one(pattern: str, name: str) -> bool:
        want, have = pattern.split("."), name.split(".")
        return len(want) == len(have) and all(w == "*" or w == h for w, h in zip(want, have, strict=True))

    for pattern in filters:
        if pattern == "all" or one(pattern, event_type):
            return True
        if event_type.endswith(".truncated") and one(pattern, event_type[: -len(".truncated")]):
            return True
    return False


def write_catalog(tmp_path: Path, content: object) -> Path:
    path = tmp_path / "types.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


# --- the default catalog --------------------------------------------------------------


def test_default_catalog_has_valid_unique_names_and_object_examples():
    names = [name for event_type in CATALOG.types for name in (event_type.type, *event_type.aliases)]
    assert len(names) == len(set(names))
    assert all(is_valid_type(name) for name in names)
    assert "all" not in names
    for event_type in CATALOG.types:
        assert event_type.description
        assert isinstance(event_type.example, dict) and event_type.example
        assert json.loads(json.dumps(event_type.to_dict()))["type"] == event_type.type


def test_default_catalog_covers_the_event_families_of_the_seeds():
    for name in (
        "account.status.running",
        "account.status.errored",
        "account.status.disconnected",
        "message_received",
        "accepted_invitation",
        "message.new",
        "message.created",
        "email.new",
        "event.created",
        "calendar.updated",
        "contact.updated",
        "grant.expired",
        "prospect.statusChanged",
        "campaign.started",
        "webhook.test",
        "webhook.failing",
        "webhook.failed",
        "webhook.disabled",
    ):
        assert CATALOG.get(name) is not None, name
    errored = CATALOG.get("account.status.errored")
    assert errored is not None and "reason" in errored.example


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        # v1 -> v2 names (seeds/000)
        ("message_reaction", "message.reaction.new"),
        ("message_read", "message.receipt.read"),
        ("message_edited", "message.update"),
        ("message_deleted", "message.delete"),
        ("message_delivered", "message.delivery"),
        ("mail_opened", "tracking.open"),
        ("mail_clicked", "tracking.click"),
        ("new_relation", "relation.request.accept"),
        ("CREDENTIALS", "account.status.disconnected"),
        ("ERROR", "account.status.errored"),
        ("STOPPED", "account.status.errored"),
        ("OK", "account.status.running"),
        ("CREATION_SUCCESS", "account.add"),
        # legacy camelCase -> dot names (seeds/002)
        ("targetContacted", "target.contacted"),
        ("targetFollowUpSent", "target.followUpSent"),
        ("targetReplied", "target.replied"),
    ],
)
def test_legacy_names_resolve_to_their_type(alias, canonical):
    assert CATALOG.canonical(alias) == canonical
    event_type = CATALOG.get(alias)
    assert event_type is not None and event_type.type == canonical
    assert CATALOG.normalize_filters([alias]) == (canonical,)


def test_unknown_names_have_no_canonical_type():
    assert CATALOG.canonical("nope.never") is None
    assert CATALOG.get("nope.never") is None


@pytest.mark.parametrize(
    "name",
    ["a", "message.created", "a-b_c.D9", "x" * 128],
)
def test_valid_type_names(name):
    assert is_valid_type(name)


@pytest.mark.parametrize(
    "name",
    ["", "x" * 129, "message.", ".message", "a..b", "a b", "a*", "message\n", "message\ndata: x", "é", "a/b"],
)
def test_invalid_type_names(name):
    assert not is_valid_type(name)


# --- normalizing a webhook's filters ------------------------------------------------------


@pytest.mark.parametrize("pattern", ["message.create.*.*", "bot.*", "message.*", "*.*.*", "*"])
def test_patterns_matching_a_known_type_are_accepted(pattern):
    assert CATALOG.normalize_filters([pattern]) == (pattern,)


def test_unknown_filter_is_refused_with_the_valid_types_listed():
    with pytest.raises(BadRequest) as info:
        CATALOG.normalize_filters(["message.created", "bot.*", "foo.bar"])
    error = info.value
    assert error.field == "events"
    assert error.status_code == 400
    assert 'events[2] "foo.bar" is not a known event type or pattern' in error.message
    assert "valid types:" in error.message
    assert all(name in error.message for name in CATALOG.names)


def test_pattern_matching_no_type_is_refused():
    with pytest.raises(BadRequest, match=r'events\[0\] "nothing\.\*" matches no known event type; valid types: '):
        CATALOG.normalize_filters(["nothing.*"])


@pytest.mark.parametrize("pattern", ["mess*", "message.*d", "**", "message.**", "message..*", "*."])
def test_star_must_be_a_whole_segment(pattern):
    with pytest.raises(BadRequest, match=r"events\[0\] .* is not a valid pattern"):
        CATALOG.normalize_filters([pattern])


def test_refusal_suggests_a_close_name_and_explains_truncated_filters():
    with pytest.raises(BadRequest, match=r'did you mean "message\.created"'):
        CATALOG.normalize_filters(["Message.Created"])
    with pytest.raises(BadRequest, match=r'delivered to the filter "message\.created" already'):
        CATALOG.normalize_filters(["message.created.truncated"])


def test_filters_are_deduplicated_in_order_with_aliases_resolved():
    filters = ["bot.*", "targetContacted", "message.new", "target.contacted", "bot.*"]
    assert CATALOG.normalize_filters(filters) == ("bot.*", "target.contacted", "message.new")


@pytest.mark.parametrize("filters", [["all"], ["message.new", "all"], ["all", "bot.*", "all"]])
def test_all_anywhere_collapses_to_all(filters):
    assert CATALOG.normalize_filters(filters) == ("all",)


def test_all_does_not_hide_an_invalid_filter_beside_it():
    with pytest.raises(BadRequest, match=r"events\[1\]"):
        CATALOG.normalize_filters(["all", "nope"])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("message.new", r"events must be a list"),
        ({"type": "message.new"}, r"events must be a list"),
        (None, r"events must be a list"),
        ([], r"events must not be empty"),
        (["message.new", 3], r"events\[1\] must be a string, not a number"),
        (["message.new", "bot.*", None], r"events\[2\] must be a string, not null"),
        ([["all"]], r"events\[0\] must be a string, not a list"),
    ],
)
def test_malformed_filter_lists_are_refused_naming_the_problem(value, expected):
    with pytest.raises(BadRequest, match=expected) as info:
        CATALOG.normalize_filters(value)
    assert info.value.field == "events"


def test_the_field_name_is_configurable():
    with pytest.raises(BadRequest, match=r"filters\[0\]") as info:
        CATALOG.normalize_filters(["nope"], field="filters")
    assert info.value.field == "filters"


def test_filter_lists_are_capped():
    assert len(CATALOG.normalize_filters(list(CATALOG.names[:MAX_FILTERS]))) == MAX_FILTERS
    with pytest.raises(BadRequest, match=f"at most {MAX_FILTERS}"):
        CATALOG.normalize_filters(["message.new"] * (MAX_FILTERS + 1))


def test_refusal_of_a_hostile_filter_stays_short_and_encodable():
    with pytest.raises(BadRequest) as info:
        CATALOG.normalize_filters(["\ud800" + "x" * 10_000])
    first_line = info.value.message.split("; valid types")[0]
    assert len(first_line) < 200
    info.value.message.encode("utf-8")


# --- matching --------------------------------------------------------------------------------


def test_star_matches_exactly_one_segment():
    assert filter_matches(("message.*",), "message.created")
    assert not filter_matches(("message.*",), "message")
    assert not filter_matches(("message.*",), "message.create.contact")
    assert not filter_matches(("message.*",), "messages.created")
    assert filter_matches(("message.create.*.*",), "message.create.contact.chat")
    assert not filter_matches(("message.create.*.*",), "message.create.contact")
    assert not filter_matches(("message.create.*.*",), "message.create.contact.chat.extra")
    assert filter_matches(("*.deleted",), "tag.deleted")
    assert not filter_matches(("*.deleted",), "deleted")


def test_exact_filters_match_only_their_type():
    assert filter_matches(("message.new",), "message.new")
    assert not filter_matches(("message.new",), "message.newer")
    assert not filter_matches(("message.new",), "message.new.thing")
    assert not filter_matches(("message.new",), "xmessage.new")
    assert not filter_matches(("message_received",), "message.received")


def test_a_filter_for_a_type_also_matches_its_truncated_variant():
    assert filter_matches(("message.created",), "message.created.truncated")
    assert filter_matches(("message.*",), "message.created.truncated")
    assert filter_matches(("bot.*",), "bot.update.truncated")
    assert not filter_matches(("message.created",), "message.updated.truncated")
    assert not filter_matches(("message.created",), "message.created.truncatedx")


def test_all_matches_everything_and_no_filters_match_nothing():
    assert filter_matches(("all",), "anything.at.all")
    assert filter_matches(("bot.*", "all"), "x")
    assert not filter_matches((), "message.new")


def test_regex_metacharacters_in_filters_are_literal():
    assert not filter_matches(("a-b",), "a_b")
    assert filter_matches(("a-b.*",), "a-b.c")


names = st.sampled_from(CATALOG.names)


@st.composite
def filter_from(draw, name: str) -> str:
    segments = name.split(".")
    choice = draw(st.sampled_from(["exact", "stars", "shorter", "longer", "other"]))
    if choice == "stars":
        segments = [draw(st.sampled_from([s, "*"])) for s in segments]
    elif choice == "shorter" and len(segments) > 1:
        segments = segments[: draw(st.integers(1, len(segments) - 1))]
    elif choice == "longer":
        segments = [*segments, draw(st.sampled_from(["*", "truncated", "x"]))]
    elif choice == "other":
        segments = draw(names).split(".")
        segments = [draw(st.sampled_from([s, "*"])) for s in segments]
    return ".".join(segments)


@given(data=st.data())
def test_filter_matches_agrees_with_a_segment_by_segment_reference(data):
    event_type = data.draw(names)
    if data.draw(st.booleans()):
        event_type += ".truncated"
    filters = tuple(data.draw(st.lists(filter_from(data.draw(names)), max_size=4)))
    filters += tuple(data.draw(st.lists(filter_from(event_type), max_size=3)))
    if data.draw(st.integers(0, 20)) == 0:
        filters += ("all",)
    assert filter_matches(filters, event_type) == reference_matches(filters, event_type)


# --- loading a catalog file ------------------------------------------------------------------------


def test_a_custom_catalog_file_is_loaded(tmp_path):
    path = write_catalog(
        tmp_path,
        [
            {"type": "order.paid", "description": "An order was paid.", "data": {"order": {"id": "ord_1"}}},
            {"type": "order.refunded", "description": "Refunded.", "data": {}, "aliases": ["orderRefunded"]},
        ],
    )
    catalog = EventCatalog.load(str(path))
    assert catalog.names == ("order.paid", "order.refunded")
    assert catalog.get("orderRefunded") == EventType("order.refunded", "Refunded.", {}, ("orderRefunded",))
    assert catalog.normalize_filters(["order.*"]) == ("order.*",)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("[{", "not valid JSON"),
        ("{}", "non-empty JSON list"),
        ("[]", "non-empty JSON list"),
        ("[1]", "entry 0 must be an object"),
        ([{"type": "bad type", "description": "", "data": {}}], "entry 0: type"),
        ([{"type": "a", "description": "", "data": []}], r"entry 0 \(a\): data must be a JSON object"),
        ([{"type": "a", "description": 1, "data": {}}], "description must be a string"),
        ([{"type": "a", "description": "", "data": {}, "alias": ["b"]}], "unknown key"),
        ([{"type": "a", "description": "", "data": {}, "aliases": "b"}], "aliases must be a list"),
        (
            [
                {"type": "a", "description": "", "data": {}},
                {"type": "b", "description": "", "data": {}, "aliases": ["a"]},
            ],
            "'a' is declared twice",
        ),
        ([{"type": "all", "description": "", "data": {}}], "reserved"),
        ([{"type": "a.truncated", "description": "", "data": {}}], "reserved"),
        ([{"type": "a", "description": "", "data": {}, "aliases": ["no spaces"]}], "not a valid event type name"),
    ],
)
def test_a_malformed_catalog_names_the_file_and_the_problem(tmp_path, content, problem):
    path = write_catalog(tmp_path, content)
    with pytest.raises(CatalogError, match=problem) as info:
        EventCatalog.load(path)
    assert str(path) in str(info.value)


def test_a_missing_catalog_file_names_the_file(tmp_path):
    path = tmp_path / "missing.json"
    with pytest.raises(CatalogError, match="cannot be read") as info:
        EventCatalog.load(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)
