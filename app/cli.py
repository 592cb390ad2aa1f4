"""The `hookstream` command: `serve`, `migrate`, `backup`/`restore`, and `admin create-key NAME` for the operator."""

from __future__ import annotations

import argparse
import asyncio
import logging
import logging.config
import os
import sys
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from app.catalog import filter_matches
from app.hosting import ephemeral_disk
from app.logs import log_config
from app.settings import Settings, SettingsError
from hookstream_client.cli import add_commands as add_client_commands
from storage import create_storage

if TYPE_CHECKING:
    from app.demo import DemoSetup

logger = logging.getLogger("hookstream")


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        sys.exit(f"hookstream: configuration error: {exc}")


def _shown_url(url: str) -> str:
    """A DATABASE_URL fit for a log line: any password hidden."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()


def serve(args: argparse.Namespace) -> None:
    import uvicorn

    from app.main import create_app

    settings = _settings()
    workers = args.workers or settings.web_concurrency
    logging_config = log_config(settings.log_format)
    logging.config.dictConfig(logging_config)
    reason = ephemeral_disk(settings.database_url, os.environ)
    if reason is not None:
        logger.warning(
            "DATABASE_URL is SQLite on an ephemeral disk: EVERY EVENT WILL BE LOST at the next restart or deploy. "
            "%s. Use a PostgreSQL database (DATABASE_URL=postgresql://…) or put the SQLite file on a mounted "
            "volume; see docs/deploy.md.",
            reason,
        )
    demo = None
    if args.demo:
        from app.demo import prepare_demo

        demo = asyncio.run(prepare_demo(settings))
    host = args.host or settings.host
    port = args.port or settings.port
    _print_banner(settings, host, port)
    if demo is not None:
        _print_demo(demo, host, port)
    options = {
        "host": host,
        "port": port,
        "log_config": logging_config,
        "log_level": "info",
        # A line per request costs a few percent of throughput; platforms' routers log requests anyway.
        "access_log": settings.access_log,
        "proxy_headers": True,
        "timeout_graceful_shutdown": 5,
        # Header deadline and size, body cut-off, connection cap (SPEC §11): see app/_http.py.
        "http": "app._http:BoundedHttpToolsProtocol",
    }
    if workers > 1:
        # Each worker process builds its own app from the same environment.
        uvicorn.run("app.main:create_app", factory=True, workers=workers, **options)  # type: ignore[arg-type]
    else:
        uvicorn.run(create_app(settings), **options)  # type: ignore[arg-type]


def _say(settings: Settings, lines: list[str]) -> None:
    """Print lines for a person, or log them one record each when logs are JSON."""
    if settings.log_format == "json":
        for line in lines:
            logger.info("%s", line.strip())
    else:
        print("\n".join(lines), flush=True)


async def _migrate(settings: Settings) -> None:
    # Opening a backend applies its pending migrations (under an advisory lock on PostgreSQL).
    storage = create_storage(settings.database_url, matcher=filter_matches, event_cache_bytes=0)
    await storage.open()
    await storage.close()


def migrate(args: argparse.Namespace) -> None:
    settings = _settings()
    try:
        asyncio.run(_migrate(settings))
    except Exception as exc:
        sys.exit(f"hookstream migrate: {_shown_url(settings.database_url)}: {exc}")
    print(f"hookstream migrate: the schema of {_shown_url(settings.database_url)} is up to date", flush=True)


def _sqlite_path(settings: Settings, command: str) -> str:
    if not settings.database_url.startswith("sqlite:///"):
        sys.exit(
            f"hookstream {command}: DATABASE_URL is PostgreSQL, whose own tools do this: "
            'pg_dump --format=custom --file=hookstream.dump "$DATABASE_URL" to back up, '
            'pg_restore --clean --no-owner --dbname="$DATABASE_URL" hookstream.dump to restore'
        )
    return settings.database_url.removeprefix("sqlite:///")


def backup(args: argparse.Namespace) -> None:
    from app.backup import BackupError
    from app.backup import backup as write_backup

    settings = _settings()
    try:
        summary = write_backup(_sqlite_path(settings, "backup"), args.path)
    except BackupError as exc:
        sys.exit(f"hookstream backup: {exc}")
    print(
        f"hookstream backup: wrote {args.path}: {summary.events} events up to seq {summary.head_seq}, "
        f"epoch {summary.epoch}",
        flush=True,
    )


def restore(args: argparse.Namespace) -> None:
    from app.backup import BackupError
    from app.backup import restore as put_back

    settings = _settings()
    database = _sqlite_path(settings, "restore")
    try:
        summary = put_back(args.path, database, force=args.force)
    except BackupError as exc:
        sys.exit(f"hookstream restore: {exc}")
    print(
        f"hookstream restore: {database} now holds {summary.events} events up to seq {summary.head_seq}, "
        f"epoch {summary.epoch}",
        flush=True,
    )


def _print_banner(settings: Settings, host: str, port: int) -> None:
    """Tell a newcomer where the server listens and how to get credentials."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    lines = [
        f"hookstream listening on http://{shown}:{port}  (database: {_shown_url(settings.database_url)})",
        "  create an API key:  hookstream admin create-key my-team   (same DATABASE_URL)",
    ]
    if settings.admin_token is None:
        lines.append("  HOOKSTREAM_ADMIN_TOKEN is not set: admin and ingest routes answer 401 until it is")
    _say(settings, lines)


