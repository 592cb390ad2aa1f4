"""The one rule, for every backend, about text that a database cannot hold.

PostgreSQL refuses NUL in text, and neither backend can encode a lone surrogate as
UTF-8. So no row on either backend ever holds such text: a lookup by it finds nothing
without asking the database, and a write of it raises `UnstorableText` before it starts.
The app refuses such input with a 400 long before storage; this keeps both backends
answering alike when it does not.
"""

from __future__ import annotations

from storage.base import UnstorableText


def unstorable(*texts: str | None) -> bool:
    """True when any of `texts` holds a NUL or a lone surrogate."""
    for text in texts:
        if text is not None and ("\x00" in text or not text.isascii() and _has_surrogate(text)):
            return True
    return False


def refuse_unstorable(field: str, *texts: str | None) -> None:
    """Raise `UnstorableText` naming `field` when any of `texts` cannot be stored."""
    if unstorable(*texts):
        raise UnstorableText(field)


def _has_surrogate(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False
