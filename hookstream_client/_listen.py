"""`hookstream listen`: follow a webhook's stream and POST each event to a local handler, as custom mode would.

Each event is sent alone, in seq order, and retried with backoff until the handler answers 2xx; only
then is the cursor file rewritten (atomically), and only then is the next event sent. So a
listener that is killed, or loses its connection, or whose handler fails for a while, resumes
after the last acknowledged event: none is lost or reordered, and at most the one in flight when
it died is sent again (handlers dedupe by `webhook-id`, as with any Standard Webhooks sender).

The cursor is one record rewritten in place (`CursorFile(overwrite=True)`), done before the next
event goes out; the fsync that makes it survive a power loss runs in a thread, at most once a
second (and at exit). A rename and two fsyncs per event would cost more than forwarding it, and a
power loss takes the local handler down too: after one, at most the last second's events are
sent again.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import threading
import time
from pathlib import Path

import httpx

from hookstream_client._console import StatusLine
from hookstream_client.cli import EXIT_USAGE, CommandError, credentials
from hookstream_client.client import Client
from hookstream_client.cursor import CursorFile
from hookstream_client.errors import EpochChanged
from hookstream_client.models import Event
from hookstream_client.signing import SECRET_PREFIX, new_secret, signed_headers

MAX_BACKOFF = 30.0
FORWARD_TIMEOUT = 30.0
SYNC_EVERY = 1.0


def forward_url(raw: str) -> str:
    """The --forward-to URL, if it is an http(s) URL with a host."""
    try:
        url = httpx.URL(raw)
    except (httpx.InvalidURL, TypeError):
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise CommandError(f"--forward-to must be an http:// or https:// URL, not {raw!r}", EXIT_USAGE)
    return raw


def local_secret(cursor_path: Path, given: str | None) -> tuple[str, Path | None]:
    """The secret to sign with: the one given, else the one kept beside the cursor file (made on first use)."""
    if given is not None:
        if not given.startswith(SECRET_PREFIX):
            raise CommandError("--secret must be a whsec_ secret", EXIT_USAGE)
        return given, None
    path = cursor_path.with_name(cursor_path.name + ".secret")
    try:
        kept = path.read_text().strip()
    except FileNotFoundError:
        kept = ""
    except OSError as exc:
        raise CommandError(f"cannot read the secret file {path}: {exc.strerror}") from None
    if kept.startswith(SECRET_PREFIX):
        return kept, path
    secret = new_secret()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(secret + "\n")
    except OSError as exc:
        raise CommandError(f"cannot write the secret file {path}: {exc.strerror}") from None
    return secret, path


def open_cursor(path: Path, after: int | None) -> CursorFile:
    """The cursor file, written once now so an unwritable place fails before anything is forwarded."""
    try:
        cursor = CursorFile(path, fsync=False, overwrite=True)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"cannot read the cursor file {path}: {exc.strerror}") from None
    fresh = cursor.seq is None and after is None
    try:
        cursor.save(cursor.seq if cursor.seq is not None else after or 0, cursor.epoch)
        cursor.sync()
    except OSError as exc:
        raise CommandError(f"cannot write the cursor file {path}: {exc.strerror or exc}") from None
    if fresh:
        cursor.seq = None  # a first run: the whole retained feed, with no gap to report for it
    return cursor


class Syncer(threading.Thread):
    """Makes the cursor file durable at most once a second while acknowledgements come in."""

    def __init__(self, cursor: CursorFile) -> None:
        super().__init__(daemon=True)
        self.cursor = cursor
        self.synced = cursor.seq
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(SYNC_EVERY):
            self.sync()

    def sync(self) -> None:
        seq = self.cursor.seq
        if seq != self.synced:
            self.cursor.sync()
            self.synced = seq

    def stop(self) -> None:
        self.done.set()
        self.join()
        self.sync()


class Forwarder:
    """POSTs events to the handler, signed, each until it answers 2xx."""

    def __init__(self, url: str, secret: str, status: StatusLine) -> None:
        self.url = url
        self.secret = secret
        self.status = status
        self.http = httpx.Client(timeout=FORWARD_TIMEOUT, follow_redirects=False)

    def close(self) -> None:
        self.http.close()

    def deliver(self, event: Event) -> None:
        """Send `event` until the handler takes it."""
        body = json.dumps(event.to_json(), separators=(",", ":"), ensure_ascii=False).encode()
        failures = 0
        while True:
            headers = signed_headers(self.secret, event.id, body)
            headers["content-type"] = "application/json"
            headers["webhook-seq"] = str(event.seq)
            headers["user-agent"] = "hookstream-listen"
            started = time.perf_counter()
            hint = None
            try:
                response = self.http.post(self.url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                answer = f"unreachable ({type(exc).__name__})"
            else:
                millis = (time.perf_counter() - started) * 1000
                answer = f"{response.status_code} ({millis:.0f} ms)"
                if 200 <= response.status_code < 300:
                    self.status.forwarded(event, answer)
                    return
                if response.status_code in (429, 503):
                    raw = response.headers.get("retry-after", "")
                    hint = float(raw) if raw.isdigit() else None
            failures += 1
            delay = hint if hint is not None else min(0.25 * 2 ** (failures - 1), MAX_BACKOFF)
            delay *= random.uniform(0.8, 1.2) if hint is None else 1.0
            self.status.refused(event, answer, delay)
            time.sleep(delay)


def listen(args: argparse.Namespace) -> None:
    url, key = credentials(args)
    target = forward_url(args.forward_to)
    cursor_path = Path(args.cursor_file or f"hookstream-{args.webhook_id}.cursor")
    cursor = open_cursor(cursor_path, args.after)
    status = StatusLine()
    with Client(url, key) as client:
        client.get_webhook(args.webhook_id)  # an unknown webhook or a refused key: one clear line now
        secret, secret_path = local_secret(cursor_path, args.secret)
        where = f" (kept in {secret_path})" if secret_path else ""
        status.note(f"forwarding webhook {args.webhook_id} to {target}")
        status.note(f"signing secret: {secret}{where}")
        where_from = "the start of the feed" if cursor.seq is None else f"after seq {cursor.seq}"
        status.note(f"cursor: {cursor_path}, from {where_from}")
        forwarder = Forwarder(target, secret, status)
        syncer = Syncer(cursor)
        syncer.start()
        try:
            events = client.stream(args.webhook_id, cursor=cursor, on_status=status.connection, on_pruned=status.pruned)
            with status:
                for event in events:
                    forwarder.deliver(event)
                    cursor.ack(event)
        except EpochChanged as exc:
            raise CommandError(f"{exc.message} Delete {cursor_path} to start over.") from None
        except OSError as exc:
            raise CommandError(f"cannot write the cursor file {cursor_path}: {exc.strerror or exc}") from None
        finally:
            forwarder.close()
            syncer.stop()
            cursor.close()
    status.note("the webhook is stopped; start it and run listen again to go on")
