"""Versioned schema migrations, applied in order at start and recorded in `schema_migrations`.

Append a new (version, script) pair to change the schema; never edit one that has shipped.
"""

from __future__ import annotations

from collections.abc import Container, Iterable


def pending_migrations(migrations: Iterable[tuple[int, str]], applied: Container[int]) -> list[tuple[int, str]]:
    """The (version, script) pairs not yet applied, in version order whatever order they were appended in.

    A missing number is no error: versions only have to increase.
    """
    return [(version, script) for version, script in sorted(migrations) if version not in applied]


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
    (
        2,
        """
-- Per-account monitoring (SPEC §7). One lease row per monitored account names the one
-- process that runs its monitor until expires_at (wall-clock µs); the holder renews it at
-- every checkpoint, and another process takes over once it has expired.
CREATE TABLE monitor_leases (
    account_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    reason TEXT
);
-- Metered time. checkpoint_at moves forward while the interval is open, so a crash loses at
-- most one checkpoint interval: the next holder closes it there. Rows outlive their account.
CREATE TABLE monitor_intervals (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id TEXT NOT NULL,
    api_key_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    checkpoint_at INTEGER NOT NULL,
    stopped_at INTEGER
);
CREATE INDEX monitor_intervals_by_account ON monitor_intervals (account_id, id);
CREATE INDEX monitor_intervals_open ON monitor_intervals (owner) WHERE stopped_at IS NULL
""",
    ),
    (
        3,
        """
-- Custom-mode delivery (SPEC §8). cursor_seq: every feed event at or below it was
-- delivered, or handed to `deliveries` for retry. failing_since: when the breaker tripped.
CREATE TABLE delivery_state (
    webhook_id TEXT PRIMARY KEY,
    cursor_seq INTEGER NOT NULL DEFAULT 0,
    failing_since INTEGER
);
-- Feed events whose first attempt failed and that wait for a retry.
CREATE TABLE deliveries (
    webhook_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    PRIMARY KEY (webhook_id, seq)
) WITHOUT ROWID;
CREATE INDEX deliveries_due ON deliveries (webhook_id, next_attempt_at);
CREATE TABLE delivery_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    status_code INTEGER,
    latency_ms REAL NOT NULL,
    error TEXT,
    created_at INTEGER NOT NULL
);
CREATE INDEX delivery_attempts_by_webhook ON delivery_attempts (webhook_id, id);
CREATE INDEX delivery_attempts_by_time ON delivery_attempts (webhook_id, created_at)
""",
    ),
    (
        4,
        """
-- Receiver control and delivery options (SPEC §8.1). previous_secret signs alongside secret
-- until previous_expires_at (wall-clock µs); an Ed25519 webhook's secret is its private key.
ALTER TABLE webhooks ADD COLUMN signature_scheme TEXT NOT NULL DEFAULT 'hmac-sha256';
ALTER TABLE webhooks ADD COLUMN previous_secret TEXT;
ALTER TABLE webhooks ADD COLUMN previous_expires_at INTEGER;
ALTER TABLE webhooks ADD COLUMN max_rate INTEGER;
ALTER TABLE webhooks ADD COLUMN ordering TEXT NOT NULL DEFAULT 'fast';
-- When the attempt's event is due again, and the time the receiver's Retry-After named (capped).
ALTER TABLE delivery_attempts ADD COLUMN next_attempt_at INTEGER;
ALTER TABLE delivery_attempts ADD COLUMN retry_after INTEGER;
-- Jittered retries stay within the schedule's total counted from the first attempt.
ALTER TABLE deliveries ADD COLUMN first_attempt_at INTEGER;
-- `undelivered` looks up each feed event's attempts.
CREATE INDEX delivery_attempts_by_seq ON delivery_attempts (webhook_id, seq)
""",
    ),
    (
        5,
        """
-- The breaker counts attempts made at or after breaker_from: `start` after `failed` or
-- `disabled` begins a fresh window, so failures from before the restart do not trip it again.
ALTER TABLE delivery_state ADD COLUMN breaker_from INTEGER
""",
    ),
]

