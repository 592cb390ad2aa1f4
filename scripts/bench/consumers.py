"""The consumer rows: `hookstream listen` against its receiver's own ceiling, `hookstream export` against replay.

listen: the feed is filled first, then `hookstream listen` forwards it, one event at a time, to a
bare Starlette handler; the rate is taken at the handler (first to last arrival). The ceiling is
the same handler fed by the same HTTP client listen uses (httpx, one keep-alive connection, one
request at a time, as listen must to keep seq order) posting the same signed bodies, prepared in
advance. The ratio is what following the stream, signing and the cursor write cost.

export: `hookstream export` of the first N events of a generated log to a file, against the
replay row's client (http.client walking lastSeq, parsing nothing) on the same server. export asks
for JSON Lines pages; the replay client reads the JSON page. export runs without a terminal here,
so it draws no progress bar and makes no binary search for the bar's total.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import orjson
from figures import Row
from logs import EVENT_TYPE, build, create_tenant, payload
from procs import ADMIN_TOKEN, PYTHON, ROOT, anchor_app, hookstream, request
from workloads import READ_ENV, CheckFailed, Plan, _replay_http

from hookstream_client import signed_headers

SECRET = "whsec_" + "YmVuY2gtYmVuY2gtYmVuY2gtYmVuY2gt"


def _stats(port: int) -> dict[str, float]:
    status, body = request(port, "GET", "/stats")
    assert status == 200, body
    stats: dict[str, float] = orjson.loads(body)
    return stats


def _rate(stats: dict[str, float]) -> float:
    return (stats["count"] - 1) / max(stats["last_at"] - stats["first_at"], 1e-9)


def _fill(port: int, account: str, events: int, size: int) -> None:
    admin = {"authorization": f"Bearer {ADMIN_TOKEN}", "content-type": "application/json"}
    for start in range(0, events, 1000):
        batch = {"events": [{"type": EVENT_TYPE, "data": payload(n, size)} for n in range(start, start + 1000)]}
        status, body = request(port, "POST", f"/v2/accounts/{account}/events", orjson.dumps(batch), admin)
        if status != 201:
            raise CheckFailed(f"listen: ingest answered {status}: {body[:200]!r}")


def _ceiling(port: int, events: int, size: int) -> float:
    """The handler fed by httpx over one connection, one request at a time, bodies signed beforehand."""
    request(port, "POST", "/reset")
    bodies = []
    for n in range(1, events + 1):
        body = orjson.dumps({"id": f"evt_{n}", "seq": n, "type": EVENT_TYPE, "data": payload(n, size)})
        headers = {
            **signed_headers(SECRET, f"evt_{n}", body),
            "webhook-seq": str(n),
            "content-type": "application/json",
        }
        bodies.append((body, headers))
    with httpx.Client(timeout=30) as http:
        for body, headers in bodies:
            response = http.post(f"http://127.0.0.1:{port}/hook", content=body, headers=headers)
            if response.status_code != 204:
                raise CheckFailed(f"listen ceiling: handler answered {response.status_code}")
    stats = _stats(port)
    if stats["count"] != events or stats["disorder"]:
        raise CheckFailed(f"listen ceiling: {stats}")
    return _rate(stats)


def _listen(plan: Plan, server_port: int, key: str, webhook: str, handler_port: int, events: int) -> float:
    request(handler_port, "POST", "/reset")
    cursor = plan.workdir / f"listen-{time.monotonic_ns()}.cursor"
    env = {**os.environ, "HOOKSTREAM_URL": f"http://127.0.0.1:{server_port}", "HOOKSTREAM_API_KEY": key}
    argv = [PYTHON, "-m", "app.cli", "listen", webhook, "--forward-to", f"http://127.0.0.1:{handler_port}/hook"]
    argv += ["--cursor-file", str(cursor), "--after", "0"]
    with open(plan.workdir / "listen.log", "ab") as log:
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + max(120.0, events / 100)
        while _stats(handler_port)["count"] < events:
            if process.poll() is not None or time.monotonic() > deadline:
                raise CheckFailed(f"listen: forwarded {_stats(handler_port)['count']} of {events}; see listen.log")
            time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(30)
    stats = _stats(handler_port)
    saved = json.loads(cursor.read_text())["seq"]
    if stats["count"] != events or stats["disorder"] or saved != events:
        raise CheckFailed(f"listen: handler saw {stats}, cursor at {saved}, expected {events} in order")
    return _rate(stats)


def listen(plan: Plan) -> list[Row]:
    """`hookstream listen` forwarding a filled feed to a local handler vs that handler's own ceiling."""
    events = plan.listen_events
    row = Row(
        "listen",
        f"events/s forwarded to a local handler, {events:,} events",
        "events/s",
        "the handler fed by httpx, one request at a time",
        "≥ 0.7",
        "higher",
        0.7,
    )
    database = plan.workdir / "listen.db"
    for stale in plan.workdir.glob("listen.db*"):
        stale.unlink()
    with (
        hookstream(plan.workdir, database) as server,
        anchor_app(plan.workdir, "receiver", "anchors.receiver_app", {}) as handler,
    ):
        key, account, webhook = create_tenant(server.port, "listen")
        _fill(server.port, account, events, plan.message_bytes)
        for _ in range(plan.runs):
            row.ours.append(_listen(plan, server.port, key, webhook, handler.port, events))
            row.theirs.append(_ceiling(handler.port, events, plan.message_bytes))
    row.notes.append(
        "every event arrived once and in seq order, and the cursor file ended at the last seq; listen rewrites "
        "its cursor after each 2xx (one in-place record) and fsyncs it once a second"
    )
    return [row]


