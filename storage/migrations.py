"""Versioned schema migrations, applied in order at start and recorded in `schema_migrations`.

Append a new (version, script) pair to change the schema; never edit one that has shipped.
"""

from __future__ import annotations

SQLITE_MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    key_hash BLOB NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    api_key_id TEXT NOT NULL,
    name TEXT,
    connector TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX accounts_by_key ON accounts (api_key_id, created_at);
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    api_key_id TEXT NOT NULL,
    url TEXT,
    secret TEXT,
    events TEXT NOT NULL,
    compressed_delivery INTEGER NOT NULL,
    is_active INTEGER NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX webhooks_by_account ON webhooks (account_id, is_active);
CREATE INDEX webhooks_by_key ON webhooks (api_key_id, created_at);
-- AUTOINCREMENT: without it SQLite may reuse the seq of a pruned newest row.
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    account_id TEXT NOT NULL,
    type TEXT NOT NULL,
    appended_at INTEGER NOT NULL,
    body BLOB NOT NULL
);
-- One row per (webhook, event) that joined the webhook's feed at append time.
CREATE TABLE feed (
    webhook_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (webhook_id, seq)
) WITHOUT ROWID
""",
    ),
]
