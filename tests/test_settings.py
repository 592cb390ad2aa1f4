"""Configuration (SPEC §2): a malformed variable stops the server at start with a message naming it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.settings import Settings, SettingsError, parse_duration, parse_size
from tests.server import ROOT, free_port


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("15s", 15), ("5m", 300), ("2h", 7200), ("7d", 604800), ("30", 30), ("1.5s", 1.5)],
)
def test_durations_are_read_in_every_unit(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


def test_sizes_are_read_in_bytes_and_binary_units() -> None:
    assert parse_size("1048576") == parse_size("1MiB") == 1024 * 1024
    assert parse_size("10MB") == 10_000_000


def test_defaults_work_with_no_configuration() -> None:
    settings = Settings.from_env({})
    assert settings.database_url == "sqlite:///hookstream.db"
    assert settings.retention == 7 * 86400
    assert settings.retention_interval == 60
    assert settings.max_event_bytes == 1024 * 1024
    assert settings.max_body_bytes == 10 * 1024 * 1024
    assert settings.event_cache_bytes == 64 * 1024 * 1024


def test_the_event_cache_takes_a_size_or_zero_to_turn_it_off() -> None:
    assert Settings.from_env({"HOOKSTREAM_EVENT_CACHE": "256MiB"}).event_cache_bytes == 256 * 1024 * 1024
    assert Settings.from_env({"HOOKSTREAM_EVENT_CACHE": "0"}).event_cache_bytes == 0


BAD_VALUES = [
    ("HOOKSTREAM_RETENTION", "a week"),
    ("HOOKSTREAM_RETENTION", "-1d"),
    ("HOOKSTREAM_RETENTION_INTERVAL", "0"),
    ("HOOKSTREAM_RETENTION_INTERVAL", "5 minutes"),
    ("HOOKSTREAM_MAX_EVENT_BYTES", "big"),
    ("HOOKSTREAM_MAX_EVENT_BYTES", "0"),
    ("HOOKSTREAM_MAX_BODY_BYTES", "-5"),
    ("HOOKSTREAM_HEARTBEAT_SECONDS", "often"),
    ("HOOKSTREAM_MAX_STREAMS_PER_KEY", "0"),
    ("HOOKSTREAM_ALLOW_HTTP", "maybe"),
    ("HOOKSTREAM_RETRY_SCHEDULE", "5s,soon"),
    ("HOOKSTREAM_CREDITS_PER_DAY", "ten"),
    ("HOOKSTREAM_SQLITE_SYNCHRONOUS", "SOMETIMES"),
    ("HOOKSTREAM_EVENT_CACHE", "-1"),
    ("HOOKSTREAM_EVENT_CACHE", "lots"),
    ("HOOKSTREAM_EVENT_TYPES", "/nonexistent/event_types.json"),
    ("DATABASE_URL", "mysql://localhost/db"),
    ("PORT", "eighty"),
    ("HOOKSTREAM_HEADER_TIMEOUT", "0"),
    ("HOOKSTREAM_HEADER_TIMEOUT", "soon"),
    ("HOOKSTREAM_MAX_HEADER_BYTES", "0"),
    ("HOOKSTREAM_MAX_HEADER_BYTES", "64 kilobytes"),
    ("HOOKSTREAM_MAX_CONNECTIONS", "0"),
    ("HOOKSTREAM_MAX_CONNECTIONS", "many"),
    ("HOOKSTREAM_RATE_LIMIT", "100"),
    ("HOOKSTREAM_RATE_LIMIT", "100/h"),
    ("HOOKSTREAM_RATE_LIMIT", "0/s"),
    ("HOOKSTREAM_RATE_LIMIT", "-5/s"),
    ("HOOKSTREAM_RATE_LIMIT", "1.5/s"),
    ("HOOKSTREAM_INGEST_RATE_LIMIT", "fast"),
    ("HOOKSTREAM_INGEST_RATE_LIMIT", "10/ m"),
]


def test_the_http_bounds_default_to_the_spec_and_rate_limits_to_off() -> None:
    settings = Settings.from_env({})
    assert settings.header_timeout == 10
    assert settings.max_header_bytes == 64 * 1024
    assert settings.rate_limit is None
    assert settings.ingest_rate_limit is None


def test_rate_limits_are_requests_per_second_or_per_minute() -> None:
    settings = Settings.from_env({"HOOKSTREAM_RATE_LIMIT": "100/s", "HOOKSTREAM_INGEST_RATE_LIMIT": "600/m"})
    assert settings.rate_limit is not None and settings.ingest_rate_limit is not None
    assert (settings.rate_limit.requests, settings.rate_limit.per_second) == (100, 100)
    assert (settings.ingest_rate_limit.requests, settings.ingest_rate_limit.per_second) == (600, 10)


@pytest.mark.parametrize(("name", "value"), BAD_VALUES)
def test_a_malformed_variable_is_refused_naming_it(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HOOKSTREAM_RETENTION", "a week"),
        ("HOOKSTREAM_MAX_BODY_BYTES", "lots"),
        ("HOOKSTREAM_EVENT_TYPES", "/nonexistent/event_types.json"),
        ("DATABASE_URL", "mysql://localhost/db"),
        ("HOOKSTREAM_RATE_LIMIT", "lots"),
        ("HOOKSTREAM_MAX_CONNECTIONS", "-1"),
    ],
)
def test_the_server_stops_at_start_with_a_message_naming_a_malformed_variable(
    tmp_path: Path, name: str, value: str
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bad.db'}",
        "HOOKSTREAM_ADMIN_TOKEN": "t",
        "PORT": str(port),
        name: value,
    }
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=60,
    )
    stderr = result.stderr.decode()
    assert result.returncode != 0
    assert name in stderr
    assert "Traceback" not in stderr
