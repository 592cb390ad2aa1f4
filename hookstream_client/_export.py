"""`hookstream export`: a webhook's feed as JSON Lines, one envelope per line in seq order.

Pages of 1,000 are asked for as JSON Lines (`Accept: application/x-ndjson`): the body is the
envelopes one a line, the server's stored bytes, so it goes to the file as it came, and the page's
own fields are headers. A server from before JSON Lines pages answers JSON; that page is parsed and
cut into the same lines (`_lines.py`). The next page is asked for as soon as a page's headers (or
the end of a JSON body) give its last seq, before the page is checked and written, so the server
reads the next page while the client writes this one: one thread, one kept-alive connection of the
standard library's http.client. A thread fetching ahead did the same overlap, but on two loaded
cores its hand-offs cost more than they hid; httpx's chunked reads through h11 were once most of an
export's time, and httpx builds a TLS context per client even for plain HTTP (40-100 ms of a
command that may take two seconds). Every page is checked to continue the cursor (its first and
last lines are parsed, nothing between), and a pruned gap or a new epoch is reported, never
skipped silently.

The progress bar's total, on a terminal only (the bar is not drawn elsewhere): the server does not
count a feed, but a one-event page says whether any event follows a seq, so a binary search finds the
seq of the feed's newest event in about 2·log2(seq) tiny requests. The bar then measures seqs exported
out of the seqs up to that one: exact at both ends, and exact throughout for a webhook that sees every
event of its log.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from hookstream_client._api import USER_AGENT, error_of
from hookstream_client._lines import ACCEPT, is_lines, lines_page
from hookstream_client.cli import CommandError, credentials
from hookstream_client.errors import CursorAhead, TransportError

PAGE = 1000
TIMEOUT = 60.0


def resume_point(path: Path) -> int:
    """The seq of the last whole line of `path`, after cutting off a partial line a crash may have left."""
    with open(path, "rb+") as file:
        size = file.seek(0, os.SEEK_END)
        end, chunk = size, 1 << 16
        data = b""
        while end > 0:
            start = max(0, end - chunk)
            file.seek(start)
            data = file.read(end - start) + data
            end = start
            if data.count(b"\n") >= 2 or (end == 0 and b"\n" in data):
                break
        cut = data.rfind(b"\n") + 1
        keep = size - (len(data) - cut)
        if keep != size:
            file.truncate(keep)
        lines = data[:cut].splitlines()
        if not lines:
            return 0
        try:
            seq = json.loads(lines[-1])["seq"]
        except (ValueError, KeyError, TypeError):
            raise CommandError(f"{path}: the last line is not an event envelope; cannot --resume it") from None
        if not isinstance(seq, int):
            raise CommandError(f"{path}: the last line has no seq; cannot --resume it")
        return seq


class Answer:
    """A polling answer as http.client read it."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def raise_for_error(self) -> None:
        if self.status != 200:
            raise error_of(self.status, {k.lower(): v for k, v in self.headers.items()}, self.body)


