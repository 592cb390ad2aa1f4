"""The catalog of event types, and the filters a webhook subscribes with.

A filter is `all`, an exact type, or a pattern where `*` stands for exactly one
dot-separated segment; a filter for `T` also matches `T.truncated`. Filters are checked
against the catalog when a webhook is created or updated (aliases are stored as their
type), but matched without it: `filter_matches` is a pure function of the stored filters
and the event's type, so it is cheap on the ingest path and a stored filter keeps its
meaning if the catalog is later edited.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from app.errors import BadRequest

__all__ = [
    "MAX_FILTERS",
    "MAX_TYPE_LENGTH",
    "TRUNCATED_SUFFIX",
    "TYPE_PATTERN",
    "CatalogError",
    "EventCatalog",
    "EventType",
    "filter_matches",
    "is_valid_type",
]

MAX_TYPE_LENGTH = 128
MAX_FILTERS = 100
TRUNCATED_SUFFIX = ".truncated"
DEFAULT_PATH = Path(__file__).with_name("event_types.json")

# `\Z`, not `$`: `$` also matches before a trailing newline, which would let a producer
# smuggle an SSE field into the `event:` line.
_SEGMENT = r"[A-Za-z0-9_-]+"
TYPE_PATTERN = re.compile(rf"\A(?=.{{1,{MAX_TYPE_LENGTH}}}\Z){_SEGMENT}(?:\.{_SEGMENT})*\Z")
_FILTER_PATTERN = re.compile(rf"\A(?=.{{1,{MAX_TYPE_LENGTH}}}\Z)(?:{_SEGMENT}|\*)(?:\.(?:{_SEGMENT}|\*))*\Z")
_ENTRY_KEYS = frozenset({"type", "description", "data", "aliases"})


class CatalogError(ValueError):
    """The event type catalog file cannot be read or is malformed."""


def is_valid_type(name: str) -> bool:
    """Whether `name` is a well-formed event type: dot-separated `[A-Za-z0-9_-]+` segments, 1–128 characters."""
    return isinstance(name, str) and TYPE_PATTERN.match(name) is not None


@dataclass(frozen=True, slots=True)
class EventType:
    """One entry of the catalog. `example` is shared: copy it before changing it."""

    type: str
    description: str
    example: dict[str, Any]
    aliases: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The entry as `GET /v2/event-types` lists it (the catalog file's shape)."""
        return {"type": self.type, "description": self.description, "data": self.example, "aliases": list(self.aliases)}