def _print_demo(demo: DemoSetup, host: str, port: int) -> None:
    """The demo's credentials and the commands to try it."""
    from app.demo import demo_commands

    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    lines = [f"demo: account {demo.account_id!r} on the demo connector, API key {demo.api_key}"]
    for what, command in demo_commands(f"http://{shown}:{port}", demo):
        lines += [f"  {what}:", f"    {command}"]
    print("\n".join(lines), flush=True)


async def _create_key(name: str) -> str:
    from app.routes.admin import issue_api_key

    settings = _settings()
    storage = create_storage(settings.database_url, matcher=filter_matches)
    await storage.open()
    try:
        _, secret = await issue_api_key(storage, name)
    finally:
        await storage.close()
    return secret


def create_key(args: argparse.Namespace) -> None:
    print(asyncio.run(_create_key(args.name)))


def _processes(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of processes (1 or more)")
    return int(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="hookstream", description="Webhook event server.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the HTTP server (settings from the environment)")
    serve_parser.add_argument("--host", help="interface to bind (default $HOOKSTREAM_HOST or 0.0.0.0)")
    serve_parser.add_argument("--port", type=int, help="port to listen on (default $PORT or 8000)")
    serve_parser.add_argument(
        "--demo",
        action="store_true",
        help="first run: create a demo key, account and webhook whose demo connector produces events",
    )
    serve_parser.add_argument(
        "--workers",
        type=_processes,
        help="server processes sharing the port and the log (default $WEB_CONCURRENCY or 1)",
    )
    serve_parser.set_defaults(handler=serve)
    migrate_parser = commands.add_parser("migrate", help="apply schema migrations and exit (the release phase)")
    migrate_parser.set_defaults(handler=migrate)
    backup_parser = commands.add_parser("backup", help="write a consistent copy of the SQLite log, server running")
    backup_parser.add_argument("path", help="file to write the copy to")
    backup_parser.set_defaults(handler=backup)
    restore_parser = commands.add_parser("restore", help="put a backup in place as the SQLite log, servers stopped")
    restore_parser.add_argument("path", help="a file written by `hookstream backup`")
    restore_parser.add_argument("--force", action="store_true", help="replace a database that already holds a log")
    restore_parser.set_defaults(handler=restore)
    admin = commands.add_parser("admin", help="operator tasks on the database in DATABASE_URL")
    admin_commands = admin.add_subparsers(dest="admin_command", required=True)
    key_parser = admin_commands.add_parser("create-key", help="create an API key and print it (shown once)")
    key_parser.add_argument("name", help="a label for whom the key is for")
    key_parser.set_defaults(handler=create_key)
    add_client_commands(commands)
    args = parser.parse_args(argv)
    args.handler(args)


if __name__ == "__main__":
    main()
