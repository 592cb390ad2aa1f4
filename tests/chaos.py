"""The fault suite's load and its completeness verifier.

Producers ingest batches with their own event ids and record every event a 201 acknowledged
(id and seq); a refused or cut-off batch is sent again with the same ids, which the server
dedupes. Streams and pollers follow the webhooks' feeds, resuming from their cursor after
every drop, and record each seq they were given. At the end `Workload.verify` reads the log
back and checks what a user would: every acknowledged event is in it exactly once at the seq
it was acknowledged with, and every reader's sequence is the feed's own, with no gap and no
duplicate, up to the head.

`HOOKSTREAM_CHAOS=long` makes each fault run longer (more rounds); `HOOKSTREAM_CHAOS_REPORT`
names a file each fault appends its figures to, one JSON object a line (`scripts/chaos`).
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from tests.server import ADMIN_TOKEN

LONG = os.environ.get("HOOKSTREAM_CHAOS", "") == "long"
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
# Fast heartbeats and checkpoints, so a silent stream and the credit bound show within a short run.
CHECKPOINT_SECONDS = 1.0
SERVER_ENV = {"HOOKSTREAM_HEARTBEAT_SECONDS": "1", "HOOKSTREAM_CHECKPOINT_INTERVAL": "1s"}
CREDITS_PER_DAY = 86400.0  # one credit a second: the bound reads in seconds
SERVER_ENV["HOOKSTREAM_CREDITS_PER_DAY"] = str(int(CREDITS_PER_DAY))


def rounds(short: int, long: int) -> int:
    """How many times a fault is injected: `short` in CI, `long` by hand."""
    return long if LONG else short


@dataclass
class Figures:
    """What one fault run measured, as docs/reliability.md reports it."""

    fault: str
    backend: str
    rounds: int = 0
    acknowledged: int = 0
    lost: int = 0
    moved: int = 0
    duplicates_in_log: int = 0
    readers: int = 0
    reader_events: int = 0
    gaps: int = 0
    duplicates: int = 0
    resumes: int = 0
    refused_503: int = 0
    other_errors: int = 0
    recovery_seconds: list[float] = field(default_factory=list)
    credits: float | None = None
    credits_bound: tuple[float, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def report(self) -> None:
        path = os.environ.get("HOOKSTREAM_CHAOS_REPORT")
        line = json.dumps(asdict(self))
        print(f"chaos: {line}")
        if path:
            with open(path, "a") as report:
                report.write(line + "\n")


class Targets:
    """The base URLs of the servers that are up right now; clients pick one by their number."""

    def __init__(self, urls: Callable[[], list[str]]) -> None:
        self._urls = urls

    def url(self, n: int) -> str:
        urls = self._urls() or [""]
        return urls[n % len(urls)]


@dataclass
class Reader:
    """One stream or poller: the seqs it was given, in order, across every resume."""

    name: str
    webhook_id: str
    seqs: list[int] = field(default_factory=list)
    # Times it was served again after losing its server (a dropped stream, a failed poll).
    resumes: int = 0
    connected: bool = False
    dropped: bool = False

    def served(self) -> None:
        if self.dropped:
            self.resumes += 1
        self.connected, self.dropped = True, False

    def lost(self) -> None:
        self.dropped = self.dropped or self.connected

    @property
    def cursor(self) -> int:
        return self.seqs[-1] if self.seqs else 0


class Workload:
    """Concurrent producers, streams and pollers against whichever servers are up."""

    def __init__(
        self,
        targets: Targets,
        api_key: str,
        account_id: str,
        webhook_ids: list[str],
        *,
        producers: int = 4,
        streams: int = 50,
        pollers: int = 4,
        batch: int = 5,
        reader_targets: Targets | None = None,
    ) -> None:
        self.targets = targets
        self.api_key = api_key
        self.account_id = account_id
        self.webhook_ids = webhook_ids
        self.batch = batch
        self.acknowledged: dict[str, int] = {}
        self.moved: set[str] = set()
        self.refused_503 = 0
        self.reader_targets = reader_targets or targets
        self.other_errors: list[str] = []
        self.last_201 = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._producing = threading.Event()
        self._producing.set()
        self.readers = [Reader(f"stream-{n}", webhook_ids[n % len(webhook_ids)]) for n in range(streams)]
        self.pollers = [Reader(f"poller-{n}", webhook_ids[n % len(webhook_ids)]) for n in range(pollers)]
        self._threads = [threading.Thread(target=self._produce, args=(n,), daemon=True) for n in range(producers)]
        self._threads += [
            threading.Thread(target=self._stream, args=(n, reader), daemon=True)
            for n, reader in enumerate(self.readers)
        ]
        self._threads += [
            threading.Thread(target=self._poll, args=(n, reader), daemon=True) for n, reader in enumerate(self.pollers)
        ]
        self._ids = itertools.count()

    def start(self) -> Workload:
        for thread in self._threads:
            thread.start()
        return self

    def pause_producers(self) -> None:
        self._producing.clear()

    def resume_producers(self) -> None:
        self._producing.set()

    def stop(self) -> None:
        self._stop.set()
        self._producing.set()
        for thread in self._threads:
            thread.join(30)

    @property
    def auth(self) -> dict[str, str]:
        return {"x-api-key": self.api_key}

    def wait_for_acknowledged(self, count: int, timeout: float = 30.0) -> None:
        """Block until `count` more events are acknowledged than now."""
        target = len(self.acknowledged) + count
        deadline = time.monotonic() + timeout
        while len(self.acknowledged) < target:
            assert time.monotonic() < deadline, f"only {len(self.acknowledged)} of {target} events acknowledged"
            time.sleep(0.02)

    def wait_for_201_after(self, moment: float, timeout: float = 60.0) -> float:
        """Seconds from `moment` to the first 201 after it: the recovery time."""
        deadline = time.monotonic() + timeout
        while self.last_201 <= moment:
            assert time.monotonic() < deadline, f"no ingest acknowledged within {timeout}s of the fault"
            time.sleep(0.01)
        return self.last_201 - moment

    # Producers

    def _produce(self, n: int) -> None:
        with httpx.Client(timeout=10) as http:
            while not self._stop.is_set():
                self._producing.wait()
                if self._stop.is_set():
                    return
                ids = [f"evt_chaos_{n}_{next(self._ids)}" for _ in range(self.batch)]
                body = {"events": [{"id": event_id, "type": "message.new", "data": {"n": n}} for event_id in ids]}
                # The same batch goes again until it is acknowledged: its ids make the retry safe.
                while not self._stop.is_set():
                    url = self.targets.url(n)
                    try:
                        response = http.post(f"{url}/v2/accounts/{self.account_id}/events", json=body, headers=ADMIN)
                    except (httpx.TransportError, httpx.InvalidURL):
                        time.sleep(0.05)
                        continue
                    if response.status_code == 201:
                        self._acknowledge(response.json()["data"]["events"])
                        break
                    if response.status_code == 503:
                        error = response.json()["error"]
                        with self._lock:
                            self.refused_503 += 1
                            if error["code"] != "storage_unavailable" and error["code"] != "shutting_down":
                                self.other_errors.append(f"503 {error['code']}")
                        assert response.headers.get("retry-after"), "a 503 without Retry-After"
                        # Honour Retry-After, capped so a short run still sees the recovery.
                        time.sleep(min(float(response.headers["retry-after"]), 0.2))
                        continue
                    with self._lock:
                        self.other_errors.append(f"ingest {response.status_code} {response.text[:200]}")
                    time.sleep(0.1)

    def _acknowledge(self, events: list[dict[str, Any]]) -> None:
        with self._lock:
            for event in events:
                previous = self.acknowledged.setdefault(event["id"], event["seq"])
                if previous != event["seq"]:
                    self.moved.add(event["id"])
            self.last_201 = time.monotonic()

    # Readers

    def _stream(self, n: int, reader: Reader) -> None:
        with httpx.Client(timeout=httpx.Timeout(10, read=5)) as http:
            while not self._stop.is_set():
                url = self.reader_targets.url(n)
                headers = {**self.auth, "last-event-id": str(reader.cursor)}
                try:
                    with http.stream(
                        "GET", f"{url}/v2/webhooks/{reader.webhook_id}/stream", headers=headers
                    ) as response:
                        if response.status_code != 200:
                            self._unexpected(response.status_code, "stream")
                            time.sleep(0.1)
                            continue
                        reader.served()
                        # An event is a whole frame with data; the opening frame's bare `id:` only sets the cursor.
                        frame_id, has_data = None, False
                        for line in response.iter_lines():
                            if line.startswith("id: "):
                                frame_id = int(line[4:])
                            elif line.startswith("data: "):
                                has_data = True
                            elif not line:
                                if frame_id is not None and has_data:
                                    reader.seqs.append(frame_id)
                                frame_id, has_data = None, False
                            if self._stop.is_set():
                                return
                except (httpx.TransportError, httpx.InvalidURL):
                    pass
                reader.lost()
                time.sleep(0.05)

    def _poll(self, n: int, reader: Reader) -> None:
        with httpx.Client(timeout=10) as http:
            while not self._stop.is_set():
                url = self.reader_targets.url(n)
                params = {"afterSeq": reader.cursor, "limit": 100, "wait": 1}
                try:
                    response = http.get(
                        f"{url}/v2/webhooks/{reader.webhook_id}/events", params=params, headers=self.auth
                    )
                except (httpx.TransportError, httpx.InvalidURL):
                    reader.lost()
                    time.sleep(0.05)
                    continue
                if response.status_code != 200:
                    self._unexpected(response.status_code, "poll")
                    reader.lost()
                    time.sleep(0.1)
                    continue
                reader.served()
                reader.seqs.extend(event["seq"] for event in response.json()["events"])

    def _unexpected(self, status: int, what: str) -> None:
        # A reader may be told 503 while the database is away; anything else is a finding.
        if status != 503:
            with self._lock:
                self.other_errors.append(f"{what} {status}")

    # The verifier

    def feed(self, url: str, webhook_id: str) -> list[dict[str, Any]]:
        """The whole feed of a webhook, read page by page."""
        events: list[dict[str, Any]] = []
        cursor = 0
        with httpx.Client(base_url=url, timeout=30) as http:
            while True:
                response = http.get(
                    f"/v2/webhooks/{webhook_id}/events", params={"afterSeq": cursor, "limit": 1000}, headers=self.auth
                )
                assert response.status_code == 200, response.text
                page = response.json()
                events.extend(page["events"])
                if page["lastSeq"] is not None:
                    cursor = page["lastSeq"]
                if not page["hasMore"]:
                    return events

    def verify(self, url: str, figures: Figures, catch_up: float = 30.0) -> Figures:
        """Stop the load, read the log back from `url`, and check completeness; the figures say what was found."""
        self.pause_producers()
        truth = {webhook_id: [event["seq"] for event in self.feed(url, webhook_id)] for webhook_id in self.webhook_ids}
        # Readers get the time to reach the head before the load stops.
        deadline = time.monotonic() + catch_up
        everyone = self.readers + self.pollers
        while time.monotonic() < deadline:
            if all(reader.cursor >= (truth[reader.webhook_id] or [0])[-1] for reader in everyone):
                break
            time.sleep(0.1)
        self.stop()
        log = self.feed(url, self.webhook_ids[0])
        stored: dict[str, int] = {}
        for event in log:
            if event["id"] in stored:
                figures.duplicates_in_log += 1
            stored[event["id"]] = event["seq"]
        figures.acknowledged = len(self.acknowledged)
        figures.lost = sum(1 for event_id in self.acknowledged if event_id not in stored)
        figures.moved = len(self.moved) + sum(
            1 for event_id, seq in self.acknowledged.items() if event_id in stored and stored[event_id] != seq
        )
        figures.readers = len(everyone)
        figures.refused_503 = self.refused_503
        figures.other_errors = len(self.other_errors)
        for reader in everyone:
            seqs, expected = reader.seqs, truth[reader.webhook_id]
            figures.reader_events += len(seqs)
            figures.resumes += reader.resumes
            figures.duplicates += len(seqs) - len(set(seqs))
            # Gap-free: the reader got the feed itself from its start, in order, up to the head, and nothing else.
            seen = set(seqs)
            head = expected[-1] if expected else 0
            # Seqs past the head read back may be events appended since; any other one is not in the feed.
            foreign = {seq for seq in seen - set(expected) if seq <= head}
            missing = set(expected) - seen
            figures.gaps += len(missing) + len(foreign)
            repeated = sorted({seq for seq in seqs if seqs.count(seq) > 1}) if len(seqs) != len(seen) else []
            if (missing or foreign or repeated) and "first_bad_reader" not in figures.extra:
                figures.extra["first_bad_reader"] = {
                    "name": reader.name,
                    "missing": sorted(missing)[:10],
                    "foreign": sorted(foreign)[:10],
                    "repeated": repeated[:10],
                    "head": head,
                }
            if len(seqs) == len(seen) and sorted(seqs) != seqs:
                figures.gaps += 1  # out of order: the reader's cursor passed an event it had not been given
        return figures

    def assert_complete(self, figures: Figures) -> None:
        """The guarantees, as assertions with the figures in the message."""
        summary = json.dumps(asdict(figures))
        assert figures.acknowledged > 0, summary
        assert figures.lost == 0, summary
        assert figures.moved == 0, summary
        assert figures.duplicates_in_log == 0, summary
        assert figures.gaps == 0, summary
        assert figures.duplicates == 0, summary
        assert not self.other_errors, f"{self.other_errors[:5]} {summary}"


def check_credits(
    url: str, api_key: str, account_id: str, elapsed: float, uptime: float, kills: int
) -> tuple[float, float, float]:
    """The account's metered credits and the bound they must sit in (SPEC §7).

    Never more than the wall-clock time since monitoring began (nothing double-counted); never
    less than the time a server was up, less one checkpoint interval per crash (what a crash may
    lose) and a little for the monitor to resume at start.
    """
    response = httpx.get(f"{url}/v2/accounts/{account_id}/usage", headers={"x-api-key": api_key}, timeout=10)
    assert response.status_code == 200, response.text
    credits = float(response.json()["data"]["credits_consumed"])
    per_second = CREDITS_PER_DAY / 86400
    high = (elapsed + 0.5) * per_second
    low = max(0.0, (uptime - kills * (CHECKPOINT_SECONDS + 0.5) - 1.0) * per_second)
    return credits, low, high


def new_tenant(url: str, webhooks: int = 5) -> tuple[str, str, list[str]]:
    """An API key, an account and `webhooks` hosted webhooks of it (every filter `all`)."""
    with httpx.Client(base_url=url, timeout=10) as http:
        key = http.post("/v2/admin/api-keys", json={"name": "chaos"}, headers=ADMIN).json()["data"]["api_key"]
        account = f"acc_chaos_{uuid.uuid4().hex[:8]}"
        response = http.post("/v2/accounts", json={"account_id": account}, headers={"x-api-key": key})
        assert response.status_code == 201, response.text
        ids = []
        for _ in range(webhooks):
            response = http.post("/v2/webhooks", json={"account_id": account}, headers={"x-api-key": key})
            assert response.status_code == 201, response.text
            ids.append(response.json()["data"]["webhook_id"])
    return key, account, ids
