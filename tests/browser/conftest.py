"""Browser tests: the reference client (web/tokencore.js) and the demo page (/demo) in headless
Chromium, against the local stack (``python -m devserver``, started as tests/e2e does).

* The browser is Debian's chromium (``/usr/bin/chromium``, or ``$CHROMIUM``), driven by
  Playwright's Python driver (requirements-browser.txt); no browser build is ever downloaded.
  ``make e2e-browser`` installs both when missing. Each test gets a fresh browser context (its
  own cookie jar); the browser runs with a fresh temporary profile and without any of its
  background connections (the test machine has no network).
* These tests run only when tests/browser is named on the command line (``make e2e-browser``
  runs ``pytest tests/browser``); ``make test`` (``pytest`` over tests/) leaves them out, so it
  needs neither Chromium nor Playwright.
* One stack for the session: a 60 s access-token lifetime (tests move the page's clock, never
  sleep for expiry), a 2 s refresh grace window (the replay test moves the stack's clock past
  it: devserver.clock), and a session check on every authorization
  (``SESSION_CHECK_SAMPLE_RATE=1``), so a revoked session is
  refused at the very next request instead of at the sampled one. Each test signs in as its
  own user, so sessions and the per-user refresh rate limit never mix between tests.
* Every page's uncaught errors and console errors (a CSP violation, say) fail the test, except
  the browser's own line for a request answered with an error status, which the client expects.
* Screenshots of each step go to test-artifacts/browser/ (gitignored).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.client import Client
from tests.e2e.conftest import REPO_ROOT, RunningStack, launch_stack, wait_until_ready

if TYPE_CHECKING:  # Playwright is imported lazily: `make test` collects this file without it
    from playwright.sync_api import Browser, BrowserContext, Page, Playwright

BROWSER_DIR = Path(__file__).resolve().parent
ARTIFACTS = REPO_ROOT / "test-artifacts" / "browser"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# The test machine has no network: Chromium's own connections (updates, sync, safe browsing,
# QUIC probes) would only fail, slowly. --no-sandbox: CI runs as root in a container.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 900, "height": 900}
EXPECT_TIMEOUT_MS = 10_000

ACCESS_TOKEN_TTL_SECONDS = 60
REFRESH_GRACE_SECONDS = 2
PASSWORD = "browser-test-password"  # test-only accounts of a throwaway local stack
USERS = ("reloader", "twotabs", "nolocks", "replayed", "leaver", "refused")

REFRESH_COOKIE = "__Secure-rt"
FINGERPRINT_COOKIE = "__Host-fgp"

# Chromium's console line for any response with an error status (the client expects 400 from
# a refresh without a cookie, 401 from a refused refresh token...).
_EXPECTED_CONSOLE = re.compile(r"^Failed to load resource: the server responded with a status")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Collect tests/browser only when it (or something in it) is named on the command line."""
    if collection_path == BROWSER_DIR or BROWSER_DIR not in collection_path.parents:
        return None
    for argument in config.args:
        named = (config.invocation_params.dir / argument.split("::", 1)[0]).resolve()
        if named == BROWSER_DIR or BROWSER_DIR in named.parents:
            return None
    return True


# --- the stack --------------------------------------------------------------------------------


@dataclass
class BrowserStack:
    running: RunningStack

    @property
    def base_url(self) -> str:
        return self.running.base_url

    def refreshes(self) -> list[int]:
        """The status of every POST /auth/refresh the stack has answered so far. The stack
        logs a request before it sends the answer (devserver.gateway), so a refresh whose
        answer a page has awaited is already here: nothing to wait for."""
        return [
            int(status)
            for status in re.findall(r'"POST /auth/refresh" (\d{3})', self.running.logs())
        ]

    def sessions(self, username: str) -> list[dict[str, Any]]:
        """The user's active sessions as the operator CLI lists them (with generations)."""
        result = self.running.ctl("list-sessions", username)
        assert result.returncode == 0, result.stderr
        sessions: list[dict[str, Any]] = json.loads(result.stdout)["sessions"]
        return sessions

    def client(self) -> Client:
        return self.running.client()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserStack]:
    running = launch_stack(
        tmp_path_factory.mktemp("browser-stack"),
        ACCESS_TOKEN_TTL_SECONDS=str(ACCESS_TOKEN_TTL_SECONDS),
        REFRESH_REUSE_GRACE_SECONDS=str(REFRESH_GRACE_SECONDS),
        SESSION_CHECK_SAMPLE_RATE="1",
        SEED_USERS=";".join(f"{name}:{PASSWORD}:user" for name in USERS),
    )
    try:
        wait_until_ready(running)
        yield BrowserStack(running)
    finally:
        code = running.stop(signal.SIGTERM)
        logs = running.logs()
    assert code == 0, logs[-3000:]
    assert "Traceback" not in logs, logs[-3000:]


# --- the browser ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def artifacts() -> Path:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"no Chromium at {CHROMIUM}: `make e2e-browser` installs Debian's chromium "
            "(apt-get install chromium), or set CHROMIUM=/path/to/chromium"
        )
    from playwright.sync_api import expect

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    # A non-persistent launch: Playwright gives Chromium a fresh temporary profile directory.
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
    )
    yield browser
    browser.close()


@dataclass
class Tab:
    """One tab showing the demo page."""

    page: Page
    name: str
    problems: list[str] = field(default_factory=list)

    def shot(self, step: str) -> Path:
        path = ARTIFACTS / f"{step}.png"
        self.page.screenshot(path=path, full_page=True)
        return path

    def client(self, script: str, argument: Any = None) -> Any:
        """Runs ``script``, a function of the page's TokencoreClient (``demo.client``)."""
        return self.page.evaluate(
            f"async ([argument]) => ({script})(window.demo.client, argument)", [argument]
        )

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = self.client("(client) => client.state")
        return state


@dataclass
class Browsing:
    """A browser context (one cookie jar, like one browser profile) and its tabs."""

    context: BrowserContext
    stack: BrowserStack
    tabs: list[Tab] = field(default_factory=list)

    def open(self, name: str = "tab", *, init_script: str | None = None) -> Tab:
        from playwright.sync_api import expect

        page = self.context.new_page()
        tab = Tab(page, name)
        page.on("pageerror", lambda error: tab.problems.append(f"uncaught: {error}"))
        page.on(
            "console",
            lambda message: (
                tab.problems.append(f"console: {message.text}")
                if message.type == "error" and not _EXPECTED_CONSOLE.match(message.text)
                else None
            ),
        )
        if init_script is not None:
            page.add_init_script(init_script)
        page.goto(f"{self.stack.base_url}/demo")
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        self.tabs.append(tab)
        return tab

    def cookies(self) -> dict[str, dict[str, Any]]:
        return {cookie["name"]: dict(cookie) for cookie in self.context.cookies()}


@pytest.fixture
def browsing(
    browser: Browser, stack: BrowserStack, artifacts: Path
) -> Iterator[Callable[..., Browsing]]:
    """Opens browser contexts; each is closed after the test, and its tabs must have logged no
    uncaught error and no unexpected console error."""
    opened: list[Browsing] = []

    def open_context(**options: Any) -> Browsing:
        context = browser.new_context(viewport=VIEWPORT, **options)
        session = Browsing(context, stack)
        opened.append(session)
        return session

    yield open_context
    problems = [
        f"{tab.name}: {problem}"
        for session in opened
        for tab in session.tabs
        for problem in tab.problems
    ]
    for session in opened:
        session.context.close()
    assert not problems, "\n".join(problems)
