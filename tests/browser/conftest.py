"""A running dmledger (uvicorn on loopback, SQLite, in-process runners and dispatcher), the
fake Graph API, and the OS's headless Chromium driven by Playwright.

Without Chromium (or Playwright) the browser tests skip with the reason, except under
CI=true, where they fail: `.ci/run` installs Chromium where it is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from interfaces.composition import Services
from interfaces.http.app import create_app
from tests.conftest import ACCESS_TOKEN, ACCOUNT, IN_CI, issue_key, meta_json, register_account
from tests.conftest import signed_headers as signed
from tests.support.fake_graph import FakeGraphApi

if TYPE_CHECKING:  # (imported when Chromium runs: see `chromium`)
    from playwright.sync_api import Page

PARTICIPANT_PROFILE = {"name": "Anna Schmidt", "username": "anna"}
OUTPUT = Path(os.environ.get("DMLEDGER_TEST_OUTPUT", Path(__file__).parents[2] / "test-output"))
"""Screenshots go to test-output/console/<test name>/ (git ignores it)."""


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: browser tests never skip)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium() -> str:
    path = chromium_path()
    if path is None:
        _missing("Chromium is not installed (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("Playwright is not installed (./dev setup installs it)")
    assert path is not None
    return path


class LiveServer:
    """`create_app` served by uvicorn in a thread, on a free loopback port."""

    def __init__(self, services: Services) -> None:
        import uvicorn

        config = uvicorn.Config(
            create_app(services),
            host="127.0.0.1",
            port=0,
            log_level="warning",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            assert time.monotonic() < deadline, "uvicorn did not start in 20 s"
            assert self._thread.is_alive(), "uvicorn stopped while starting"
            time.sleep(0.02)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(30)


@pytest.fixture
def graph() -> Iterator[FakeGraphApi]:
    fake = FakeGraphApi(ACCESS_TOKEN, {"5500000000000001": PARTICIPANT_PROFILE})
    yield fake
    fake.close()


@pytest.fixture
def services(
    tmp_path: Path, make_services: Callable[..., Services], graph: FakeGraphApi
) -> Services:
    built = make_services(f"sqlite:///{tmp_path}/ledger.sqlite3", graph_api_url=graph.url)
    register_account(built)
    return built


@pytest.fixture
def server(services: Services) -> Iterator[LiveServer]:
    live = LiveServer(services)
    yield live
    live.stop()


@pytest.fixture
def send_webhook(server: LiveServer) -> Callable[..., None]:
    """Posts a signed message from the participant (a text, an image), as Meta would."""

    def send(text: str | None, mid: str, *, image: str | None = None) -> None:
        body = meta_json("text")
        item = body["entry"][0]["messaging"][0]
        item["timestamp"] = int(time.time() * 1000)
        item["message"] = {"mid": mid, "text": text} if text is not None else {"mid": mid}
        if image is not None:
            item["message"]["attachments"] = [{"type": "image", "payload": {"url": image}}]
        raw = json.dumps(body).encode()
        answer = httpx.post(f"{server.url}/webhooks/instagram", content=raw, headers=signed(raw))
        assert answer.status_code == 200, answer.text

    return send


@pytest.fixture
def screenshots(request: pytest.FixtureRequest) -> Path:
    folder = OUTPUT / "console" / re.sub(r"[^\w.-]", "_", request.node.name)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def browser_page(chromium: str, screenshots: Path) -> Iterator[Page]:
    """A fresh page in headless Chromium that resolves no host but loopback (the test
    reaches nothing else, and Meta's CDN URLs fail as expired ones would)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium,
            args=["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"],
        )
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.set_default_timeout(10_000)
        yield page
        browser.close()


@pytest.fixture
def sign_in(server: LiveServer, services: Services) -> Callable[..., None]:
    """Signs the page in with a new key of this role."""

    def sign(page: Page, role: str = "account") -> None:
        token = issue_key(services, role, ACCOUNT if role != "admin" else None, name=role)
        page.goto(f"{server.url}/console/login")
        page.fill("input[name=api_key]", token)
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r"/console/accounts"))

    return sign
