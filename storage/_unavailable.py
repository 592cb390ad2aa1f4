"""One rule for "the database cannot take this now", shared by every backend.

Each backend knows which of its driver's errors mean the database is out of reach or
out of room (a full disk, a lost connection, a server restarting) rather than a bug or
a refused row; this module turns those into `StorageUnavailable`, which the app answers
with 503 and `Retry-After`. Nothing that raised it is acknowledged (a connection cut during
COMMIT may still have committed: producer-given event ids make the retry return the same seqs),
and the backend keeps no broken state behind it: the next call tries the database again.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

from storage.base import StorageUnavailable

logger = logging.getLogger("hookstream.storage")

# Does this driver error mean the database cannot take the call now (as opposed to a bug or a refused row)?
Classifier = Callable[[BaseException], bool]


def translated(exc: BaseException, unavailable: Classifier) -> BaseException:
    """`StorageUnavailable` (caused by `exc`) when the backend classes `exc` as unavailability, else `exc`."""
    if isinstance(exc, StorageUnavailable) or not unavailable(exc):
        return exc
    error = StorageUnavailable(f"the database cannot take this now: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


@contextlib.contextmanager
def guarded(unavailable: Classifier) -> Iterator[None]:
    """Raise `StorageUnavailable` in place of a driver error that means the database cannot take the call."""
    try:
        yield
    except Exception as exc:
        error = translated(exc, unavailable)
        if error is exc:
            raise
        raise error from exc
