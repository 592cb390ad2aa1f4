"""Cross-process wake-ups for processes sharing one SQLite file: a datagram to each of them per commit.

SQLite tells no one about a commit. A process that commits sends its new head seq as
one Unix datagram to every other process that has the same database open; the receiver
reads it on its event loop (no thread, no timer) and catches up from the database. An
idle server costs nothing, and a wake-up takes one `sendto` and one loop turn, tens of
microseconds (docs/benchmarks.md compares it with polling `PRAGMA data_version` and with
inotify on the -wal file).

Each process binds a socket in Linux's abstract namespace, named after the database's
path and the process, and leaves a marker file of the same name in a directory beside
the database, so the others can find it. An abstract socket disappears with its process,
so a process killed with kill -9 leaves only its marker, which the next sender finds
refused and removes. Where abstract sockets do not exist (not Linux), `open` returns
False and the backend's periodic check of the head is the only wake-up.

A webhook change (stop, start, update, delete) travels the same way, as `w` and the
webhook's id: the receiver learns which webhook to look at again without reading a
table of changes, and a change costs the database nothing more. Unlike a head, which
the next wake-up or the periodic check repeats, a change is told once, so a datagram
that finds a peer's queue full (Linux queues only `net.unix.max_dgram_qlen`, often 10,
per socket) is sent again a moment later instead of being dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import secrets
import socket
import sys
from collections.abc import Callable

# Gone peers: the marker's process died, or never bound its socket.
_GONE = (errno.ECONNREFUSED, errno.ENOENT)
# The first wait before sending again a webhook change a peer's full queue refused; it doubles, 9 times (2.5 s).
_RETRY_SECONDS = 0.005
_RETRIES = 9
_WEBHOOK = b"w"


class WakeChannel:
    """This process's socket for one database, and the way to every other process's."""

    def __init__(self, database_path: str) -> None:
        real = os.path.realpath(database_path)
        self.directory = real + "-wake"
        self._prefix = "hookstream-" + hashlib.blake2b(real.encode(), digest_size=8).hexdigest() + "-"
        self._name = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def open(self, on_head: Callable[[int], None], on_webhook: Callable[[str], None] | None = None) -> bool:
        """Start receiving other processes' head seqs and webhook changes; False when this platform cannot."""
        if not sys.platform.startswith("linux"):
            return False
        os.makedirs(self.directory, exist_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind(self._address(self._name))
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._receive, on_head, on_webhook)
        # Written after the bind: a sender that finds the marker finds the socket.
        with open(os.path.join(self.directory, self._name), "x"):
            pass
        return True

    def close(self) -> None:
        if self._sock is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.directory, self._name))
        if self._loop is not None:
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        self._sock = None

    def notify(self, head_seq: int) -> None:
        """Tell every other process with this database open that the head is now `head_seq`."""
        sock = self._sock
        if sock is None:
            return
        message = str(head_seq).encode()
        for name in self._peer_names():
            # A full queue is of wake-ups it has not read yet: it will catch up anyway.
            self._send(sock, message, name)

    def notify_webhook(self, webhook_id: str) -> None:
        """Tell every other process with this database open that this webhook changed."""
        sock = self._sock
        if sock is None:
            return
        message = _WEBHOOK + webhook_id.encode()
        for name in self._peer_names():
            if not self._send(sock, message, name):
                self._retry(message, name, 0)

    def _retry(self, message: bytes, name: str, tried: int) -> None:
        if self._loop is not None and tried < _RETRIES:
            self._loop.call_later(_RETRY_SECONDS * 2**tried, self._send_again, message, name, tried + 1)

    def _send_again(self, message: bytes, name: str, tried: int) -> None:
        if self._sock is not None and not self._send(self._sock, message, name):
            self._retry(message, name, tried)

    def _send(self, sock: socket.socket, message: bytes, name: str) -> bool:
        """Send one datagram to a peer; False only when its queue is full (a gone peer's marker is removed)."""
        try:
            sock.sendto(message, self._address(name))
        except BlockingIOError:
            return False
        except OSError as exc:
            if exc.errno in _GONE:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.directory, name))
        return True

    def _peer_names(self) -> list[str]:
        # Listed at every commit (microseconds for a few names): a directory's mtime is too coarse to cache on.
        try:
            return [name for name in os.listdir(self.directory) if name != self._name]
        except FileNotFoundError:
            return []

    def _receive(self, on_head: Callable[[int], None], on_webhook: Callable[[str], None] | None) -> None:
        assert self._sock is not None
        newest = 0
        changed: list[str] = []
        while True:
            try:
                message = self._sock.recv(256)
            except (BlockingIOError, InterruptedError):
                break
            if message.startswith(_WEBHOOK):
                changed.append(message[1:].decode(errors="replace"))
                continue
            with contextlib.suppress(ValueError):
                newest = max(newest, int(message))
        if newest:
            on_head(newest)
        if on_webhook is not None:
            for webhook_id in dict.fromkeys(changed):
                on_webhook(webhook_id)

    def _address(self, name: str) -> str:
        # A leading NUL puts the name in the abstract namespace: no file, no path length limit.
        return "\0" + self._prefix + name
