"""schemathesis hooks for tests/test_openapi.py: long polls kept short, without changing what is valid."""

from __future__ import annotations

import re

import schemathesis

_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")


@schemathesis.hook
def map_case(context: schemathesis.HookContext, case: schemathesis.Case) -> schemathesis.Case:
    """A valid `wait` above one second becomes one below it: 60 s long polls would take the run's whole time."""
    if not case.query or not case.operation.path.endswith("/events"):
        return case
    wait = case.query.get("wait")
    if isinstance(wait, str) and _DECIMAL.fullmatch(wait):
        seconds: float = float(wait)
    elif isinstance(wait, int | float) and not isinstance(wait, bool):
        seconds = wait
    else:
        return case
    if 1 < seconds <= 60:
        case.query["wait"] = f"{seconds / 60:.3f}"
    return case
