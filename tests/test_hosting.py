"""SQLite on a disk the platform throws away: the server warns loudly at start (SPEC §12, docs/deploy.md)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from app.hosting import ephemeral_disk
from tests.server import Server

WARNING = "EVERY EVENT WILL BE LOST"


def test_sqlite_on_a_heroku_dyno_is_warned_about_at_start(start_server: Callable[..., Server], tmp_path: Path) -> None:
    env = {"DYNO": "web.1", "HOOKSTREAM_LOG_FORMAT": "json"}
    server = start_server(env, database_url=f"sqlite:///{tmp_path / 'hookstream.db'}")
    lines = [json.loads(line) for line in server.log().splitlines() if line.strip()]
    warning = next(line for line in lines if WARNING in str(line["message"]))
    assert warning["level"] == "WARNING"
    assert "DYNO=web.1" in str(warning["message"]) and "postgresql://" in str(warning["message"])


def test_sqlite_on_a_plain_machine_starts_without_the_warning(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    assert WARNING not in start_server(database_url=f"sqlite:///{tmp_path / 'hookstream.db'}").log()


def test_a_railway_volume_holding_the_file_is_durable_and_one_elsewhere_is_not(tmp_path: Path) -> None:
    volume = tmp_path / "data"
    railway = {"RAILWAY_ENVIRONMENT": "production", "RAILWAY_VOLUME_MOUNT_PATH": str(volume)}
    assert ephemeral_disk(f"sqlite:///{volume / 'hookstream.db'}", railway) is None
    outside = ephemeral_disk(f"sqlite:///{tmp_path / 'hookstream.db'}", railway)
    assert outside is not None and str(volume) in outside
    no_volume = ephemeral_disk("sqlite:///hookstream.db", {"RAILWAY_ENVIRONMENT": "production"})
    assert no_volume is not None and "no volume" in no_volume


def test_fly_and_render_need_the_file_on_a_mount(tmp_path: Path) -> None:
    # /proc is a mount point on every Linux machine, and nothing else here is under one like it.
    assert ephemeral_disk("sqlite:////proc/self/hookstream.db", {"FLY_APP_NAME": "hooks"}) is None
    on_root = ephemeral_disk("sqlite:////srv/app/hookstream.db", {"FLY_APP_NAME": "hooks"})
    assert on_root is not None and "Fly.io" in on_root
    assert ephemeral_disk("sqlite:////srv/app/hookstream.db", {"RENDER": "true"}) is not None


def test_postgresql_or_no_platform_needs_no_warning() -> None:
    assert ephemeral_disk("postgresql://u@db/hooks", {"DYNO": "web.1"}) is None
    assert ephemeral_disk("sqlite:///hookstream.db", {}) is None
