"""Persistence for hookstream: the `Storage` interface and its backends."""

from __future__ import annotations

from storage.base import FeedMatcher, Storage


def create_storage(url: str, *, matcher: FeedMatcher, sqlite_synchronous: str = "FULL") -> Storage:
    """The backend for a `DATABASE_URL`: `sqlite:///path.db` or `postgresql://…`."""
    if url.startswith("sqlite:///"):
        from storage.sqlite import SQLiteStorage

        return SQLiteStorage(url.removeprefix("sqlite:///"), matcher=matcher, synchronous=sqlite_synchronous)
    if url.startswith(("postgresql://", "postgres://")):
        from storage.postgres import PostgresStorage  # type: ignore[import-not-found,import-untyped,unused-ignore]

        backend: Storage = PostgresStorage(url, matcher=matcher)
        return backend
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///path.db or postgresql://…")
