"""Where a consumer keeps its place in a feed: the seq of the last event it processed, and the log's epoch.

`CursorFile` writes atomically and durably — a temporary file, fsync, rename over the old one, fsync of the
directory — so after a crash the file holds either the old cursor or the new one, never a torn one.
Acknowledge an event only once it is processed: a restart then resumes after it, and at most the
events processed but not yet acknowledged are seen again (at-least-once).

`fsync=False` keeps the atomic replacement but leaves flushing to `sync()` (or the OS): a killed
process still resumes exactly, since the file is replaced when `ack` returns; only a power loss may
bring back the cursor of the last `sync()`, so events since then are seen again — never lost.

`overwrite=True` is for a cursor acknowledged many times a second (`hookstream listen`): creating a
file and renaming it costs a journal commit, about half a millisecond here, more than forwarding
an event. The cursor is then one fixed-size record at the start of the file, rewritten by a single
`pwrite` of fewer than 512 bytes: all or nothing for a killed process, and within one disk sector,
which drives write whole (the assumption SQLite's default "powersafe overwrite" makes too). The
file is still the same JSON, padded with spaces.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Protocol

from hookstream_client.models import Event

# An `overwrite` cursor's record: one write, well inside one 512-byte sector.
RECORD_BYTES = 256


class CursorStore(Protocol):
    """A place to keep a feed cursor; `events()` and `stream()` start from it and keep its epoch."""

    seq: int | None
    epoch: str | None

    def ack(self, event: Event) -> None:
        """Record that `event` (and every event before it) is processed."""

    def reset(self, epoch: str | None, seq: int | None = None) -> None:
        """Start over in the log of `epoch` (after `seq`, default the start)."""


class CursorFile:
    """A cursor kept in a small JSON file, written atomically after each acknowledgement."""

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self.overwrite = overwrite
        self.seq: int | None = None
        self.epoch: str | None = None
        self._fd: int | None = None
        self._load()

    def _load(self) -> None:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return
        try:
            saved = json.loads(text)
            seq, epoch = saved["seq"], saved.get("epoch")
            if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
                raise ValueError
            if epoch is not None and not isinstance(epoch, str):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"{self.path} is not a hookstream cursor file") from None
        self.seq, self.epoch = seq, epoch

    def ack(self, event: Event) -> None:
        """Save `event.seq` as the cursor."""
        self.save(event.seq, self.epoch)

    def reset(self, epoch: str | None, seq: int | None = None) -> None:
        """Start over in the log of `epoch`."""
        self.save(seq or 0, epoch)

    def save(self, seq: int, epoch: str | None) -> None:
        """Write the cursor: temp file, fsync, rename, fsync of the directory (or one in-place record)."""
        payload = json.dumps({"seq": seq, "epoch": epoch}).encode()
        if self.overwrite and len(payload) < RECORD_BYTES:
            record = payload.ljust(RECORD_BYTES - 1) + b"\n"
            if self._fd is None:
                self._replace(record)  # the first write makes a file of exactly one record
                self._fd = os.open(self.path, os.O_WRONLY)
            else:
                os.pwrite(self._fd, record, 0)
                if self.fsync:
                    os.fsync(self._fd)
        else:
            self.close()  # a replaced file is a new inode: an open descriptor would write to the old one
            self._replace(payload + b"\n")
        self.seq, self.epoch = seq, epoch

    def close(self) -> None:
        """Close the file an `overwrite` cursor keeps open."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _replace(self, payload: bytes) -> None:
        directory = self.path.parent
        fd, temp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=directory)
        try:
            os.write(fd, payload)
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.replace(temp, self.path)
        except BaseException:
            os.unlink(temp)
            raise
        if self.fsync:
            # The rename itself is durable only once the directory entry is.
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def sync(self) -> None:
        """Make the last write durable (for `fsync=False`): fsync the file, then its directory."""
        for target, flags in ((self.path, os.O_RDONLY), (self.path.parent, os.O_RDONLY)):
            fd = os.open(target, flags)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


class MemoryCursor:
    """A cursor kept in memory: for one process's lifetime, or a caller that stores it elsewhere."""

    def __init__(self, seq: int | None = None, epoch: str | None = None) -> None:
        self.seq = seq
        self.epoch = epoch

    def ack(self, event: Event) -> None:
        self.seq = event.seq

    def reset(self, epoch: str | None, seq: int | None = None) -> None:
        self.seq, self.epoch = seq or 0, epoch
