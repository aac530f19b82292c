"""The demo page (/demo) and web/tokencore.js in headless Chromium, step by step as a user
goes: sign in, reload, two tabs refreshing at the same moment, a refresh token replayed from
outside, revoking another device, logging out. A screenshot of every step goes to
test-artifacts/browser/.

What the server saw is checked on the server's side: the stack's access log (every POST
/auth/refresh and its status) and the operator CLI's session list (each session's refresh
generation), never only what the page claims.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import Route, expect

from tests.browser.conftest import (
    ACCESS_TOKEN_TTL_SECONDS,
    FINGERPRINT_COOKIE,
    PASSWORD,
    REFRESH_COOKIE,
    REFRESH_GRACE_SECONDS,
    BrowserStack,
    Browsing,
    Tab,
)
from tests.e2e.client import Client
from tests.e2e.conftest import DEMO_PASSWORD, DEMO_USER

pytestmark = pytest.mark.e2e

FROM_LOGIN = "sign-in"
FROM_REFRESH = "a refresh by this tab (from the cookie)"
FROM_OTHER_TAB = "another tab (no refresh needed)"
REFUSED = "the server refused the refresh token"

# Arms a tab: at the "go" message on the test-barrier channel, it refreshes and sends five
# requests at once, and keeps the outcomes in window.__outcome. One message from any tab sets
# every armed tab off in the same moment.
ARM = """(requests) => {
  window.__outcome = new Promise((resolve) => {
    const barrier = new BroadcastChannel('test-barrier');
    barrier.onmessage = async () => {
      barrier.close();
      const client = window.demo.client;
      const calls = [client.refresh().then(() => 'refreshed')];
      for (let i = 0; i < requests; i += 1) {
        calls.push(client.fetch('/me').then((response) => response.status));
      }
      const settled = await Promise.allSettled(calls);
      resolve(settled.map((s) => (s.status === 'fulfilled' ? s.value : String(s.reason))));
    };
  });
}"""
GO = "() => new BroadcastChannel('test-barrier').postMessage('go')"
OUTCOME = "() => window.__outcome"

# The browsers the client must still keep signed in without: no Web Locks API.
WITHOUT_WEB_LOCKS = (
    "Object.defineProperty(Navigator.prototype, 'locks', { get: () => undefined, "
    "configurable: true });"
)

BrowsingFactory = Callable[..., Browsing]


def sign_in(tab: Tab, username: str, password: str = PASSWORD) -> None:
    page = tab.page
    expect(page.locator("#signin")).to_be_visible()
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#login")
    expect_signed_in(tab, username)


def expect_signed_in(tab: Tab, username: str) -> None:
    status = tab.page.locator("#status")
    expect(status).to_have_attribute("data-state", "signed-in")
    expect(status).to_have_text(f"Signed in as {username}@example.com")
    expect(tab.page.locator("#signin")).to_be_hidden()


def expect_signed_out(tab: Tab) -> None:
    status = tab.page.locator("#status")
    expect(status).to_have_attribute("data-state", "signed-out")
    expect(status).to_have_text("Signed out")
    expect(tab.page.locator("#signin")).to_be_visible()
    expect(tab.page.locator("#session")).to_be_hidden()


def token_source(tab: Tab) -> str:
    return str(tab.page.locator("#token-source").inner_text())


def test_sign_in_then_reload_refreshes_silently(
    browsing: BrowsingFactory, stack: BrowserStack
) -> None:
    browser = browsing()
    tab = browser.open()
    expect_signed_out(tab)  # no refresh cookie yet: the silent refresh got 400
    tab.shot("01-signed-out")

    sign_in(tab, "reloader")
    expect(tab.page.locator("#token-source")).to_have_text(FROM_LOGIN)
    expect(tab.page.locator("#me-status")).to_have_text("200")
    expect(tab.page.locator("#me-output")).to_contain_text('"email": "reloader@example.com"')
    expect(tab.page.locator("#expires-in")).to_have_text(re.compile(r"^[01]:\d\d$"))
    tab.shot("02-signed-in")

    # The access token is in memory only: nothing a script (or an XSS payload) could read
    # later holds it, and both cookies are HttpOnly, Secure, SameSite=Strict.
    token = tab.client("(client) => client.getAccessToken()")
    assert token.count(".") == 2
    stored = tab.page.evaluate(
        """async (token) => ({
          local: localStorage.length,
          session: sessionStorage.length,
          cookie: document.cookie,
          databases: (await indexedDB.databases()).length,
          inPage: document.documentElement.outerHTML.includes(token),
          inState: JSON.stringify(window.demo.client.state).includes(token),
        })""",
        token,
    )
    assert stored == {
        "local": 0,
        "session": 0,
        "cookie": "",
        "databases": 0,
        "inPage": False,
        "inState": False,
    }
    cookies = browser.cookies()
    refresh_cookie, fingerprint = cookies[REFRESH_COOKIE], cookies[FINGERPRINT_COOKIE]
    for cookie, path in ((refresh_cookie, "/auth"), (fingerprint, "/")):
        assert (cookie["path"], cookie["httpOnly"], cookie["secure"], cookie["sameSite"]) == (
            path,
            True,
            True,
            "Strict",
        )
    [session] = stack.sessions("reloader")
    assert session["generation"] == 1
    assert session["device_id"].startswith("web demo (")

    before = len(stack.refreshes())
    tab.page.reload()
    expect(tab.page.locator("body")).to_have_attribute("data-ready", "true")
    expect_signed_in(tab, "reloader")
    expect(tab.page.locator("#token-source")).to_have_text(FROM_REFRESH)
    expect(tab.page.locator("#log")).to_contain_text("silent refresh from the HttpOnly cookie")
    assert stack.refreshes()[before:] == [200]
    [after] = stack.sessions("reloader")
    assert (after["session_id"], after["generation"]) == (session["session_id"], 2)
    assert browser.cookies()[REFRESH_COOKIE]["value"] != refresh_cookie["value"]  # rotated
    tab.shot("03-reloaded")


def test_two_tabs_refreshing_at_the_same_moment_stay_signed_in(
    browsing: BrowsingFactory, stack: BrowserStack
) -> None:
    browser = browsing()
    browser.context.clock.install()  # the pages' clock, so the test can age their tokens
    first = browser.open("first tab")
    sign_in(first, "twotabs")
    before = len(stack.refreshes())
    second = browser.open("second tab")  # gets the first tab's token: no refresh
    expect_signed_in(second, "twotabs")
    expect(second.page.locator("#token-source")).to_have_text(FROM_OTHER_TAB)
    assert len(stack.refreshes()) == before

    # Past the access token's lifetime on both pages' clocks (the server's clock stays put):
    # every request now needs a new token first.
    browser.context.clock.fast_forward((ACCESS_TOKEN_TTL_SECONDS + 5) * 1000)
    for tab in (first, second):
        expect(tab.page.locator("#expires-in")).to_have_text("0:00")
        tab.page.evaluate(ARM, 5)
    first.page.evaluate(GO)  # both tabs: refresh() and five /me at once, twelve calls in all
    outcomes = [tab.page.evaluate(OUTCOME) for tab in (first, second)]

    assert outcomes == [["refreshed", 200, 200, 200, 200, 200]] * 2
    assert stack.refreshes()[before:] == [200]  # exactly one refresh
    [session] = stack.sessions("twotabs")
    assert session["generation"] == 2
    states = [tab.state() for tab in (first, second)]
    assert all(state["signedIn"] for state in states)
    assert states[0]["sessionId"] == states[1]["sessionId"] == session["session_id"]
    assert sorted(token_source(tab) for tab in (first, second)) == sorted(
        [FROM_REFRESH, FROM_OTHER_TAB]
    )
    for tab in (first, second):
        expect(tab.page.locator("#expires-in")).not_to_have_text("0:00")
        expect_signed_in(tab, "twotabs")
    first.shot("04-two-tabs-first")
    second.shot("05-two-tabs-second")


def test_without_web_locks_the_grace_window_keeps_both_tabs_signed_in(
    browsing: BrowsingFactory, stack: BrowserStack
) -> None:
    """Browsers without Web Locks: each tab refreshes for itself, at the same moment, with the
    same refresh cookie; the server's grace window hands the second the same successor."""
    browser = browsing()
    first = browser.open("first tab", init_script=WITHOUT_WEB_LOCKS)
    sign_in(first, "nolocks")
    second = browser.open("second tab", init_script=WITHOUT_WEB_LOCKS)
    expect_signed_in(second, "nolocks")
    expect(second.page.locator("#cross-tab")).to_have_text(re.compile("grace window"))
    before = len(stack.refreshes())
    for tab in (first, second):
        tab.page.evaluate(ARM, 2)
    first.page.evaluate(GO)
    outcomes = [tab.page.evaluate(OUTCOME) for tab in (first, second)]

    assert outcomes == [["refreshed", 200, 200]] * 2
    assert stack.refreshes()[before:] == [200, 200]
    [session] = stack.sessions("nolocks")  # still active: no reuse was detected
    assert session["generation"] in (2, 3)  # one rotation replayed in grace, or two in a row
    for tab in (first, second):
        expect_signed_in(tab, "nolocks")
    # Both tabs hold a working token and the cookie they share still refreshes.
    assert first.client("(client) => client.fetch('/me').then((r) => r.status)") == 200
    assert second.client("(client) => client.refresh().then((s) => s.signedIn)") is True


