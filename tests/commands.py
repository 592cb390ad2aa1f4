"""The `hookstream` command run as an operator runs it: a child process with its own environment."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.server import ROOT


def hookstream(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `hookstream ARGS…` with the environment given (over this one) and capture what it says."""
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
