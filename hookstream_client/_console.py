"""Terminal output of the commands: a live status line on a terminal (rich), plain lines in a pipe or a log."""

from __future__ import annotations

import sys
import time
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.text import Text

from hookstream_client.errors import FeedPruned
from hookstream_client.models import Event

COLOURS = {"connected": "green", "reconnecting": "yellow", "waiting": "yellow", "stopped": "red", "starting": "blue"}


class StatusLine:
    """What `listen` shows: the connection, the last seq forwarded, the handler's last answer."""

    def __init__(self) -> None:
        self.console = Console(stderr=True, highlight=False)
        self.tty = self.console.is_terminal
        self.state = "starting"
        self.detail: str | None = None
        self.last_seq: int | None = None
        self.answer = "-"
        self.count = 0
        self._live: Live | None = None
        self._drawn = 0.0

    def __enter__(self) -> StatusLine:
        if self.tty:
            self._live = Live(self._render(), console=self.console, refresh_per_second=8, transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._live is not None:
            self._live.__exit__(kind, exc, tb)
            self._live = None
        self.note(self._summary())

    def _summary(self) -> str:
        return f"{self.state}: {self.count} forwarded, last seq {self.last_seq if self.last_seq is not None else '-'}"

    def _render(self) -> Text:
        text = Text()
        text.append("● ", style=COLOURS.get(self.state, "white"))
        text.append(self.state, style="bold")
        if self.detail:
            text.append(f" ({self.detail})", style="dim")
        text.append(f"   last seq {self.last_seq if self.last_seq is not None else '-'}")
        text.append(f"   forwarded {self.count}")
        text.append("   handler ")
        ok = self.answer[:1] == "2"
        text.append(self.answer, style="green" if ok else "red")
        return text

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._render())

    def note(self, message: str, style: str | None = None) -> None:
        """A line that stays."""
        if self.tty:
            self.console.print(message, style=style)
        else:
            print(message, file=sys.stderr, flush=True)

    def connection(self, state: str, detail: str | None) -> None:
        """The stream's connection changed."""
        self.state, self.detail = state, detail
        if not self.tty:
            self.note(f"{state}" + (f": {detail}" if detail else ""))
        self._refresh()

    def pruned(self, gap: FeedPruned) -> None:
        self.note(f"GAP: {gap.message}", style="bold red")

    def forwarded(self, event: Event, answer: str) -> None:
        self.last_seq, self.answer = event.seq, answer
        self.count += 1
        if self.tty:
            self.console.print(Text.assemble((f"{event.seq:>8} ", "dim"), (event.type, "cyan"), f"  → {answer}"))
            self._refresh()
        else:
            print(f"forwarded seq {event.seq} {event.type} {event.id}: {answer}", file=sys.stderr)
            now = time.monotonic()
            if now - self._drawn > 1.0:
                self._drawn = now
                sys.stderr.flush()

    def refused(self, event: Event, answer: str, delay: float) -> None:
        self.answer = answer
        message = f"seq {event.seq}: handler answered {answer}; retrying in {delay:.1f}s"
        if self.tty:
            self.console.print(Text(f"{event.seq:>8} {event.type}  ✗ {answer}, retrying in {delay:.1f}s", "red"))
            self._refresh()
        else:
            print(message, file=sys.stderr, flush=True)