def test_a_refresh_token_replayed_from_outside_signs_out_every_tab(
    browsing: BrowsingFactory, stack: BrowserStack
) -> None:
    browser = browsing()
    first = browser.open("first tab")
    sign_in(first, "replayed")
    second = browser.open("second tab")
    expect_signed_in(second, "replayed")

    stolen = browser.cookies()[REFRESH_COOKIE]["value"]  # what a thief copied
    first.page.click("#refresh")
    expect(first.page.locator("#token-source")).to_have_text(FROM_REFRESH)
    assert browser.cookies()[REFRESH_COOKIE]["value"] != stolen
    stack.running.advance_clock(REFRESH_GRACE_SECONDS + 0.5)  # past the grace window: theft

    thief = Client(stack.base_url, {(REFRESH_COOKIE, "/auth"): stolen})
    assert thief.refresh().status == 401
    assert stack.sessions("replayed") == []  # the whole session is revoked

    # The second tab's next request: its token is refused (the session check), the refresh
    # that follows is refused too, and it signs out; the first tab follows without a request.
    second.page.click("#call-me")
    expect_signed_out(second)
    expect_signed_out(first)
    expect(second.page.locator("#log")).to_contain_text(REFUSED)
    expect(second.page.locator("#log")).to_contain_text("GET /me: signed out")
    expect(first.page.locator("#log")).to_contain_text(f"Signed out (in another tab): {REFUSED}")
    cookies = browser.cookies()  # the refused refresh cleared both cookies
    assert REFRESH_COOKIE not in cookies
    assert FINGERPRINT_COOKIE not in cookies
    second.shot("06-replayed-signed-out")

    first.page.reload()
    expect(first.page.locator("body")).to_have_attribute("data-ready", "true")
    expect_signed_out(first)