class EventCatalog:
    """The platform's event types, looked up by type or alias."""

    def __init__(self, types: Iterable[EventType], *, source: str = "<catalog>") -> None:
        self.source = source
        self.types: tuple[EventType, ...] = tuple(types)
        self._by_name: dict[str, EventType] = {}
        for event_type in self.types:
            for name in (event_type.type, *event_type.aliases):
                if not is_valid_type(name):
                    raise CatalogError(f"{source}: {name!r} is not a valid event type name")
                if name == "all" or name.endswith(TRUNCATED_SUFFIX):
                    raise CatalogError(f"{source}: {name!r} is reserved and cannot be an event type or alias")
                other = self._by_name.get(name)
                if other is not None:
                    raise CatalogError(
                        f"{source}: {name!r} is declared twice (by {other.type!r} and by {event_type.type!r})"
                    )
                self._by_name[name] = event_type
        self._type_names: tuple[str, ...] = tuple(event_type.type for event_type in self.types)

    @classmethod
    def load(cls, path: str | Path | None = None) -> EventCatalog:
        """Read a catalog file; None reads the default that ships with hookstream."""
        file = DEFAULT_PATH if path is None else Path(path)
        try:
            raw = file.read_bytes()
        except OSError as exc:
            raise CatalogError(f"event type catalog {file}: cannot be read ({exc.strerror or exc})") from exc
        try:
            entries = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise CatalogError(f"event type catalog {file}: not valid JSON ({exc})") from exc
        source = f"event type catalog {file}"
        if not isinstance(entries, list) or not entries:
            raise CatalogError(f"{source}: must be a non-empty JSON list of event type entries")
        return cls((_parse_entry(entry, index, source) for index, entry in enumerate(entries)), source=source)

    def __len__(self) -> int:
        return len(self.types)

    @property
    def names(self) -> tuple[str, ...]:
        """Every type name, in catalog order (aliases excluded)."""
        return self._type_names

    def get(self, name: str) -> EventType | None:
        """The entry for a type or one of its aliases."""
        return self._by_name.get(name)

    def canonical(self, name: str) -> str | None:
        """The type that `name` (a type or an alias) stands for, or None when unknown."""
        event_type = self._by_name.get(name)
        return None if event_type is None else event_type.type

    def normalize_filters(self, filters: object, field: str = "events") -> tuple[str, ...]:
        """Validate a webhook's `events` value and return it as stored: aliases resolved, deduplicated, in order."""
        if not isinstance(filters, list | tuple):
            raise BadRequest(
                f'{field} must be a list of event types or patterns, such as ["all"] or ["message.*"]', field=field
            )
        if not filters:
            raise BadRequest(f'{field} must not be empty; use ["all"] to receive every event type', field=field)
        if len(filters) > MAX_FILTERS:
            raise BadRequest(
                f'{field} has {len(filters)} entries; at most {MAX_FILTERS} are allowed (patterns such as "message.*" '
                "cover many types at once)",
                field=field,
            )
        normalized: dict[str, None] = {}  # an ordered set
        for index, item in enumerate(filters):
            if not isinstance(item, str):
                raise BadRequest(f"{field}[{index}] must be a string, not {_json_type(item)}", field=field)
            normalized[self._normalize_filter(item, f"{field}[{index}]", field)] = None
        if "all" in normalized:
            return ("all",)
        return tuple(normalized)

    def _normalize_filter(self, item: str, where: str, field: str) -> str:
        if item == "all":
            return item
        known = self._by_name.get(item)
        if known is not None:
            return known.type
        shown = _quote(item)
        if "*" in item:
            if _FILTER_PATTERN.match(item) is None:
                raise BadRequest(
                    f"{where} {shown} is not a valid pattern: * must stand for a whole dot-separated segment, "
                    'as in "message.*" or "message.create.*.*"',
                    field=field,
                )
            if any(filter_matches((item,), name) for name in self._type_names):
                return item
            raise BadRequest(f"{where} {shown} matches no known event type; {self._valid_types()}", field=field)
        hint = ""
        base = item.removesuffix(TRUNCATED_SUFFIX)
        if base != item and base in self._by_name:
            hint = f" (truncated events are delivered to the filter {_quote(self._by_name[base].type)} already)"
        elif len(item) <= MAX_TYPE_LENGTH:  # difflib is quadratic in the length
            close = difflib.get_close_matches(item, self._by_name, n=1)
            if close:
                hint = f" (did you mean {_quote(close[0])}?)"
        raise BadRequest(
            f"{where} {shown} is not a known event type or pattern{hint}; {self._valid_types()}", field=field
        )

    def _valid_types(self) -> str:
        return (
            f"valid types: {', '.join(self._type_names)}; "
            'or "all", or a pattern where * stands for one segment, such as "message.*"'
        )


def filter_matches(filters: tuple[str, ...], event_type: str) -> bool:
    """Whether an event of `event_type` belongs to a feed with these (normalized) filters."""
    pattern = _compiled(filters)
    return pattern is None or pattern.fullmatch(event_type) is not None


@functools.lru_cache(maxsize=4096)
def _compiled(filters: tuple[str, ...]) -> re.Pattern[str] | None:
    """One regex for a whole filter list; None means `all`."""
    if "all" in filters:
        return None
    if not filters:
        return re.compile(r"(?!)")
    alternatives = "|".join(
        r"\.".join(r"[^.]+" if segment == "*" else re.escape(segment) for segment in item.split("."))
        for item in filters
    )
    return re.compile(rf"(?:{alternatives})(?:{re.escape(TRUNCATED_SUFFIX)})?")


def _parse_entry(entry: object, index: int, source: str) -> EventType:
    where = f"{source}: entry {index}"
    if not isinstance(entry, dict):
        raise CatalogError(f"{where} must be an object with type, description, data and aliases")
    name = entry.get("type")
    if not isinstance(name, str) or not is_valid_type(name):
        raise CatalogError(
            f"{where}: type {_quote(name)} must be 1-{MAX_TYPE_LENGTH} characters: "
            "dot-separated segments of [A-Za-z0-9_-]"
        )
    where = f"{where} ({name})"
    unknown = sorted(set(entry) - _ENTRY_KEYS)
    if unknown:
        raise CatalogError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: type, description, data, aliases")
    description = entry.get("description")
    if not isinstance(description, str):
        raise CatalogError(f"{where}: description must be a string")
    example = entry.get("data")
    if not isinstance(example, dict):
        raise CatalogError(f"{where}: data must be a JSON object (an example payload)")
    aliases = entry.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(alias, str) for alias in aliases):
        raise CatalogError(f"{where}: aliases must be a list of strings")
    return EventType(type=name, description=description, example=example, aliases=tuple(aliases))


def _quote(value: object) -> str:
    """A value as JSON, cut short so an error message stays readable."""
    text = json.dumps(value, ensure_ascii=False, default=repr)
    # A lone surrogate (valid in a JSON string, not in UTF-8) would break the error response itself.
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= 80 else text[:77] + '…"'


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
