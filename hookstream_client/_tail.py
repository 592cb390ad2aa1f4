"""`hookstream tail`: a webhook's events as they arrive, readable in a terminal or one envelope per line."""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console
from rich.text import Text

from hookstream_client.cli import credentials
from hookstream_client.client import Client
from hookstream_client.errors import FeedPruned
from hookstream_client.models import Event

DATA_WIDTH = 160


def line(event: Event) -> Text:
    """One event as a terminal line: seq, time, type, account and the start of its data."""
    data = json.dumps(event.data, separators=(",", ":"), ensure_ascii=False)
    if len(data) > DATA_WIDTH:
        data = data[: DATA_WIDTH - 1] + "…"
    return Text.assemble(
        (f"{event.seq:>8}", "bold"),
        "  ",
        (event.timestamp, "dim"),
        "  ",
        (event.type, "cyan"),
        "  ",
        (event.account_id, "magenta"),
        "  ",
        data,
    )


def tail(args: argparse.Namespace) -> None:
    url, key = credentials(args)
    out = Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False)

    def status(state: str, detail: str | None) -> None:
        if state != "connected" or detail:
            err.print(f"[yellow]{state}[/]" + (f": {detail}" if detail else ""))

    def pruned(gap: FeedPruned) -> None:
        err.print(f"[bold red]GAP:[/] {gap.message}")

    with Client(url, key) as client:
        client.get_webhook(args.webhook_id)  # an unknown webhook or a refused key: one clear line now
        if not args.json:
            where = f"after seq {args.after}" if args.after is not None else "from now on"
            err.print(f"[dim]tailing webhook {args.webhook_id} {where}; Ctrl-C to stop[/]")
        for event in client.stream(args.webhook_id, after=args.after, on_status=status, on_pruned=pruned):
            if args.json:
                sys.stdout.write(json.dumps(event.to_json(), separators=(",", ":"), ensure_ascii=False) + "\n")
                sys.stdout.flush()
            else:
                out.print(line(event))
    if not args.json:
        err.print("[dim]the webhook is stopped[/]")
