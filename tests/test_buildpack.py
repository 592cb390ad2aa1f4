"""A fresh clone built as a Python buildpack builds it, then run by a real Procfile runner (SPEC §9, §12).

The build is what Heroku's, Render's and Railway's Python builds do: a new virtualenv, `pip install
-r requirements.txt` (the hashed runtime lock), nothing else. honcho then runs the Procfile's
`release` process, and once it has exited, `web` with `PORT` set, as a platform does. This costs
a new venv and an install from pip's cache: about 15 s here, most of it pip (more on a cold cache).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from httpx_sse import connect_sse

from tests.server import ADMIN_TOKEN, ROOT, Api, Server, free_port

pytestmark = pytest.mark.slow
HONCHO = str(Path(sys.executable).with_name("honcho"))


@pytest.fixture(scope="module")
def built_app(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A clone of the committed tree with its runtime lock installed in a new venv, and the env to run it."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    base = tmp_path_factory.mktemp("buildpack")
    app, venv = base / "app", base / "venv"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(app)], check=True)
    head = [
        subprocess.run(["git", "-C", str(d), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
        for d in (ROOT, app)
    ]
    assert head[0] == head[1], "the clone holds the committed tree of this checkout"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        + ["--require-hashes", "-r", "requirements.txt"],
        cwd=app,
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stderr
    env = {key: value for key, value in os.environ.items() if key not in ("VIRTUAL_ENV", "PYTHONPATH", "PORT")}
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        DATABASE_URL=f"sqlite:///{base / 'data' / 'hookstream.db'}",
        HOOKSTREAM_ADMIN_TOKEN=ADMIN_TOKEN,
        HOOKSTREAM_HEARTBEAT_SECONDS="1",
        PYTHONUNBUFFERED="1",
    )
    return app, env


def test_the_clone_has_what_buildpacks_look_for(built_app: tuple[Path, dict[str, str]]) -> None:
    app, env = built_app
    assert (app / ".python-version").read_text().strip() == "3.11"
    locked = re.findall(r"^([a-z0-9._-]+)==\S+ \\$", (app / "requirements.txt").read_text(), re.M)
    assert {"starlette", "uvicorn", "asyncpg", "orjson"} <= set(locked)
    assert "pytest" not in locked  # the runtime set only
    # Nothing but the lock was installed: the venv runs the app from the clone, not an installed copy.
    frozen = subprocess.run(["python", "-m", "pip", "freeze"], env=env, capture_output=True, text=True).stdout
    assert "hookstream" not in frozen and "pytest" not in frozen


def test_release_then_web_through_honcho_migrates_serves_and_ends_streams_on_sigterm(
    built_app: tuple[Path, dict[str, str]],
) -> None:
    app, env = built_app
    release = subprocess.run(
        [HONCHO, "start", "--no-colour", "release"], cwd=app, env=env, capture_output=True, text=True, timeout=120
    )
    assert "release.1 stopped (rc=0)" in release.stdout, release.stdout + release.stderr
    assert "hookstream migrate: the schema of sqlite:///" in release.stdout
    assert Path(env["DATABASE_URL"].removeprefix("sqlite:///")).exists()

    port = free_port()
    log = app.parent / "web.log"
    with open(log, "wb") as output:
        web = subprocess.Popen(
            [HONCHO, "start", "--no-colour", "--port", str(port), "web"], cwd=app, env=env, stdout=output, stderr=output
        )
    try:
        server = Server(app.parent, database_url=env["DATABASE_URL"])
        server.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert web.poll() is None and time.monotonic() < deadline, log.read_text()
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(server.url + "/healthz", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        assert httpx.get(server.url + "/readyz").status_code == 200

        with contextlib.closing(Api(server)) as api:
            account_id = api.create_account()
            webhook_id = api.create_webhook(account_id)["webhook_id"]
            [acknowledged] = api.ingest(account_id, {"type": "message_received", "data": {"message": {"id": "m1"}}})
            assert [event["id"] for event in api.poll(webhook_id)["events"]] == [acknowledged["id"]]
            headers = api.auth

        url = f"{server.url}/v2/webhooks/{webhook_id}/stream"
        opened = threading.Barrier(3)
        ended: list[float] = []
        errors: list[BaseException] = []

        def listen() -> None:
            try:
                with httpx.Client(timeout=30) as client, connect_sse(client, "GET", url, headers=headers) as source:
                    events = source.iter_sse()
                    next(events)
                    opened.wait(10)
                    for _ in events:
                        pass  # a clean end of the body ends the loop; a cut connection raises
                ended.append(time.monotonic())
            except BaseException as exc:
                errors.append(exc)

        listeners = [threading.Thread(target=listen) for _ in range(2)]
        for thread in listeners:
            thread.start()
        opened.wait(10)
        sent = time.monotonic()
        web.send_signal(signal.SIGTERM)  # what the platform does at a restart or deploy
        web.wait(timeout=30)  # Heroku's grace period before SIGKILL
        exited = time.monotonic() - sent
        for thread in listeners:
            thread.join(10)
    finally:
        if web.poll() is None:
            web.kill()
    output_text = log.read_text()
    assert errors == []
    assert len(ended) == 2 and all(moment - sent < 10 for moment in ended)
    assert exited < 10, f"the web process took {exited:.1f}s to exit:\n{output_text}"
    # The graceful path ran to its end; uvicorn then re-raises SIGTERM, so honcho reports rc=-15.
    assert "shutting down: ending 2 open streams" in output_text
    assert "Finished server process" in output_text and "web.1 stopped" in output_text, output_text
