"""Processes the suite starts: each on 127.0.0.1 on a free port, each stopped by the suite that started it."""

from __future__ import annotations

import http.client
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import profiles

ROOT = Path(__file__).resolve().parents[2]
# The hookstream tree under test: this checkout, or a snapshot (`--source`) while others edit it.
SOURCE = Path(os.environ.get("HOOKSTREAM_BENCH_SOURCE") or ROOT)
PYTHON = sys.executable
ADMIN_TOKEN = "bench-admin-token"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
FILE_LIMIT = 65536


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raise_file_limit() -> None:
    """Thousands of SSE connections need thousands of descriptors; we run as root, so lift the hard cap too."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (FILE_LIMIT, max(hard, FILE_LIMIT)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def children_cpu() -> float:
    """CPU seconds used by waited-for children so far (the load clients)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@dataclass
class Service:
    """One server process (hookstream, an anchor app, nginx) with its log file."""

    name: str
    argv: list[str]
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    ready_path: str = "/healthz"
    cwd: Path = ROOT
    profile_to: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    recorder: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}-{self.port}.log"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 60.0) -> Service:
        log = open(self.log_path, "ab")
        argv = [part.replace("{port}", str(self.port)) for part in self.argv]
        self.process = subprocess.Popen(
            argv,
            cwd=self.cwd,
            env={**os.environ, **self.env, "PORT": str(self.port)},
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=raise_file_limit,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log_path}")
            try:
                status, _ = request(self.port, "GET", self.ready_path, timeout=2)
                if status < 500:
                    if self.profile_to is not None:
                        self.recorder = profiles.start(self.process.pid, self.profile_to)
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer within {timeout}s; see {self.log_path}")

    def tree_pids(self) -> list[int]:
        """The process and its children (nginx's workers)."""
        pids = [self.pid]
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(stat[1]) == self.pid:
                    pids.append(int(entry.name))
        return pids

    def cpu(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.tree_pids())

    def rss(self) -> int:
        return sum(rss_bytes(pid) for pid in self.tree_pids())

    def stop(self) -> None:
        if self.recorder is not None:
            profiles.stop(self.recorder)
            self.recorder = None
        if self.process is None or self.process.poll() is not None:
            return
        # Signal our own process group only (start_new_session made the server its leader).
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> Service:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# Set by the suite's --profile: hookstream servers then run under py-spy, one file per server.
PROFILE_DIR: list[Path] = []


def hookstream(workdir: Path, database: Path | str, env: dict[str, str] | None = None) -> Service:
    """`python -m app.cli serve` (uvicorn with uvloop and httptools) on a SQLite file or a postgresql:// URL."""
    port = free_port()
    return Service(
        "hookstream",
        [PYTHON, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", "{port}"],
        workdir,
        port=port,
        cwd=SOURCE,
        profile_to=PROFILE_DIR[0] / f"profile-{port}.txt" if PROFILE_DIR else None,
        env={
            "DATABASE_URL": database if isinstance(database, str) else f"sqlite:///{database}",
            "HOOKSTREAM_ADMIN_TOKEN": ADMIN_TOKEN,
            "HOOKSTREAM_MAX_STREAMS_PER_KEY": "100000",
            **(env or {}),
        },
    )


def anchor_app(workdir: Path, name: str, module: str, env: dict[str, str], *, workers: int = 1) -> Service:
    """A bare Starlette/sse-starlette anchor under uvicorn with the same loop and parser as hookstream."""
    return Service(
        name,
        [
            PYTHON,
            "-m",
            "uvicorn",
            f"{module}:app",
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
            "--app-dir",
            str(ROOT / "scripts/bench"),
            *(["--workers", str(workers)] if workers > 1 else []),
        ],
        workdir,
        env=env,
    )