def test_the_session_list_revokes_another_device(
    browsing: BrowsingFactory, stack: BrowserStack
) -> None:
    browser = browsing()
    tab = browser.open()
    sign_in(tab, DEMO_USER, DEMO_PASSWORD)
    phone = stack.client()
    login = phone.login(DEMO_USER, DEMO_PASSWORD, headers={"X-Device-Id": "phone (outside)"})
    assert login.status == 200

    tab.page.click("#list-sessions")
    rows = tab.page.locator("#sessions tr")
    expect(rows).to_have_count(2)
    here = rows.filter(has_text="this browser")
    other = rows.filter(has_text="phone (outside)")
    expect(here.locator("button.revoke")).to_have_count(0)  # revoking yourself is logging out
    expect(other.locator("button.revoke")).to_be_visible()
    tab.shot("07-sessions")

    other.locator("button.revoke").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("this browser")
    expect(tab.page.locator("#log")).to_contain_text("Revoked the session of phone (outside)")
    assert phone.refresh().status == 401  # the other device is signed out
    expect_signed_in(tab, DEMO_USER)
    [session] = stack.sessions(DEMO_USER)
    assert session["session_id"] == tab.state()["sessionId"]
    tab.shot("08-other-device-revoked")


def test_logout_clears_the_cookies_and_signs_out_every_tab(
    browsing: BrowsingFactory, stack: BrowserStack
) -> None:
    browser = browsing()
    first = browser.open("first tab")
    sign_in(first, "leaver")
    second = browser.open("second tab")
    expect_signed_in(second, "leaver")

    first.page.click("#logout")
    expect_signed_out(first)
    expect_signed_out(second)
    expect(second.page.locator("#log")).to_contain_text("Logged out (in another tab)")
    cookies = browser.cookies()
    assert REFRESH_COOKIE not in cookies
    assert FINGERPRINT_COOKIE not in cookies
    assert stack.sessions("leaver") == []
    first.shot("09-logged-out")

    second.page.reload()  # nothing left to restore the session from
    expect(second.page.locator("body")).to_have_attribute("data-ready", "true")
    expect_signed_out(second)


