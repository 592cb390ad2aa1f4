"""The `hookstream` command: `serve`, and `admin create-key NAME` for the operator."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from app.catalog import filter_matches
from app.settings import Settings, SettingsError
from hookstream_client.cli import add_commands as add_client_commands
from storage import create_storage

if TYPE_CHECKING:
    from app.demo import DemoSetup


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        sys.exit(f"hookstream: configuration error: {exc}")


def serve(args: argparse.Namespace) -> None:
    import uvicorn

    from app.main import create_app

    settings = _settings()
    demo = None
    if args.demo:
        from app.demo import prepare_demo

        demo = asyncio.run(prepare_demo(settings))
    app = create_app(settings)
    host = args.host or settings.host
    port = args.port or settings.port
    _print_banner(settings, host, port)
    if demo is not None:
        _print_demo(demo, host, port)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="info",
        # A line per request costs a few percent of throughput; platforms' routers log requests anyway.
        access_log=settings.access_log,
        proxy_headers=True,
        timeout_graceful_shutdown=5,
    )


def _print_banner(settings: Settings, host: str, port: int) -> None:
    """Tell a newcomer where the server listens and how to get credentials."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    lines = [
        f"hookstream listening on http://{shown}:{port}  (database: {settings.database_url})",
        "  create an API key:  hookstream admin create-key my-team   (same DATABASE_URL)",
    ]
    if settings.admin_token is None:
        lines.append("  HOOKSTREAM_ADMIN_TOKEN is not set: admin and ingest routes answer 401 until it is")
    print("\n".join(lines), flush=True)


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
    serve_parser.set_defaults(handler=serve)
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
