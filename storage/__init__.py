"""Persistence for hookstream: the `Storage` interface and its backends."""

from __future__ import annotations

from storage.base import FeedMatcher, Storage


def create_storage(
    url: str, *, matcher: FeedMatcher, sqlite_synchronous: str = "FULL", event_cache_bytes: int = 64 << 20
) -> Storage:
    """The backend for a `DATABASE_URL`: `sqlite:///path.db` or `postgresql://…`."""
    if url.startswith("sqlite:///"):
        from storage.sqlite import SQLiteStorage

        return SQLiteStorage(
            url.removeprefix("sqlite:///"),
            matcher=matcher,
            synchronous=sqlite_synchronous,
            event_cache_bytes=event_cache_bytes,
        )
    if url.startswith(("postgresql://", "postgres://")):
        from storage.postgres import PostgresStorage

        return PostgresStorage(url, matcher=matcher, event_cache_bytes=event_cache_bytes)
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///path.db or postgresql://…")
