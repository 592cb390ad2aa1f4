"""What the platform hookstream runs on says about its disk, read from the variables each one sets.

A SQLite log on a disk that the platform throws away at every restart loses every event, silently,
at the next deploy. Heroku dynos have no volumes at all (`DYNO` is set on every dyno); Railway names
its volume in `RAILWAY_VOLUME_MOUNT_PATH`; Fly.io and Render mount a volume or disk as a filesystem of
its own, so a file on one has a mount point among its parent directories.
"""

from __future__ import annotations

import os
from collections.abc import Mapping


def _on_a_mount(path: str) -> bool:
    directory = os.path.dirname(path)
    while directory != os.path.dirname(directory):
        if os.path.ismount(directory):
            return True
        directory = os.path.dirname(directory)
    return False


def _under(path: str, directory: str) -> bool:
    directory = os.path.abspath(directory)
    return os.path.commonpath([path, directory]) == directory


def ephemeral_disk(database_url: str, environ: Mapping[str, str]) -> str | None:
    """Why a SQLite `database_url` would not survive a restart here; None if it would, or is not SQLite."""
    if not database_url.startswith("sqlite:///"):
        return None
    path = os.path.abspath(database_url.removeprefix("sqlite:///"))
    if "DYNO" in environ:
        return (
            f"DYNO={environ['DYNO']} says this is a Heroku dyno: its filesystem is discarded at every restart "
            "and deploy (at least daily) and Heroku has no volumes"
        )
    if any(name in environ for name in ("RAILWAY_ENVIRONMENT", "RAILWAY_PROJECT_ID", "RAILWAY_SERVICE_ID")):
        volume = environ.get("RAILWAY_VOLUME_MOUNT_PATH")
        if volume and _under(path, volume):
            return None
        where = f"outside the volume at {volume}" if volume else "and the service has no volume"
        return f"this is Railway, {path} is {where}, and a deploy starts from a fresh disk"
    for variable, platform in (("FLY_APP_NAME", "Fly.io"), ("RENDER", "Render")):
        if variable in environ and not _on_a_mount(path):
            return f"{variable} says this is {platform}, and {path} is not on a mounted volume: a deploy starts afresh"
    return None
