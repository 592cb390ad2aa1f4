"""`hookstream listen`, `tail` and `export`: the consumer's commands, also runnable alone as `hookstream-client`.

`add_commands` puts them on an argparse parser (the server's `hookstream` command calls it); every
failure a user can cause or meet — a refused key, an unknown webhook, an unreachable server, a bad
argument, a file that cannot be written — ends with one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType

from hookstream_client.errors import HookstreamError

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CommandError(Exception):
    """A problem to report as one line, and the exit status to end with."""

    def __init__(self, message: str, status: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.status = status


def credentials(args: argparse.Namespace) -> tuple[str, str]:
    """The server URL and API key, from the flags or HOOKSTREAM_URL / HOOKSTREAM_API_KEY."""
    url = args.url or os.environ.get("HOOKSTREAM_URL")
    key = args.api_key or os.environ.get("HOOKSTREAM_API_KEY")
    if not url:
        raise CommandError("no server URL: pass --url or set HOOKSTREAM_URL", EXIT_USAGE)
    if not url.startswith(("http://", "https://")):
        raise CommandError(f"--url must start with http:// or https://, not {url!r}", EXIT_USAGE)
    if not key:
        raise CommandError("no API key: pass --api-key or set HOOKSTREAM_API_KEY", EXIT_USAGE)
    return url, key


def non_negative(raw: str) -> int:
    if not raw.isdigit():
        raise argparse.ArgumentTypeError(f"must be a non-negative integer (a seq), not {raw!r}")
    return int(raw)


def _add_credentials(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="the hookstream server (default $HOOKSTREAM_URL)")
    parser.add_argument("--api-key", help="your API key (default $HOOKSTREAM_API_KEY)")


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `listen`, `tail` and `export` to a parser's subcommands."""
    listen = commands.add_parser(
        "listen", help="forward a hosted webhook's events to a local handler, signed, in order, none lost"
    )
    listen.add_argument("webhook_id", metavar="WEBHOOK_ID")
    listen.add_argument("--forward-to", required=True, metavar="URL", help="the local handler to POST each event to")
    listen.add_argument(
        "--cursor-file",
        metavar="PATH",
        help="where the last forwarded seq is kept (default ./hookstream-WEBHOOK_ID.cursor)",
    )
    listen.add_argument("--secret", metavar="whsec_…", help="sign with this secret (default: one generated and kept)")
    listen.add_argument(
        "--after", type=non_negative, metavar="N", help="on a first run, start after seq N (default 0: the whole feed)"
    )
    _add_credentials(listen)
    listen.set_defaults(handler=_run("listen"))

    tail = commands.add_parser("tail", help="show a webhook's events live in the terminal")
    tail.add_argument("webhook_id", metavar="WEBHOOK_ID")
    tail.add_argument("--after", type=non_negative, metavar="N", help="start after seq N (default: new events only)")
    tail.add_argument("--json", action="store_true", help="one envelope per line, for pipes")
    _add_credentials(tail)
    tail.set_defaults(handler=_run("tail"))

    export = commands.add_parser("export", help="write a webhook's feed to a JSON Lines file")
    export.add_argument("webhook_id", metavar="WEBHOOK_ID")
    export.add_argument("--after", type=non_negative, metavar="N", help="start after seq N (default 0)")
    export.add_argument("--output", "-o", required=True, metavar="FILE", help="the JSON Lines file to write")
    export.add_argument("--resume", action="store_true", help="continue after the last event already in FILE")
    _add_credentials(export)
    export.set_defaults(handler=_run("export"))


def _run(name: str) -> Callable[[argparse.Namespace], None]:
    """The handler of command `name`: runs it, turning every failure into one line and an exit status."""

    def handler(args: argparse.Namespace) -> None:
        sys.exit(run(name, args))

    return handler


def run(name: str, args: argparse.Namespace) -> int:
    """Run command `name`; its exit status."""
    prog = f"{getattr(args, 'prog', 'hookstream')} {name}"
    # SIGTERM ends a command as Ctrl-C does, so listen's last cursor write is made durable on the way out.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if name == "listen":
            from hookstream_client._listen import listen

            listen(args)
        elif name == "tail":
            from hookstream_client._tail import tail

            tail(args)
        else:
            from hookstream_client._export import export

            export(args)
    except CommandError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return exc.status
    except HookstreamError as exc:
        print(f"{prog}: {exc.message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of a pipe went away (`tail --json | head`): nothing left to say.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a full disk, a file that went away: still one line
        print(f"{prog}: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""), file=sys.stderr)
        return EXIT_ERROR
    return 0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """The `hookstream-client` command."""
    parser = argparse.ArgumentParser(prog="hookstream-client", description="Consume a hookstream webhook's feed.")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.prog = parser.prog
    args.handler(args)


if __name__ == "__main__":
    main()
