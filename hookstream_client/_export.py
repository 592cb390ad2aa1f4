"""`hookstream export`: a webhook's feed as JSON Lines, one envelope per line in seq order.

Pages of 1,000 are fetched by a thread one page ahead of the writer (the next cursor is the page's
`lastSeq`, found at the end of the body without parsing it), so the server's time and the
client's overlap. That thread reads pages with the standard library's http.client: for bodies of
half a megabyte it is several times faster than httpx, whose chunked reads through h11 were most
of an export's time. Each line is the server's envelope; every page is checked to continue the
cursor, and a pruned gap or a new epoch is reported, never skipped silently.

The progress bar's total: the server does not count a feed, but a one-event page says whether
any event follows a seq, so a binary search finds the seq of the feed's newest event in about
2·log2(seq) tiny requests. The bar then measures seqs exported out of the seqs up to that one:
exact at both ends, and exact throughout for a webhook that sees every event of its log.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from hookstream_client._api import USER_AGENT, Call, answer, error_from
from hookstream_client.cli import CommandError, credentials
from hookstream_client.client import Client
from hookstream_client.errors import CursorAhead, TransportError

PAGE = 1000
TIMEOUT = 60.0

loads: Callable[[bytes], Any]
dumps: Callable[[Any], bytes]
try:  # orjson, where installed (the server's install has it), parses and writes pages several times faster.
    import orjson

    loads, dumps = orjson.loads, orjson.dumps
except ImportError:  # pragma: no cover - the client alone
    loads = json.loads

    def dumps(value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


PAGE_HEAD = b'{"success":true,"events":['
PAGE_END = b'],"hasMore":'
# Between two envelopes of a page: the end of one's `data` object and its own, then the next's first key.
BETWEEN = b'}},{"id":"'


def lines(body: bytes, count: int) -> bytes | None:
    """The page's envelopes as JSON Lines, cut from the server's own bytes; None when they cannot be cut safely.

    Every boundary between envelopes reads `BETWEEN` (`data` is an envelope's last key and an object),
    but so may bytes inside an event's data. When the page holds exactly `count - 1` of them, where
    `count` is the number of events the parsed page has, they are the boundaries and nothing else.
    """
    end = body.rfind(PAGE_END)
    if not body.startswith(PAGE_HEAD) or end == -1:
        return None
    region = body[len(PAGE_HEAD) : end]
    if region.count(BETWEEN) != count - 1:
        return None
    return region.replace(BETWEEN, b'}}\n{"id":"') + b"\n"


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


def newest_seq(client: Client, webhook_id: str, after: int) -> int:
    """The seq of the feed's newest event (or `after` when none follows it), by binary search on one-event pages."""

    def first_after(seq: int) -> int | None:
        try:
            page = answer(
                client._send(Call("GET", f"/v2/webhooks/{webhook_id}/events", {"afterSeq": seq, "limit": 1})),
                whole=True,
            )
        except CursorAhead:
            return None
        events = page["events"]
        return int(events[0]["seq"]) if events else None

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


class Fetcher(threading.Thread):
    """Fetches pages one ahead of the writer, following each page's lastSeq."""

    def __init__(self, base_url: str, api_key: str, webhook_id: str, after: int) -> None:
        super().__init__(daemon=True)
        self.url = urlsplit(base_url)
        self.headers = {"x-api-key": api_key, "user-agent": USER_AGENT}
        self.path = f"{self.url.path.rstrip('/')}/v2/webhooks/{webhook_id}/events?limit={PAGE}&afterSeq="
        self.cursor = after
        # (afterSeq, body) per page, an error to raise, or None at the end.
        self.pages: queue.Queue[tuple[int, bytes] | BaseException | None] = queue.Queue(maxsize=2)
        self.stop = threading.Event()
        self.connection: http.client.HTTPConnection | None = None

    def _get(self, path: str) -> tuple[int, bytes, list[tuple[str, str]]]:
        for attempt in (1, 2):
            if self.connection is None:
                host, port = self.url.hostname or "localhost", self.url.port
                if self.url.scheme == "https":
                    self.connection = http.client.HTTPSConnection(host, port, timeout=TIMEOUT)
                else:
                    self.connection = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
            try:
                self.connection.request("GET", path, headers=self.headers)
                response = self.connection.getresponse()
                return response.status, response.read(), response.getheaders()
            except (OSError, http.client.HTTPException) as exc:
                self.connection.close()
                self.connection = None
                if attempt == 2:  # a kept-alive connection may have been closed by the server: retry once
                    raise TransportError(f"The connection to the hookstream server broke: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                status, body, headers = self._get(self.path + str(self.cursor))
                if status != 200:
                    raise error_from(httpx.Response(status, headers=headers, content=body))
                # The page's own fields follow its events: the last "lastSeq" is the page's, "hasMore" just before.
                last = body.rfind(b'"lastSeq":')
                more = body.startswith(b'"hasMore":true', body.rfind(b'"hasMore":', 0, last))
                self.pages.put((self.cursor, body))
                tail = body[last + 10 : last + 31]
                digits = tail[: len(tail) - len(tail.lstrip(b"0123456789"))]
                if not digits or not more:
                    break
                self.cursor = int(digits)
        except BaseException as exc:  # noqa: B036 - handed to the writer, which raises it
            self.pages.put(exc)
        finally:
            if self.connection is not None:
                self.connection.close()
        self.pages.put(None)


def export(args: argparse.Namespace) -> None:
    url, key = credentials(args)
    path = Path(args.output)
    after = args.after or 0
    if args.resume and path.exists():
        after = max(after, resume_point(path))
    elif path.exists() and path.stat().st_size > 0 and not args.resume:
        raise CommandError(f"{path} already exists: pass --resume to continue it, or choose another file")
    try:
        output = open(path, "ab" if args.resume else "wb", buffering=1 << 20)
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror}") from None
    err = Console(stderr=True, highlight=False)
    with output, Client(url, key) as client:
        client.get_webhook(args.webhook_id)  # an unknown webhook or a refused key: one clear line now
        target = newest_seq(client, args.webhook_id, after)
        written = _copy(Fetcher(url, key, args.webhook_id, after), after, target, output, err)
        # No fsync: a file cut short by a power loss is what --resume continues.
        output.flush()
    err.print(f"exported {written} events to {path}" + (f" (after seq {after})" if after else ""))


def _copy(fetcher: Fetcher, after: int, target: int, output: Any, err: Console) -> int:
    fetcher.start()
    epoch = None
    cursor = after
    written = 0
    progress = Progress(
        TextColumn("[bold]export"),
        BarColumn(),
        TaskProgressColumn(),
        MofNCompleteColumn(),
        TextColumn("seqs"),
        TimeRemainingColumn(),
        console=err,
        disable=not err.is_terminal,
    )
    with progress:
        task = progress.add_task("export", total=max(target - after, 0))
        try:
            while True:
                item = fetcher.pages.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                page_after, body = item
                page = loads(body)
                if epoch is None:
                    epoch = page.get("epoch")
                elif page.get("epoch") != epoch:
                    raise CommandError("the event log was recreated during the export (its epoch changed)")
                if page.get("pruned"):
                    err.print(f"[bold red]GAP:[/] retention deleted feed events after seq {page_after}")
                events = page["events"]
                if page_after != cursor or (events and events[0]["seq"] <= cursor):
                    raise CommandError(f"the page after seq {page_after} does not continue the export at {cursor}")
                if events:
                    output.write(lines(body, len(events)) or b"\n".join(map(dumps, events)) + b"\n")
                    cursor = events[-1]["seq"]
                    written += len(events)
                    # Events appended during the export run past the target: the total grows with them.
                    progress.update(task, total=max(target, cursor) - after, completed=cursor - after)
        finally:
            fetcher.stop.set()
    return written
