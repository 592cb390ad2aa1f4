"""An incremental parser of `text/event-stream`, per the WHATWG HTML spec's "event stream interpretation".

Written here rather than taken from httpx-sse so the library depends on httpx alone, and because a
resuming client needs what that spec keeps even when it dispatches nothing: an `id:` in a message
without `data:` (the server's opening cursor) still sets the last event id.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Message:
    """One dispatched message, or `retry`/`id` changes (then `data` is None)."""

    event: str
    data: str | None
    last_event_id: str
    retry_ms: int | None = None


class SSEParser:
    """Feed bytes as they arrive; get back the messages they complete."""

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []
        self._event = ""
        self.last_event_id = ""
        self._id_changed = False
        self._retry: int | None = None
        self._first = True

    def feed(self, chunk: bytes) -> list[Message]:
        """The messages completed by `chunk`."""
        self._buffer += chunk
        messages: list[Message] = []
        while True:
            line, found = self._next_line()
            if not found:
                return messages
            if line == "":
                message = self._dispatch()
                if message is not None:
                    messages.append(message)
            else:
                self._field(line)

    def _next_line(self) -> tuple[str, bool]:
        buffer = self._buffer
        lf = buffer.find(b"\n")
        cr = buffer.find(b"\r")
        if cr == -1 and lf == -1:
            return "", False
        if cr != -1 and (lf == -1 or cr < lf):
            if cr == len(buffer) - 1:
                return "", False  # CR could be the first half of CRLF: wait for the next byte
            end, skip = cr, 2 if buffer[cr + 1 : cr + 2] == b"\n" else 1
        else:
            end, skip = lf, 1
        raw, self._buffer = buffer[:end], buffer[end + skip :]
        if self._first:
            self._first = False
            raw = raw.removeprefix(b"\xef\xbb\xbf")
        return raw.decode("utf-8", "replace"), True

    def _field(self, line: str) -> None:
        if line.startswith(":"):
            return  # a comment: the server's heartbeat
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
                self._id_changed = True
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self._retry = int(value)

    def _dispatch(self) -> Message | None:
        data, event, retry, id_changed = self._data, self._event, self._retry, self._id_changed
        self._data, self._event, self._retry, self._id_changed = [], "", None, False
        if not data:
            if retry is None and not id_changed:
                return None
            return Message(event or "message", None, self.last_event_id, retry)
        return Message(event or "message", "\n".join(data), self.last_event_id, retry)