def export(plan: Plan) -> list[Row]:
    """`hookstream export` of the first N events of a log vs the replay row's bare client on the same server."""
    log = build(plan.cache, plan.export_events, plan.message_bytes, plan.workdir)
    total = log.events
    row = Row(
        "export",
        f"events/s exporting {total:,} events to a JSON Lines file",
        "events/s",
        "replay's client (http.client, no parsing)",
        "≥ 0.8",
        "higher",
        0.8,
    )
    output = plan.workdir / "export.jsonl"
    env = {**os.environ, "HOOKSTREAM_API_KEY": log.api_key}
    with hookstream(plan.workdir, Path(log.path), READ_ENV) as server:
        env["HOOKSTREAM_URL"] = f"http://127.0.0.1:{server.port}"
        _replay_http(server, log, min(total, 20_000))
        for _ in range(plan.runs):
            output.unlink(missing_ok=True)
            started = time.monotonic()
            done = subprocess.run(
                [PYTHON, "-m", "app.cli", "export", log.webhook_id, "--output", str(output)],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            elapsed = time.monotonic() - started
            if done.returncode != 0:
                raise CheckFailed(f"export: {done.stderr.strip()}")
            _check_export(output, total)
            row.ours.append(total / elapsed)
            rate, _, _ = _replay_http(server, log, total)
            row.theirs.append(rate)
    output.unlink(missing_ok=True)
    row.notes.append(
        "export timed as a whole command (start-up and writing the file included; no terminal, so no progress "
        "bar and no binary search for its total); every line checked: seqs 1..N in order"
    )
    return [row]


def _check_export(path: Path, total: int) -> None:
    expected = 1
    with open(path, "rb") as file:
        for line in file:
            at = line.index(b'"seq":') + 6
            seq = int(line[at : line.index(b",", at)])
            if seq != expected:
                raise CheckFailed(f"export: line {expected} holds seq {seq}")
            expected += 1
    if expected - 1 != total:
        raise CheckFailed(f"export: {expected - 1} lines, expected {total}")


WORKLOADS_CLIENT = {"listen": listen, "export": export}
