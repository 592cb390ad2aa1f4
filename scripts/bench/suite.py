"""`scripts/bench/run`: measure hookstream and its anchors on this machine and print one table.

Every workload runs hookstream and its anchor back to back with the same load client, repeats
each measurement --runs times (median, with min–max), checks every answer it gets, and stops
every process it started. Results also go to <workdir>/results.json and results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
_source = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--source=")), "")
if _source:
    # Envelopes are built by the tree under test, so it must come first on the path.
    os.environ["HOOKSTREAM_BENCH_SOURCE"] = str(Path(_source).resolve())
sys.path[:0] = [str(HERE), os.environ.get("HOOKSTREAM_BENCH_SOURCE") or str(HERE.parents[1])]

import procs  # noqa: E402
import profiles  # noqa: E402
from consumers import WORKLOADS_CLIENT  # noqa: E402
from delivery import WORKLOADS_DELIVERY  # noqa: E402
from figures import Row, table  # noqa: E402
from pg import WORKLOADS_PG  # noqa: E402
from workloads import WORKLOADS, CheckFailed, Plan  # noqa: E402


def machine() -> str:
    """nproc, CPU model, memory, disk and load: what the figures were measured on."""
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        "unknown",
    )
    memory = next(ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal"))
    disk = subprocess.run(["df", "-h", "--output=source,fstype,size", "/tmp"], capture_output=True, text=True).stdout
    load = os.getloadavg()
    return (
        f"{os.cpu_count()} cores, {cpu}, {int(memory) // 1024 // 1024 + 1} GiB RAM, disk "
        f"{' '.join(disk.split()[3:])}, {platform.python_implementation()} {platform.python_version()}, "
        f"load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )


def plan_from(args: argparse.Namespace) -> Plan:
    quick = args.quick
    rates = [float(r) for r in args.sse_rate.split(",")]
    subs = (
        [int(n) for n in args.sse_subscribers.split(",")]
        if args.sse_subscribers
        else ([200] if quick else [1000, 5000])
    )
    return Plan(
        runs=args.runs or 3,
        seconds=args.seconds or (2.0 if quick else 5.0),
        message_bytes=args.message_bytes,
        poll_events=10_000,
        small_events=10_000,
        big_events=args.big_events or (1_000_000 if quick else 10_000_000),
        replay_events=args.replay_events or (100_000 if quick else 1_000_000),
        ingest_connections=16,
        poll_connections=8,
        sse_subscribers=subs,
        sse_rate=max(rates),
        sse_rates=tuple(rates),
        memory_streams=args.memory_streams or (1000 if quick else 5000),
        sse_seconds=args.sse_seconds or (3.0 if quick else 10.0),
        throughput_subscribers=args.throughput_subscribers or (200 if quick else 1000),
        throughput_events=args.throughput_events or (500 if quick else 2000),
        client_processes=args.client_processes,
        synchronous=args.synchronous.upper(),
        workdir=Path(args.workdir),
        cache=Path(args.cache),
        postgres=args.postgres or "",
        listen_events=args.listen_events or (5_000 if quick else 20_000),
        export_events=args.export_events or (100_000 if quick else 1_000_000),
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="scripts/bench/run", description=__doc__.splitlines()[0])
    every = ", ".join([*WORKLOADS, *WORKLOADS_CLIENT, *WORKLOADS_DELIVERY, *WORKLOADS_PG])
    parser.add_argument("workloads", nargs="*", help=f"any of {every} (default: all)")
    parser.add_argument("--quick", action="store_true", help="small sizes and short runs: a smoke run (< 3 min)")
    parser.add_argument("--runs", type=int, help="repetitions per figure (default 3)")
    parser.add_argument("--seconds", type=float, help="length of each wrk measurement (default 5, quick 2)")
    parser.add_argument("--message-bytes", type=int, default=300, help="event data size (default 300)")
    parser.add_argument("--big-events", type=int, help="events in the big log (default 10M, quick 1M)")
    parser.add_argument("--replay-events", type=int, help="events to replay (default 1M, quick 100k)")
    parser.add_argument("--listen-events", type=int, help="events hookstream listen forwards (default 20k, quick 5k)")
    parser.add_argument("--export-events", type=int, help="events hookstream export writes (default 1M, quick 100k)")
    parser.add_argument("--sse-subscribers", help="comma-separated fan-out sizes (default 1000,5000; quick 200)")
    parser.add_argument(
        "--sse-rate", default="10,100", help="comma-separated events/s of the fan-out rows (default 10,100)"
    )
    parser.add_argument("--memory-streams", type=int, help="idle streams sse-memory opens (default 5000, quick 1000)")
    parser.add_argument("--sse-seconds", type=float, help="publishing time per fan-out trial (default 10, quick 3)")
    parser.add_argument("--throughput-subscribers", type=int, help="default 1000, quick 200")
    parser.add_argument("--throughput-events", type=int, help="default 2000, quick 500")
    parser.add_argument(
        "--client-processes", type=int, default=os.cpu_count() or 2, help="SSE client processes (default: one per core)"
    )
    parser.add_argument(
        "--synchronous",
        default="FULL",
        choices=["FULL", "NORMAL", "full", "normal"],
        help="SQLite synchronous setting for hookstream and the sqlite3 anchor (default FULL)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run hookstream under py-spy and print its costliest functions per workload",
    )
    parser.add_argument(
        "--postgres",
        help="postgresql://… URL: also run the PostgreSQL rows (polling-pg, ingest-pg, sse-fanout-pg), "
        "each in a schema of its own in that database",
    )
    parser.add_argument("--source", help="--source=DIR: benchmark the hookstream tree in DIR (default: this checkout)")
    parser.add_argument("--workdir", default="/tmp/hookstream-bench/run", help="scratch files and server logs")
    parser.add_argument("--cache", default="/tmp/hookstream-bench/logs", help="generated logs, reused across runs")
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so every `with` block stops the servers it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    plan = plan_from(args)
    shutil.rmtree(plan.workdir, ignore_errors=True)
    plan.workdir.mkdir(parents=True)
    known = {**WORKLOADS, **WORKLOADS_CLIENT, **WORKLOADS_DELIVERY, **WORKLOADS_PG}
    chosen = args.workloads or [
        *WORKLOADS,
        *WORKLOADS_CLIENT,
        *WORKLOADS_DELIVERY,
        *(WORKLOADS_PG if plan.postgres else ()),
    ]
    unknown = [name for name in chosen if name not in known]
    if unknown:
        parser.error(f"unknown workload {unknown[0]!r}; choose from {', '.join(known)}")
    if not plan.postgres and any(name in WORKLOADS_PG for name in chosen):
        parser.error("the PostgreSQL rows need --postgres postgresql://…")
    print(f"machine: {machine()}", flush=True)
    rows: list[Row] = []
    started = time.monotonic()
    failures = []
    for name in chosen:
        began = time.monotonic()
        print(f"… {name}", flush=True)
        profile_dir = plan.workdir / "profiles" / name
        if args.profile:
            profile_dir.mkdir(parents=True, exist_ok=True)
            procs.PROFILE_DIR[:] = [profile_dir]
        try:
            found = known[name](plan)
        except CheckFailed as exc:
            failures.append(f"{name}: {exc}")
            print(f"  CHECK FAILED: {exc}", flush=True)
            continue
        finally:
            procs.PROFILE_DIR.clear()
        rows += found
        for line in table(found).splitlines()[2 : 2 + len(found)]:
            print(line, flush=True)
        if args.profile:
            for raw in sorted(profile_dir.glob("profile-*.txt")):
                text = f"py-spy, {name}, {raw.name}:\n{profiles.summary(raw)}"
                raw.with_suffix(".summary").write_text(text + "\n")
                print(text, flush=True)
        print(f"  ({time.monotonic() - began:.0f} s)", flush=True)
    print()
    print(table(rows))
    print(
        f"\ntotal {time.monotonic() - started:.0f} s; plan: "
        + json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in asdict(plan).items()})
    )
    (plan.workdir / "results.json").write_text(json.dumps([asdict(r) for r in rows], indent=1))
    (plan.workdir / "results.md").write_text(table(rows) + "\n")
    if failures:
        print("\nFAILED CHECKS:\n" + "\n".join(failures))
        sys.exit(1)


if __name__ == "__main__":
    main()
