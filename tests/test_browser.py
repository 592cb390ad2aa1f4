"""A real browser: Debian's chromium, headless, driven by Playwright (SPEC §5.4's browser story)."""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server import Api, Server, message

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (scripts/install adds it)"),
]

# A page of another origin: it gets a stream token with the API key, then listens with EventSource.
OTHER_ORIGIN_PAGE = """<!doctype html>
<meta charset="utf-8">
<title>another origin</title>
<script>
  window.received = [];
  window.opens = 0;
  const params = new URLSearchParams(location.search);
  const base = params.get("base");
  fetch(`${base}/v2/webhooks/${params.get("webhook")}/stream-token`, {
    method: "POST",
    headers: {"x-api-key": params.get("key")},
  })
    .then((response) => response.json())
    .then(({data}) => {
      const source = new EventSource(`${base}${data.stream_url}&afterSeq=0`);
      source.onopen = () => { window.opens += 1; };
      source.addEventListener("message_received", (event) => {
        window.received.push({seq: Number(event.lastEventId), data: JSON.parse(event.data)});
      });
    })
    .catch((error) => { window.failure = String(error); });
</script>
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def other_origin(tmp_path: Path) -> Iterator[str]:
    """A tiny static site on another port: another origin as far as the browser is concerned."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text(OTHER_ORIGIN_PAGE)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_eventsource_on_another_origin_streams_with_a_token_and_resumes_after_a_restart(
    start_server: Callable[..., Server], browser: Any, other_origin: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = start_server({"HOOKSTREAM_CORS_ORIGINS": other_origin})
    with contextlib.closing(Api(server)) as api:
        account = api.create_account()
        webhook_id = api.create_webhook(account)["webhook_id"]
        seqs = [a["seq"] for a in api.ingest(account, message(1), message(2))]
        page = browser.new_page()
        page.goto(f"{other_origin}/index.html?base={server.url}&key={api.api_key}&webhook={webhook_id}")
        page.wait_for_function("window.received.length === 2 || window.failure", timeout=20_000)
        assert page.evaluate("window.failure") is None
        seqs += [a["seq"] for a in api.ingest(account, message(3))]
        page.wait_for_function("window.received.length === 3", timeout=20_000)

        # A deploy: SIGTERM ends the stream, a new process comes up on the same address, and the
        # browser reconnects on its own with Last-Event-ID, across origins.
        server.stop()
        port = server.port
        monkeypatch.setattr("tests.server.free_port", lambda: port)
        server.start()
        seqs += [a["seq"] for a in api.ingest(account, message(4), message(5))]
        page.wait_for_function("window.received.length >= 5", timeout=30_000)
        received = page.evaluate("window.received")
        assert page.evaluate("window.opens") == 2
        page.close()
    assert [event["seq"] for event in received] == seqs
    assert [event["data"]["data"]["message"]["id"] for event in received] == ["m1", "m2", "m3", "m4", "m5"]


def test_console_page_shows_events_arriving_and_resumes_after_a_pause(
    start_server: Callable[..., Server], browser: Any, tmp_path: Path
) -> None:
    server = start_server()
    with contextlib.closing(Api(server)) as api:
        account = api.create_account(name="Support inbox")
        webhook_id = api.create_webhook(account)["webhook_id"]
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{server.url}/console")
        page.fill("#api-key", api.api_key)
        page.click("#load")
        page.wait_for_selector(f"#account option[value='{account}']", state="attached")
        page.select_option("#account", account)
        page.wait_for_selector(f"#webhook option[value='{webhook_id}']", state="attached")
        page.select_option("#webhook", webhook_id)
        page.click("#connect")
        page.wait_for_function("document.querySelector('#state').dataset.state === 'open'", timeout=20_000)

        api.ingest(account, message(1), {"type": "email.new", "data": {"id": "e1", "subject": "Hello"}})
        page.wait_for_function("document.querySelectorAll('li.event').length === 2", timeout=20_000)

        page.click("#pause")
        assert page.inner_text("#state") == "paused"
        missed = [a["seq"] for a in api.ingest(account, message(2), message(3))]
        page.click("#pause")  # resume, from the last seq shown
        page.wait_for_function("document.querySelectorAll('li.event').length === 4", timeout=20_000)
        page.screenshot(path=str(tmp_path / "console.png"), full_page=True)

        shown = page.eval_on_selector_all("li.event", "items => items.map(item => Number(item.dataset.seq))")
        assert shown[:2] == missed[::-1]  # newest first
        assert shown == sorted(shown, reverse=True)
        assert page.inner_text("#count") == "4"
        assert page.inner_text("#last-seq") == str(missed[-1])
        assert "email.new" in page.inner_text("#events")
        assert '"subject": "Hello"' in page.inner_text("#events")
        page.close()