def test_a_refused_token_is_refreshed_once_and_the_request_retried_once(
    browsing: BrowsingFactory, stack: BrowserStack
) -> None:
    browser = browsing()
    tab = browser.open()
    sign_in(tab, "refused")
    old = tab.client("(client) => client.getAccessToken()")
    sent: list[str] = []

    def refuse_the_old_token(route: Route) -> None:
        # What API Gateway answers when the HTTP API authorizer denies a token (expired on the
        # server's clock, say): 403 {"message": "Forbidden"}.
        token = (route.request.headers.get("authorization") or "").removeprefix("Bearer ")
        sent.append("old" if token == old else "new")
        if token == old:
            route.fulfill(status=403, json={"message": "Forbidden"})
        else:
            route.continue_()

    tab.page.route("**/me", refuse_the_old_token)
    before = len(stack.refreshes())
    statuses = tab.client(
        "(client) => Promise.all([0, 1, 2, 3].map(() => client.fetch('/me').then((r) => r.status)))"
    )
    assert statuses == [200, 200, 200, 200]
    assert sorted(sent) == ["new"] * 4 + ["old"] * 4  # each request: refused, then retried once
    assert stack.refreshes()[before:] == [200]  # one refresh for the four
    tab.page.unroute("**/me")

    # A token refused right after a refresh (a route the user may not call): one refresh and
    # one retry, then no more refreshes for that token.
    tab.page.route("**/me", lambda route: route.fulfill(status=403, json={"message": "Forbidden"}))
    before = len(stack.refreshes())
    assert tab.client("(client) => client.fetch('/me').then((r) => r.status)") == 403
    assert tab.client("(client) => client.fetch('/me').then((r) => r.status)") == 403
    assert stack.refreshes()[before:] == [200]
    tab.page.unroute("**/me")

    # A 403 from the route itself (a role the user lacks) is an answer: no refresh.
    tab.page.route(
        "**/me",
        lambda route: route.fulfill(
            status=403,
            json={"error": "insufficient_scope", "error_description": "admin only"},
        ),
    )
    before = len(stack.refreshes())
    assert tab.client("(client) => client.fetch('/me').then((r) => r.status)") == 403
    assert len(stack.refreshes()) == before
    tab.page.unroute("**/me")
    expect_signed_in(tab, "refused")
