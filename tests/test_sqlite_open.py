"""Several processes opening one fresh SQLite file at the same moment, as WEB_CONCURRENCY starts them."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

OPEN = """
import asyncio, sys, time
from app.catalog import filter_matches
from storage.sqlite import SQLiteStorage

async def main() -> None:
    storage = SQLiteStorage(sys.argv[1], matcher=filter_matches)
    while time.time() < float(sys.argv[2]):  # all start together
        pass
    await storage.open()
    print((await storage.log_state()).epoch)
    await storage.close()

asyncio.run(main())
"""


@pytest.mark.parametrize("round_", range(6))
def test_processes_opening_a_fresh_file_together_all_start_on_one_log(tmp_path: Path, round_: int) -> None:
    path = tmp_path / f"fresh-{round_}.db"
    start_at = time.time() + 1.5
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN, str(path), str(start_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    results = [process.communicate(timeout=60) for process in processes]
    failures = [err for (_, err), process in zip(results, processes, strict=True) if process.returncode != 0]
    assert not failures, failures[0]
    epochs = {out.strip() for out, _ in results}
    assert len(epochs) == 1, "every process must see the one log the first of them created"
