"""Settings read from the environment, once, at start.

Every tunable is one `HOOKSTREAM_*` variable. A malformed value stops the
server at start with a message naming the variable, rather than surfacing
later as odd behaviour.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from app.catalog import EventCatalog
from app.limits import RateLimit, parse_rate
from app.logs import LOG_FORMATS

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+)\s*(b|kb|kib|mb|mib|gb|gib)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2, "gb": 1000**3, "gib": 1024**3}


class SettingsError(ValueError):
    """A configuration variable has a value the server cannot use."""


def parse_duration(text: str) -> float:
    """Seconds in `500ms`, `15s`, `5m`, `2h`, `7d` or a bare number of seconds."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 500ms, 15s, 5m, 2h, 7d or a number of seconds")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def parse_size(text: str) -> int:
    """Bytes in `1048576`, `512KiB`, `1MiB`, `10MB`."""
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a size like 1048576, 512KiB or 10MiB")
    unit = (match.group(2) or "b").lower()
    return int(match.group(1)) * _SIZE_UNITS[unit]


def _flag(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{text!r} is not a boolean (use 1 or 0)")


def _positive_int(text: str) -> int:
    value = int(text.strip())
    if value <= 0:
        raise ValueError(f"{text!r} is not a positive integer")
    return value


def _positive_duration(text: str) -> float:
    # Zero would make a periodic task spin and a timeout fire at once.
    value = parse_duration(text)
    if value <= 0:
        raise ValueError(f"{text!r} must be a duration above zero")
    return value


def _positive_size(text: str) -> int:
    value = parse_size(text)
    if value <= 0:
        raise ValueError(f"{text!r} must be a size above zero")
    return value


def _catalog_path(text: str) -> str:
    # Load it once here so a bad file stops the server naming this variable, not later with a traceback.
    path = text.strip()
    EventCatalog.load(path)  # raises CatalogError, a ValueError
    return path


def _number(text: str) -> float:
    value = float(text.strip())
    if value < 0:
        raise ValueError(f"{text!r} is negative")
    return value


def _ratio(text: str) -> float:
    value = float(text.strip())
    if not 0 < value <= 1:
        raise ValueError(f"{text!r} is not a ratio above 0 and at most 1 (0.95 means 95 %)")
    return value


def _log_format(text: str) -> str:
    value = text.strip().lower()
    if value not in LOG_FORMATS:
        raise ValueError(f"{text.strip()!r} is not a log format; use text or json")
    return value


def _schedule(text: str) -> tuple[float, ...]:
    return tuple(parse_duration(part) for part in text.split(",") if part.strip())


def _origins(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    """Everything the server can be told, with defaults that work on one machine."""

    port: int = 8000
    host: str = "0.0.0.0"
    database_url: str = "sqlite:///hookstream.db"
    admin_token: str | None = None
    event_types: str | None = None
    max_event_bytes: int = 1024 * 1024
    max_body_bytes: int = 10 * 1024 * 1024
    retention: float = 7 * 86400.0
    retention_interval: float = 60.0
    retention_batch: int = 5000
    heartbeat_seconds: float = 15.0
    max_streams_per_key: int = 1000
    stream_backlog: int = 1000
    stream_token_ttl: float = 3600.0
    stream_token_secret: str | None = None
    cors_origins: tuple[str, ...] = ()
    credits_per_day: float = 10.0
    checkpoint_interval: float = 30.0
    default_connector: str = "ingest"
    connectors: tuple[str, ...] = ()
    demo_rate: float = 1.0
    monitor_backoff: float = 1.0
    monitor_backoff_max: float = 300.0
    test_clock_file: str | None = None
    delivery_timeout: float = 15.0
    retry_schedule: tuple[float, ...] = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
    allow_http: bool = False
    allow_private_urls: bool = False
    breaker_window: float = 900.0
    breaker_failure_ratio: float = 0.95
    breaker_min_attempts: int = 10
    breaker_failed_after: float = 72 * 3600.0
    delivery_concurrency: int = 100
    delivery_concurrency_per_endpoint: int = 10
    sqlite_synchronous: str = "FULL"
    event_cache_bytes: int = 64 * 1024 * 1024
    access_log: bool = False
    log_format: str = "text"
    web_concurrency: int = 1
    header_timeout: float = 10.0
    max_header_bytes: int = 64 * 1024
    # None: from the process's file-descriptor limit (app/_http.py).
    max_connections: int | None = None
    rate_limit: RateLimit | None = None
    ingest_rate_limit: RateLimit | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read settings from environment variables; raise SettingsError naming a bad one."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name, (attribute, parse) in _VARIABLES.items():
            raw = env.get(name)
            if raw is None or not raw.strip():
                continue
            try:
                values[attribute] = parse(raw)
            except ValueError as exc:
                raise SettingsError(f"{name}: {exc}") from None
        url = str(values.get("database_url", cls.database_url))
        if not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise SettingsError(
                f"DATABASE_URL: {url!r} is not supported; use sqlite:///path.db or postgresql://user@host/db"
            )
        synchronous = str(values.get("sqlite_synchronous", cls.sqlite_synchronous)).upper()
        if synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise SettingsError("HOOKSTREAM_SQLITE_SYNCHRONOUS: use FULL, EXTRA or NORMAL")
        values["sqlite_synchronous"] = synchronous
        return cls(**values)  # type: ignore[arg-type]


# Variable name -> (Settings attribute, parser).
_VARIABLES: dict[str, tuple[str, Callable[[str], object]]] = {
    "PORT": ("port", _positive_int),
    "HOOKSTREAM_HOST": ("host", str.strip),
    "DATABASE_URL": ("database_url", str.strip),
    "HOOKSTREAM_ADMIN_TOKEN": ("admin_token", str.strip),
    "HOOKSTREAM_EVENT_TYPES": ("event_types", _catalog_path),
    "HOOKSTREAM_MAX_EVENT_BYTES": ("max_event_bytes", _positive_size),
    "HOOKSTREAM_MAX_BODY_BYTES": ("max_body_bytes", _positive_size),
    "HOOKSTREAM_RETENTION": ("retention", _positive_duration),
    "HOOKSTREAM_RETENTION_INTERVAL": ("retention_interval", _positive_duration),
    "HOOKSTREAM_RETENTION_BATCH": ("retention_batch", _positive_int),
    "HOOKSTREAM_HEARTBEAT_SECONDS": ("heartbeat_seconds", _positive_duration),
    "HOOKSTREAM_MAX_STREAMS_PER_KEY": ("max_streams_per_key", _positive_int),
    "HOOKSTREAM_STREAM_BACKLOG": ("stream_backlog", _positive_int),
    "HOOKSTREAM_STREAM_TOKEN_TTL": ("stream_token_ttl", _positive_duration),
    "HOOKSTREAM_STREAM_TOKEN_SECRET": ("stream_token_secret", str.strip),
    "HOOKSTREAM_CORS_ORIGINS": ("cors_origins", _origins),
    "HOOKSTREAM_CREDITS_PER_DAY": ("credits_per_day", _number),
    "HOOKSTREAM_CHECKPOINT_INTERVAL": ("checkpoint_interval", _positive_duration),
    "HOOKSTREAM_DEFAULT_CONNECTOR": ("default_connector", str.strip),
    "HOOKSTREAM_CONNECTORS": ("connectors", _origins),
    "HOOKSTREAM_DEMO_RATE": ("demo_rate", _number),
    "HOOKSTREAM_MONITOR_BACKOFF": ("monitor_backoff", parse_duration),
    "HOOKSTREAM_MONITOR_BACKOFF_MAX": ("monitor_backoff_max", parse_duration),
    # Test-only: a file holding the metering clock's time in seconds (see app/clock.py).
    "HOOKSTREAM_TEST_CLOCK_FILE": ("test_clock_file", str.strip),
    "HOOKSTREAM_DELIVERY_TIMEOUT": ("delivery_timeout", _positive_duration),
    "HOOKSTREAM_RETRY_SCHEDULE": ("retry_schedule", _schedule),
    "HOOKSTREAM_ALLOW_HTTP": ("allow_http", _flag),
    "HOOKSTREAM_ALLOW_PRIVATE_URLS": ("allow_private_urls", _flag),
    "HOOKSTREAM_BREAKER_WINDOW": ("breaker_window", parse_duration),
    "HOOKSTREAM_BREAKER_FAILURE_RATIO": ("breaker_failure_ratio", _ratio),
    "HOOKSTREAM_BREAKER_MIN_ATTEMPTS": ("breaker_min_attempts", _positive_int),
    "HOOKSTREAM_BREAKER_FAILED_AFTER": ("breaker_failed_after", parse_duration),
    "HOOKSTREAM_DELIVERY_CONCURRENCY": ("delivery_concurrency", _positive_int),
    "HOOKSTREAM_DELIVERY_CONCURRENCY_PER_ENDPOINT": ("delivery_concurrency_per_endpoint", _positive_int),
    "HOOKSTREAM_SQLITE_SYNCHRONOUS": ("sqlite_synchronous", str.strip),
    "HOOKSTREAM_EVENT_CACHE": ("event_cache_bytes", parse_size),
    "HOOKSTREAM_ACCESS_LOG": ("access_log", _flag),
    "HOOKSTREAM_LOG_FORMAT": ("log_format", _log_format),
    # The PaaS convention for how many server processes to run on one machine (Heroku sets it by itself).
    "WEB_CONCURRENCY": ("web_concurrency", _positive_int),
    "HOOKSTREAM_HEADER_TIMEOUT": ("header_timeout", _positive_duration),
    "HOOKSTREAM_MAX_HEADER_BYTES": ("max_header_bytes", _positive_size),
    "HOOKSTREAM_MAX_CONNECTIONS": ("max_connections", _positive_int),
    "HOOKSTREAM_RATE_LIMIT": ("rate_limit", parse_rate),
    "HOOKSTREAM_INGEST_RATE_LIMIT": ("ingest_rate_limit", parse_rate),
}
