"""`hookstream listen`, `tail` and `export` as subprocesses, against a real server and a real receiver."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hookstream_client import verify
from tests.json_only import JsonOnlyServer
from tests.proxy import Proxy
from tests.receiver import Receiver, wait_until
from tests.server import ROOT, Api, Server, message

HOOKSTREAM = [sys.executable, "-m", "app.cli"]


def cli_env(url: str, api_key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    return {**env, "HOOKSTREAM_URL": url, "HOOKSTREAM_API_KEY": api_key, "PYTHONUNBUFFERED": "1"}


def run_cli(*argv: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HOOKSTREAM, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


class Listener:
    """`hookstream listen` in a subprocess, its output in a file."""

    def __init__(self, webhook_id: str, forward_to: str, cursor: Path, env: dict[str, str]) -> None:
        self.argv = [*HOOKSTREAM, "listen", webhook_id, "--forward-to", forward_to, "--cursor-file", str(cursor)]
        self.env = env
        self.log = cursor.with_suffix(".log")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Listener:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=log)
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()


def forwarded_seqs(receiver: Receiver, status: int = 200) -> list[int]:
    return [int(r.headers["webhook-seq"]) for r in receiver.received(status)]


def test_listen_loses_and_reorders_nothing_through_restarts_drops_failures_and_kill_9(
    start_server: Any, receiver: Receiver, tmp_path: Path
) -> None:
    server = start_server({"HOOKSTREAM_HEARTBEAT_SECONDS": "1s"})
    proxy = Proxy(server.port)
    api = Api(server)
    account = api.create_account()
    webhook_id = api.create_webhook(account)["webhook_id"]
    cursor = tmp_path / "listen.cursor"
    listener = Listener(webhook_id, receiver.url + "/hooks", cursor, cli_env(proxy.url, api.api_key)).start()
    total = 0

    def ingest(count: int) -> None:
        nonlocal total
        api.ingest(account, *[message(total + n) for n in range(count)])
        total += count

    def all_arrived() -> bool:
        seqs = forwarded_seqs(receiver)
        return bool(seqs) and seqs[-1] == total

    try:
        ingest(20)
        wait_until(all_arrived, what="the first 20 events")
        receiver.default = 500  # the handler fails for a while
        ingest(5)
        wait_until(lambda: len(receiver.received(500)) >= 4, what="retries of a refused event")
        receiver.default = 200
        wait_until(all_arrived, what="the events after the handler recovered")
        proxy.cut()  # the connection drops
        ingest(5)
        wait_until(all_arrived, what="the events after a dropped connection")
        server.stop()  # the server restarts (on another port, behind the same address)
        server.start()
        proxy.retarget(server.port)
        api.http.base_url = server.url
        ingest(5)
        wait_until(all_arrived, timeout=30, what="the events after a server restart")
        ingest(200)
        wait_until(lambda: len(forwarded_seqs(receiver)) > 60, what="some of a burst")
        listener.kill()  # kill -9 mid-burst
        listener.start()
        ingest(5)
        wait_until(all_arrived, timeout=30, what="the events after kill -9 and a restart")
        wait_until(lambda: json.loads(cursor.read_text())["seq"] == total, what="the last cursor write")
    finally:
        listener.kill()
        proxy.close()
        api.close()
    seqs = forwarded_seqs(receiver)
    assert sorted(set(seqs)) == list(range(1, total + 1)), "every event reached the handler"
    repeats = [(a, b) for a, b in zip(seqs, seqs[1:], strict=False) if b <= a]
    assert all(a == b for a, b in repeats), f"out of order: {repeats}"
    assert len(repeats) <= 2, "at most the in-flight event again, at a server restart or a kill"
    refused = set(forwarded_seqs(receiver, 500))
    assert len(refused) == 1, "while the handler failed, only the event in flight was retried"
    secret = (tmp_path / "listen.cursor.secret").read_text().strip()
    for request in receiver.received():
        envelope = verify(request.body, request.headers, secret)  # one local secret, across restarts
        assert envelope["seq"] == int(request.headers["webhook-seq"])
    output = listener.log.read_text()
    assert "Traceback" not in output and secret in output


def test_bad_input_and_trouble_are_one_line_and_a_non_zero_exit(
    shared_server: Server, api: Api, receiver: Receiver, tmp_path: Path
) -> None:
    account = api.create_account()
    webhook_id = api.create_webhook(account)["webhook_id"]
    env = cli_env(shared_server.url, api.api_key)
    cursor = str(tmp_path / "c.cursor")
    cases = {
        "unknown webhook": (["listen", "0" * 24, "--forward-to", receiver.url, "--cursor-file", cursor], env),
        "refused key": (["tail", webhook_id], cli_env(shared_server.url, "hk_refused")),
        "unreachable server": (
            ["export", webhook_id, "-o", str(tmp_path / "x.jsonl")],
            cli_env("http://127.0.0.1:1", "k"),
        ),
        "not a URL": (["listen", webhook_id, "--forward-to", "localhost:3000/hooks", "--cursor-file", cursor], env),
        "unwritable cursor": (["listen", webhook_id, "--forward-to", receiver.url, "--cursor-file", "/proc/c"], env),
        "no credentials": (["tail", webhook_id], {k: v for k, v in env.items() if k != "HOOKSTREAM_API_KEY"}),
    }
    expected = {
        "unknown webhook": "No webhook",
        "refused key": "API key",
        "unreachable server": "Cannot reach",
        "not a URL": "--forward-to",
        "unwritable cursor": "cannot write the cursor file",
        "no credentials": "HOOKSTREAM_API_KEY",
    }
    for name, (argv, case_env) in cases.items():
        done = run_cli(*argv, env=case_env)
        lines = done.stderr.strip().splitlines()
        assert done.returncode != 0, name
        assert len(lines) == 1 and expected[name] in lines[0], (name, done.stderr)
        assert "Traceback" not in done.stderr + done.stdout, name


def read_pty(fd: int, until: bytes, timeout: float = 20) -> bytes:
    """What a terminal shows, until `until` appears."""
    seen = b""
    deadline = time.monotonic() + timeout
    while until not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:
                break
    return seen


def in_terminal(argv: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    main, child = pty.openpty()
    process = subprocess.Popen(
        [*HOOKSTREAM, *argv],
        cwd=ROOT,
        env={**env, "TERM": "xterm-256color", "COLUMNS": "160"},
        stdin=child,
        stdout=child,
        stderr=child,
        close_fds=True,
    )
    os.close(child)
    return process, main


def test_tail_is_readable_and_coloured_in_a_terminal_and_json_in_a_pipe(shared_server: Server, api: Api) -> None:
    account = api.create_account()
    webhook_id = api.create_webhook(account)["webhook_id"]
    api.ingest(account, *[message(n) for n in range(3)])
    env = cli_env(shared_server.url, api.api_key)
    process, terminal = in_terminal(["tail", webhook_id, "--after", "0"], env)
    try:
        shown = read_pty(terminal, b"m2")
        api.ingest(account, message(3))
        shown += read_pty(terminal, b"m3")
    finally:
        process.kill()
        process.wait()
        os.close(terminal)
    text = shown.decode(errors="replace")
    assert "\x1b[" in text, "colours on a terminal"
    assert "message_received" in text and account in text and "m3" in text
    pipe = subprocess.Popen(
        [*HOOKSTREAM, "tail", webhook_id, "--after", "1", "--json"], cwd=ROOT, env=env, stdout=subprocess.PIPE
    )
    try:
        assert pipe.stdout is not None
        lines = [json.loads(pipe.stdout.readline()) for _ in range(3)]
    finally:
        pipe.kill()
        pipe.wait()
        assert pipe.stdout is not None
        pipe.stdout.close()
    assert [line["seq"] for line in lines] == [e["seq"] for e in api.feed(webhook_id)][1:]
    assert lines[0]["account_id"] == account and set(lines[0]) >= {"id", "type", "timestamp", "version", "data"}


def test_export_writes_the_feed_as_json_lines_and_resumes(shared_server: Server, api: Api, tmp_path: Path) -> None:
    account = api.create_account()
    webhook_id = api.create_webhook(account)["webhook_id"]
    for start in (0, 1000, 2000):
        api.ingest(account, *[message(n) for n in range(start, start + 1000)])
    # Data that reads like the boundary between two envelopes must not cut its event in two.
    tricky = {"items": [{"x": {"a": 1}}, {"id": "y", "seq": 5}], "text": '}},{"id":"evt'}
    api.ingest(account, {"type": "message_received", "data": tricky}, message(2999))
    feed = api.feed(webhook_id)
    env = cli_env(shared_server.url, api.api_key)
    output = tmp_path / "feed.jsonl"
    done = run_cli("export", webhook_id, "--output", str(output), env=env)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in output.read_text().splitlines()] == feed
    again = run_cli("export", webhook_id, "--output", str(output), env=env)
    assert again.returncode != 0 and "--resume" in again.stderr
    # A crash mid-write leaves a partial last line: --resume cuts it and goes on after the last whole one.
    whole = output.read_bytes()
    output.write_bytes(whole[: whole.index(b"\n", len(whole) // 2) + 40])
    api.ingest(account, message(3000))
    resumed = run_cli("export", webhook_id, "--output", str(output), "--resume", env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert [json.loads(line) for line in output.read_text().splitlines()] == api.feed(webhook_id)


def seqs_in(path: Path) -> list[int]:
    """The seq of each line of a JSON Lines file (split at newlines only, as JSON Lines is)."""
    return [json.loads(line)["seq"] for line in path.read_bytes().split(b"\n")[:-1]]


def test_export_killed_mid_feed_resumes_to_every_seq_once_in_order(
    shared_server: Server, api: Api, tmp_path: Path
) -> None:
    account = api.create_account()
    webhook_id = api.create_webhook(account)["webhook_id"]
    for start in range(0, 20_000, 1000):
        api.ingest(account, *[message(n) for n in range(start, start + 1000)])
    api.ingest(account, {"type": "message_received", "data": {"text": '}\n{"seq":1}\u2028', "id": "x"}})
    feed = [e["seq"] for e in api.feed(webhook_id)]
    proxy = Proxy(shared_server.port)
    output = tmp_path / "feed.jsonl"
    argv = [*HOOKSTREAM, "export", webhook_id, "--output", str(output)]
    export = subprocess.Popen(argv, cwd=ROOT, env=cli_env(proxy.url, api.api_key), stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not (output.exists() and output.stat().st_size) and export.poll() is None:
            assert time.monotonic() < deadline, "export wrote nothing"
            time.sleep(0.001)
        proxy.freeze()  # the pages after the first ones never come
        time.sleep(0.2)
        export.send_signal(signal.SIGKILL)
        export.wait()
    finally:
        proxy.close()
        assert export.stderr is not None
        export.stderr.close()
    partial = seqs_in(output)
    assert 0 < len(partial) < len(feed) and partial == feed[: len(partial)], "whole pages, in order, then the kill"
    whole = output.read_bytes()
    output.write_bytes(whole + b'{"id":"evt_cut_off","se')  # as if killed in the middle of a write
    resumed = run_cli(
        "export", webhook_id, "--output", str(output), "--resume", env=cli_env(shared_server.url, api.api_key)
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"exported {len(feed) - len(partial)} events" in resumed.stderr
    assert seqs_in(output) == feed
    assert output.read_bytes().startswith(whole)


def test_export_from_a_server_without_json_lines_pages_writes_the_same_file(
    shared_server: Server, api: Api, tmp_path: Path
) -> None:
    account = api.create_account()
    webhook_id = api.create_webhook(account)["webhook_id"]
    for start in (0, 1000):
        api.ingest(account, *[message(n) for n in range(start, start + 1000)])
    # A page the older server's JSON cannot be cut at its commas: its envelopes are serialized again.
    tricky = {"items": [{"x": {"a": 1}}, {"id": "y", "seq": 5}], "text": '}},{"id":"evt\n', "u": "\u2028"}
    api.ingest(account, {"type": "message_received", "data": tricky}, *[message(n) for n in range(2000, 2500)])
    older = JsonOnlyServer(shared_server.port)
    try:
        direct, fallback = tmp_path / "direct.jsonl", tmp_path / "fallback.jsonl"
        done = run_cli("export", webhook_id, "-o", str(direct), env=cli_env(shared_server.url, api.api_key))
        assert done.returncode == 0, done.stderr
        env = cli_env(older.url, api.api_key)
        done = run_cli("export", webhook_id, "-o", str(fallback), "--after", "0", env=env)
        assert done.returncode == 0, done.stderr
        lines = [json.loads(line) for line in fallback.read_bytes().split(b"\n")[:-1]]
        assert lines == api.feed(webhook_id) == [json.loads(line) for line in direct.read_bytes().split(b"\n")[:-1]]
        api.ingest(account, message(2500))
        resumed = run_cli("export", webhook_id, "-o", str(fallback), "--resume", env=env)
        assert resumed.returncode == 0 and "exported 1 events" in resumed.stderr, resumed.stderr
        assert seqs_in(fallback) == [e["seq"] for e in api.feed(webhook_id)]
        unknown = run_cli("export", "0" * 24, "-o", str(tmp_path / "none.jsonl"), env=env)
        assert unknown.returncode != 0 and "No webhook" in unknown.stderr and "Traceback" not in unknown.stderr
    finally:
        older.close()


def test_export_shows_a_progress_bar_with_a_known_total_on_a_terminal(
    shared_server: Server, api: Api, tmp_path: Path
) -> None:
    account = api.create_account()
    other = api.create_account()
    webhook_id = api.create_webhook(account)["webhook_id"]
    api.create_webhook(other)
    for n in range(3):
        api.ingest(account, *[message(n * 1000 + i) for i in range(1000)])
        api.ingest(other, message(n))  # seqs of another feed between this one's
    feed = api.feed(webhook_id)
    process, terminal = in_terminal(
        ["export", webhook_id, "-o", str(tmp_path / "f.jsonl")], cli_env(shared_server.url, api.api_key)
    )
    try:
        shown = read_pty(terminal, b"exported").decode(errors="replace")
    finally:
        process.wait(30)
        os.close(terminal)
    span = feed[-1]["seq"] - 0
    assert f"{span}/{span}" in shown and "100%" in shown, shown[-500:]
    assert f"exported {len(feed)} events" in shown
