"""`hookstream serve --demo`: a first run with something to look at.

Before serving, it makes sure the database has a demo API key, a `demo` account on the
`demo` connector and an active hosted webhook, then prints the curl commands that poll and
stream its events and show its usage. Running it again reuses all three: the key's secret
is kept in a file beside the database (it is stored hashed, so it could not be shown again).
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from app import ids
from app.catalog import filter_matches
from app.routes.admin import issue_api_key
from app.settings import Settings
from app.times import wall_micros
from storage import create_storage
from storage.base import Storage, Webhook

DEMO_ACCOUNT = "demo"


@dataclass(frozen=True)
class DemoSetup:
    """The demo credentials and ids the printed commands use."""

    api_key: str
    account_id: str
    webhook_id: str


def key_file(settings: Settings) -> Path:
    """Where the demo key's secret is kept: beside the SQLite file, else in the working directory."""
    url = settings.database_url
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///") + ".demo-key")
    return Path(".hookstream-demo-key")


async def _demo_key(storage: Storage, path: Path) -> tuple[str, str]:
    """The demo key's (id, secret): the saved one while it is valid, else a new one saved for next time."""
    if path.exists():
        secret = path.read_text().strip()
        key = await storage.api_key_by_hash(ids.hash_secret(secret))
        if key is not None:
            return key.id, secret
    key, secret = await issue_api_key(storage, "demo")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(secret + "\n")
    return key.id, secret


async def prepare_demo(settings: Settings) -> DemoSetup:
    """Create (or find) the demo key, account and active hosted webhook."""
    storage = create_storage(settings.database_url, matcher=filter_matches)
    await storage.open()
    try:
        key_id, secret = await _demo_key(storage, key_file(settings))
        account = await storage.get_account(DEMO_ACCOUNT)
        if account is not None and account.api_key_id != key_id:
            # Left by a demo key whose secret file was lost: the demo account is ours to recreate.
            await storage.delete_account(DEMO_ACCOUNT)
            account = None
        if account is None:
            await storage.create_account(DEMO_ACCOUNT, key_id, "Demo account", "demo")
        hooks = [hook for hook in await storage.list_webhooks(key_id, DEMO_ACCOUNT) if hook.mode == "hosted"]
        if hooks:
            webhook_id = hooks[0].id
            if not hooks[0].is_active:
                await storage.update_webhook(webhook_id, is_active=True)
        else:
            now = wall_micros()
            webhook_id = ids.webhook_id()
            await storage.create_webhook(
                Webhook(
                    id=webhook_id,
                    account_id=DEMO_ACCOUNT,
                    api_key_id=key_id,
                    url=None,
                    secret=None,
                    events=("all",),
                    compressed_delivery=False,
                    is_active=True,
                    status="healthy",
                    created_at=now,
                    updated_at=now,
                )
            )
    finally:
        await storage.close()
    return DemoSetup(api_key=secret, account_id=DEMO_ACCOUNT, webhook_id=webhook_id)


def demo_commands(base_url: str, demo: DemoSetup) -> list[tuple[str, str]]:
    """(what it does, the curl command) for polling, streaming and usage."""
    header = shlex.quote(f"x-api-key: {demo.api_key}")
    webhook = f"{base_url}/v2/webhooks/{demo.webhook_id}"
    return [
        ("poll the demo webhook's events", f"curl -s -H {header} '{webhook}/events?limit=10'"),
        ("stream them live (Ctrl-C to stop)", f"curl -N -H {header} {webhook}/stream"),
        ("see the account's usage", f"curl -s -H {header} {base_url}/v2/accounts/{demo.account_id}/usage"),
    ]