# PostgreSQL: the same tables. seq comes from the single row of `log_head`, locked by every
# append transaction until commit, so seqs become visible in order (see storage/postgres.py).
POSTGRES_MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE log_head (id BOOLEAN PRIMARY KEY DEFAULT true CHECK (id), seq BIGINT NOT NULL);
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    key_hash BYTEA NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    api_key_id TEXT NOT NULL,
    name TEXT,
    connector TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX accounts_by_key ON accounts (api_key_id, created_at);
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    api_key_id TEXT NOT NULL,
    url TEXT,
    secret TEXT,
    events TEXT[] NOT NULL,
    compressed_delivery BOOLEAN NOT NULL,
    is_active BOOLEAN NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX webhooks_by_account ON webhooks (account_id, is_active);
CREATE INDEX webhooks_by_key ON webhooks (api_key_id, created_at);
CREATE TABLE events (
    seq BIGINT PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    account_id TEXT NOT NULL,
    type TEXT NOT NULL,
    appended_at BIGINT NOT NULL,
    body BYTEA NOT NULL
);
CREATE TABLE feed (
    webhook_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (webhook_id, seq)
);
-- By seq: other processes read a commit's feed webhooks to wake their readers; retention deletes by seq.
CREATE INDEX feed_by_seq ON feed (seq)
""",
    ),
    (
        2,
        """
-- Per-account monitoring, as SQLite's version 2: one lease row per monitored account.
CREATE TABLE monitor_leases (
    account_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT
);
CREATE TABLE monitor_intervals (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id TEXT NOT NULL,
    api_key_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    checkpoint_at BIGINT NOT NULL,
    stopped_at BIGINT
);
CREATE INDEX monitor_intervals_by_account ON monitor_intervals (account_id, id);
CREATE INDEX monitor_intervals_open ON monitor_intervals (owner) WHERE stopped_at IS NULL
""",
    ),
    (
        3,
        """
-- Custom-mode delivery, as SQLite's version 3.
CREATE TABLE delivery_state (
    webhook_id TEXT PRIMARY KEY,
    cursor_seq BIGINT NOT NULL DEFAULT 0,
    failing_since BIGINT
);
CREATE TABLE deliveries (
    webhook_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    PRIMARY KEY (webhook_id, seq)
);
CREATE INDEX deliveries_due ON deliveries (webhook_id, next_attempt_at);
CREATE INDEX deliveries_by_seq ON deliveries (seq);
CREATE TABLE delivery_attempts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    event_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    status_code INTEGER,
    latency_ms DOUBLE PRECISION NOT NULL,
    error TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX delivery_attempts_by_webhook ON delivery_attempts (webhook_id, id);
CREATE INDEX delivery_attempts_by_time ON delivery_attempts (webhook_id, created_at);
-- Retention deletes old attempts of every webhook at once.
CREATE INDEX delivery_attempts_by_age ON delivery_attempts (created_at)
""",
    ),
    (
        4,
        """
-- Receiver control and delivery options, as SQLite's version 4.
ALTER TABLE webhooks ADD COLUMN signature_scheme TEXT NOT NULL DEFAULT 'hmac-sha256';
ALTER TABLE webhooks ADD COLUMN previous_secret TEXT;
ALTER TABLE webhooks ADD COLUMN previous_expires_at BIGINT;
ALTER TABLE webhooks ADD COLUMN max_rate BIGINT;
ALTER TABLE webhooks ADD COLUMN ordering TEXT NOT NULL DEFAULT 'fast';
-- When the attempt's event is due again, and the time the receiver's Retry-After named (capped).
ALTER TABLE delivery_attempts ADD COLUMN next_attempt_at BIGINT;
ALTER TABLE delivery_attempts ADD COLUMN retry_after BIGINT;
-- Jittered retries stay within the schedule's total counted from the first attempt.
ALTER TABLE deliveries ADD COLUMN first_attempt_at BIGINT;
-- `undelivered` looks up each feed event's attempts.
CREATE INDEX delivery_attempts_by_seq ON delivery_attempts (webhook_id, seq)
""",
    ),
    (
        5,
        """
ALTER TABLE delivery_state ADD COLUMN breaker_from BIGINT
""",
    ),
]