class Connection:
    """One kept-alive connection to the server's polling route of one webhook, one request ahead at most."""

    def __init__(self, base_url: str, api_key: str, webhook_id: str) -> None:
        self.base_url = base_url
        self.url = urlsplit(base_url)
        self.headers = {"x-api-key": api_key, "user-agent": USER_AGENT, "accept": ACCEPT}
        self.path = f"{self.url.path.rstrip('/')}/v2/webhooks/{webhook_id}/events"
        self.connection: http.client.HTTPConnection | None = None
        self.pending = ""  # the path of the request whose answer comes next
        self.sent = False
        self.answered = False

    def page(self, after: int, limit: int) -> Answer:
        """The page of at most `limit` events after seq `after` (an error answer too)."""
        self.send(after, limit)
        return self.receive()

    def send(self, after: int, limit: int) -> None:
        """Ask for a page now; `receive` reads the answer (and asks again if the connection broke meanwhile)."""
        self.pending = f"{self.path}?limit={limit}&afterSeq={after}"
        try:
            (self.connection or self._connect()).request("GET", self.pending, headers=self.headers)
            self.sent = True
        except (OSError, http.client.HTTPException):
            self.close()

    def receive(self) -> Answer:
        for attempt in (1, 2):
            try:
                connection = self.connection or self._connect()
                if not self.sent:
                    connection.request("GET", self.pending, headers=self.headers)
                self.sent = False
                response = connection.getresponse()
                answer = Answer(response.status, response.msg, response.read())
                self.answered = True
                return answer
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if not self.answered:
                    raise TransportError(f"Cannot reach the hookstream server at {self.base_url}: {exc}") from exc
                if attempt == 2:  # a kept-alive connection may have been closed by the server: ask once more
                    raise TransportError(f"The connection to the hookstream server broke: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _connect(self) -> http.client.HTTPConnection:
        host, port = self.url.hostname or "localhost", self.url.port
        if self.url.scheme == "https":
            self.connection = http.client.HTTPSConnection(host, port, timeout=TIMEOUT)
        else:
            self.connection = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
        return self.connection

    def close(self) -> None:
        self.sent = False
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def newest_seq(connection: Connection, after: int) -> int:
    """The seq of the feed's newest event (or `after` when none follows it), by binary search on one-event pages."""

    def first_after(seq: int) -> int | None:
        answer = connection.page(seq, 1)
        try:
            answer.raise_for_error()
        except CursorAhead:
            return None
        return lines_page(answer.headers.get("content-type"), answer.headers, answer.body).first_seq

    low = first_after(after)
    if low is None:
        return after
    step, high = 1, None
    while high is None:
        probe = low + step
        found = first_after(probe)
        if found is None:
            high = probe
        else:
            low, step = found, step * 2
    while high - low > 1:
        middle = (low + high) // 2
        found = first_after(middle)
        if found is None:
            high = middle
        else:
            low = found
    return low


def _next_cursor(answer: Answer) -> tuple[int | None, bool]:
    """A page's last seq and whether more follow, without reading its events."""
    headers, body = answer.headers, answer.body
    if is_lines(headers.get("content-type")):
        last = headers.get("hookstream-last-seq")
        return (int(last) if last and last.isdigit() else None), headers.get("hookstream-has-more") == "true"
    # A JSON page's own fields follow its events: the last "lastSeq" is the page's, "hasMore" just before.
    at = body.rfind(b'"lastSeq":')
    more = body.startswith(b'"hasMore":true', body.rfind(b'"hasMore":', 0, at))
    tail = body[at + 10 : at + 31]
    digits = tail[: len(tail) - len(tail.lstrip(b"0123456789"))]
    return (int(digits) if digits else None), more


class Report:
    """What export says on stderr as it goes, as plain lines (for a pipe, a log file, cron)."""

    def page(self, cursor: int) -> None:
        """A page is written, up to seq `cursor`."""

    def gap(self, after: int) -> None:
        print(f"GAP: retention deleted feed events after seq {after}", file=sys.stderr)

    def close(self) -> None:
        pass


class ProgressBar(Report):
    """On a terminal: a bar over the seqs up to the feed's newest one when the export started."""

    def __init__(self, after: int, target: int) -> None:
        # rich only here: a terminal's export can spare the import time that a scripted one saves.
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )

        self.after, self.target = after, target
        self.console = Console(stderr=True, highlight=False)
        self.progress = Progress(
            TextColumn("[bold]export"),
            BarColumn(),
            TaskProgressColumn(),
            MofNCompleteColumn(),
            TextColumn("seqs"),
            TimeRemainingColumn(),
            console=self.console,
        )
        self.task = self.progress.add_task("export", total=max(target - after, 0))
        self.progress.start()

    def page(self, cursor: int) -> None:
        # Events appended during the export run past the target: the total grows with them.
        self.progress.update(self.task, total=max(self.target, cursor) - self.after, completed=cursor - self.after)

    def gap(self, after: int) -> None:
        self.console.print(f"[bold red]GAP:[/] retention deleted feed events after seq {after}")

    def close(self) -> None:
        self.progress.stop()


def export(args: argparse.Namespace) -> None:
    url, key = credentials(args)
    path = Path(args.output)
    after = args.after or 0
    if args.resume and path.exists():
        after = max(after, resume_point(path))
    elif path.exists() and path.stat().st_size > 0 and not args.resume:
        raise CommandError(f"{path} already exists: pass --resume to continue it, or choose another file")
    try:
        # Unbuffered: each page is one write of bytes already whole, and a buffer would only copy them again.
        output = open(path, "ab" if args.resume else "wb", buffering=0)
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror}") from None
    connection = Connection(url, key, args.webhook_id)
    with output:
        # An unknown webhook or a refused key is the first answer's error: one clear line, before any write.
        report = ProgressBar(after, newest_seq(connection, after)) if sys.stderr.isatty() else Report()
        try:
            written = _copy(connection, after, output, report)
        finally:
            report.close()
        # No fsync: a file cut short by a power loss is what --resume continues.
    print(f"exported {written} events to {path}" + (f" (after seq {after})" if after else ""), file=sys.stderr)


def _write(output: BinaryIO, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[output.write(view) or 0 :]


def _copy(connection: Connection, after: int, output: BinaryIO, report: Report) -> int:
    epoch = None
    cursor = after
    written = 0
    connection.send(after, PAGE)
    try:
        while True:
            answer = connection.receive()
            answer.raise_for_error()
            last, more = _next_cursor(answer)
            if more and last is not None:
                # Asked for before this page is checked and written: the server reads the next one meanwhile.
                connection.send(last, PAGE)
            page = lines_page(answer.headers.get("content-type"), answer.headers, answer.body)
            if epoch is None:
                epoch = page.epoch
            elif page.epoch != epoch:
                raise CommandError("the event log was recreated during the export (its epoch changed)")
            if page.pruned:
                report.gap(cursor)
            if (page.first_seq is not None and page.first_seq <= cursor) or page.last_seq != last:
                raise CommandError(f"the page after seq {cursor} does not continue the export")
            if page.count and page.last_seq is not None:
                _write(output, page.lines)
                cursor = page.last_seq
                written += page.count
                report.page(cursor)
            if not more or last is None:
                return written
    finally:
        connection.close()
