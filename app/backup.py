"""Backups of a SQLite log: a consistent copy taken while the server runs, and putting one back.

`backup` uses SQLite's online backup API from a connection of its own, copying every page in one
step: that step reads one snapshot, so the copy holds exactly the transactions committed when it
began (every event acknowledged by then, since ingest answers only after its commit) while the
server, in WAL mode, goes on writing. The copy is written beside the target and renamed into place,
so a half-written backup never sits under the target's name.

`restore` needs every server process stopped: it switches the target out of WAL mode first, which
folds the WAL into the file and fails while any other connection is open, so an old WAL can never be
replayed over the restored pages. The restored file keeps the backup's epoch, so cursors stay valid.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from typing import NamedTuple


class BackupError(Exception):
    """A backup or restore that cannot be done; the message says why."""


class LogSummary(NamedTuple):
    """What a SQLite log holds, as a backup or restore reports it."""

    epoch: str
    head_seq: int
    events: int


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def _summary(conn: sqlite3.Connection, path: str) -> LogSummary:
    """The log's epoch, newest seq and event count; BackupError when `path` is no hookstream database."""
    try:
        epoch = conn.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
        head = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path} is not a hookstream database ({exc})") from None
    if epoch is None:
        raise BackupError(f"{path} is not a hookstream database (it has no epoch)")
    return LogSummary(epoch[0], head[0] if head else 0, events)


def _holds_data(conn: sqlite3.Connection) -> bool:
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not tables:
        return False
    if not tables >= {"api_keys", "accounts", "webhooks", "events"}:
        return True  # some other database: never replaced without --force
    # A migrated but unused log (the release phase creates one) holds nothing worth keeping.
    return any(
        conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() for table in ("api_keys", "accounts", "events")
    )


def _copy(source: sqlite3.Connection, target: str) -> LogSummary:
    """Copy `source` to `target` by way of a temporary file beside it, renamed into place once durable."""
    directory = os.path.dirname(target)
    try:
        handle, partial = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(target)}.", suffix=".part")
    except OSError as exc:
        raise BackupError(f"cannot write {target}: {exc.strerror}") from None
    os.close(handle)
    try:
        copy = _connect(partial)
        try:
            source.backup(copy)  # every page in one step: one snapshot
            # A single self-contained file: no -wal beside it to lose when it is copied elsewhere.
            copy.execute("PRAGMA journal_mode=DELETE")
            check = copy.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise BackupError(f"the copy failed SQLite's check: {check}")
            summary = _summary(copy, target)
        finally:
            copy.close()
        with open(partial, "rb") as file:
            os.fsync(file.fileno())
        os.replace(partial, target)
    except OSError as exc:
        raise BackupError(f"cannot write {target}: {exc.strerror}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)  # the rename itself survives a crash
    finally:
        os.close(descriptor)
    return summary


def backup(database: str, target: str) -> LogSummary:
    """Write a consistent copy of the SQLite log at `database` to `target`, while servers may be writing to it."""
    database, target = os.path.abspath(database), os.path.abspath(target)
    if not os.path.isfile(database):
        raise BackupError(f"there is no database at {database} (DATABASE_URL)")
    if target in (database, f"{database}-wal", f"{database}-shm"):
        raise BackupError(f"{target} is the live database itself; choose another path")
    if os.path.isdir(target):
        raise BackupError(f"cannot write {target}: it is a directory")
    source = _connect(database)
    try:
        _summary(source, database)
        return _copy(source, target)
    finally:
        source.close()


def restore(backup_file: str, database: str, *, force: bool = False) -> LogSummary:
    """Put the backup at `backup_file` in place as the SQLite log at `database`; every server must be stopped."""
    backup_file, database = os.path.abspath(backup_file), os.path.abspath(database)
    if not os.path.isfile(backup_file):
        raise BackupError(f"there is no backup at {backup_file}")
    if backup_file == database:
        raise BackupError(f"{backup_file} is the database itself; restore from a copy")
    source = _connect(backup_file)
    try:
        _summary(source, backup_file)
        os.makedirs(os.path.dirname(database), exist_ok=True)
        if os.path.exists(database):
            target = sqlite3.connect(database, isolation_level=None, timeout=0)
            try:
                try:
                    mode = target.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
                except sqlite3.OperationalError:
                    mode = "wal"
                if mode != "delete":
                    raise BackupError(f"{database} is in use: stop every hookstream process using it, then restore")
                if not force and _holds_data(target):
                    raise BackupError(f"{database} already holds a log; pass --force to replace it with the backup")
            except sqlite3.DatabaseError as exc:
                if not force:
                    raise BackupError(f"{database} is not an empty hookstream database ({exc}); pass --force") from None
            finally:
                target.close()
        # The target's WAL is folded in (or it is garbage beside no file): none may outlive the old pages.
        for leftover in (f"{database}-wal", f"{database}-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)
        return _copy(source, database)
    finally:
        source.close()
