"""The attack suite at the HTTP edge, sections 5 to 7: refresh rotation, revocation
propagation, brute force and rate limits. What every attack asserts: http_attacks_kit.py."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.security.conftest import SEC_ADMIN, SEC_ADMIN_PASSWORD
from tests.security.http_attacks_kit import (
    EDGES,
    INVALID_GRANT,
    accepted,
    login_answer,
    refused,
)
from tests.security.http_kit import (
    FINGERPRINT_COOKIE,
    REFRESH_COOKIE,
    REQUEST_TIMEOUT,
    Account,
    Answer,
    Edge,
    Login,
    forge,
    fresh_source_ip,
)
from tests.security.secrets_registry import REGISTRY
from tests.security.tally import record

pytestmark = pytest.mark.e2e


# --- 5. refresh rotation --------------------------------------------------------------------------


def _rotated(edge: Edge, token: str, fingerprint: str) -> str:
    answer = accepted("refresh", edge.refresh(token, fingerprint))
    value = answer.cookies[REFRESH_COOKIE][0]
    assert value
    assert value != token
    return value


def _assert_grant_refused(edge: Edge, case: str, answer: Answer) -> None:
    refused("rotation", f"{edge.name}: {case}", answer, status=401)
    assert answer.json() == INVALID_GRANT
    for name in (REFRESH_COOKIE, FINGERPRINT_COOKIE):
        value, attributes = answer.cookies[name]
        assert value == ""
        assert attributes["max-age"] == "0"


SENSITIVE_PROBE = ("DELETE", "/auth/sessions/probe-session-that-does-not-exist")


def _sensitive(edge: Edge, login: Login) -> Answer:
    """A sensitive route (always checks the session) that changes nothing if it is allowed."""
    method, path = SENSITIVE_PROBE
    return edge.send(
        method, path, bearer=login.access, cookies={FINGERPRINT_COOKIE: login.fingerprint}
    )


def test_replaying_a_rotated_refresh_token_revokes_the_session(strict: Edge) -> None:
    """No grace window (strict): the first replay is reuse; the whole session dies with it."""
    login = strict.login(strict.new_account())
    successor = _rotated(strict, login.refresh, login.fingerprint)
    _assert_grant_refused(
        strict,
        "replay of the rotated refresh token",
        strict.refresh(login.refresh, login.fingerprint),
    )
    _assert_grant_refused(
        strict, "the successor after the reuse", strict.refresh(successor, login.fingerprint)
    )
    refused(
        "rotation",
        "strict: the access token after the reuse (every request checks)",
        strict.me(login.access, login.fingerprint),
        status=403,
    )


def test_the_grace_window_returns_the_same_successor_and_never_a_branch(sec: Edge) -> None:
    login = sec.login(sec.new_account())
    first = _rotated(sec, login.refresh, login.fingerprint)
    # The previous token inside the window: the very same successor, byte for byte.
    for attempt in range(3):
        again = accepted(f"grace replay {attempt}", sec.refresh(login.refresh, login.fingerprint))
        assert again.cookies[REFRESH_COOKIE][0] == first
    # The successor rotates on; the original is now two generations old: reuse, even in the window.
    second = _rotated(sec, first, login.fingerprint)
    _assert_grant_refused(
        sec,
        "a token two generations old inside the grace window",
        sec.refresh(login.refresh, login.fingerprint),
    )
    _assert_grant_refused(
        sec, "the current token after the reuse", sec.refresh(second, login.fingerprint)
    )
    refused(
        "rotation",
        "sec: the access token on a sensitive route after the reuse",
        _sensitive(sec, login),
        status=403,
    )


@pytest.mark.parametrize("edge_name", EDGES)
def test_a_refresh_token_replayed_after_logout_is_refused(
    edge_name: str, edges: dict[str, Edge]
) -> None:
    edge = edges[edge_name]
    login = edge.login(edge.new_account())
    accepted("logout", edge.send("POST", "/auth/logout", cookies={REFRESH_COOKIE: login.refresh}))
    _assert_grant_refused(
        edge, "refresh after logout", edge.refresh(login.refresh, login.fingerprint)
    )
    refused(
        "rotation",
        f"{edge.name}: the access token on a sensitive route after logout",
        _sensitive(edge, login),
        status=403,
    )


@pytest.mark.parametrize("edge_name", EDGES)
def test_concurrent_refreshes_never_branch_the_session(
    edge_name: str, edges: dict[str, Edge]
) -> None:
    """Eight refreshes of one token at once: with a grace window all get the same successor;
    without one, at most one succeeds and then the reuse revokes the session. Never two
    different live successors."""
    edge = edges[edge_name]
    login = edge.login(edge.new_account())
    barrier = threading.Barrier(8)

    def attempt(_: int) -> Answer:
        barrier.wait()
        return edge.refresh(login.refresh, login.fingerprint)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(attempt, range(8)))
    assert all(a.elapsed < REQUEST_TIMEOUT * 3 for a in answers)
    successors = {a.cookies[REFRESH_COOKIE][0] for a in answers if a.status == 200}
    assert len(successors) <= 1, "two different successors: the lineage branched"
    statuses = sorted(a.status for a in answers)
    if edge_name == "sec":
        assert statuses == [200] * 8, statuses
    else:
        # No grace window: the first rotates, the next is reuse and revokes the session; the
        # refresh limit (3/60 here) turns the rest away with 429 before they reach the store.
        assert statuses.count(200) <= 1, statuses
        assert set(statuses) <= {200, 401, 429}, statuses
        for answer in answers:
            if answer.status != 200:
                refused("rotation", "strict: a concurrent replay without a grace window", answer)
        if 401 in statuses:
            # The reuse revoked the session: its access tokens are refused (every request
            # checks the session on this stack; a refresh would only meet the limit).
            winner = next(a for a in answers if a.status == 200)
            access = winner.json()["access_token"]
            refused(
                "rotation",
                "strict: the successor's access token after the concurrent reuse",
                edge.me(access, login.fingerprint),
                status=403,
            )


# --- 6. revocation propagation --------------------------------------------------------------------


def _after_revocation(edge: Edge, how: str, login: Login) -> None:
    """A revoked session: its refresh token is dead, its access token is refused where the
    session is checked (sensitive routes; every route on strict). On sec, sampling is off: the
    access token keeps working on ordinary routes until it expires (the hybrid design)."""
    _assert_grant_refused_as(
        edge, "revocation", f"refresh after {how}", edge.refresh(login.refresh, login.fingerprint)
    )
    refused(
        "revocation",
        f"{edge.name}: sensitive route after {how}",
        _sensitive(edge, login),
        status=403,
    )
    me = edge.me(login.access, login.fingerprint)
    if edge.name == "strict":
        refused("revocation", f"strict: GET /me after {how}", me, status=403)
    else:
        # Sampling off: an ordinary route reads no session, and the revocation list reaches
        # this container within REVOCATION_PROPAGATION_SECONDS (tests/e2e/test_revocation.py
        # proves the bound with the clock moved): either answer is right this soon after.
        assert me.status in (200, 403), "an ordinary route answers the token or denies it"


def _assert_grant_refused_as(edge: Edge, category: str, case: str, answer: Answer) -> None:
    refused(category, f"{edge.name}: {case}", answer, status=401)
    assert answer.json() == INVALID_GRANT


def _assert_login_refused(edge: Edge, case: str, answer: Answer) -> None:
    """The one answer of every failed login (unknown user, wrong password, disabled account)."""
    refused("revocation", f"{edge.name}: {case}", answer, status=401)
    assert answer.json() == {
        "error": "invalid_grant",
        "error_description": "invalid username or password",
    }


def _admin(edge: Edge) -> Login:
    if edge.name == "sec":
        return edge.login(Account(SEC_ADMIN, SEC_ADMIN_PASSWORD, ""))
    return edge.login(edge.new_account(roles=("admin", "user"), prefix="admin"))


def test_a_stolen_bearer_token_cannot_log_its_owner_out(sec: Edge) -> None:
    """Logout is a public route (no authorizer), so it checks the fingerprint binding itself: a
    copied access token without its cookie names no session, and the answer is the same 204."""
    login = sec.login(sec.new_account())
    for label, cookies in (
        ("no fingerprint cookie", None),
        ("someone else's fingerprint", {FINGERPRINT_COOKIE: "A" * 43}),
    ):
        answer = sec.send("POST", "/auth/logout", bearer=login.access, cookies=cookies)
        assert answer.status == 204, f"{label}: {answer.describe()}"
        owner = sec.me(login.access, login.fingerprint)
        record("revocation", f"logout with a stolen bearer, {label}", owner.status == 200)
        accepted(f"the owner's session after: {label}", owner)


@pytest.mark.parametrize("edge_name", EDGES)
def test_every_kind_of_revocation_propagates(edge_name: str, edges: dict[str, Edge]) -> None:
    edge = edges[edge_name]
    # logout with the refresh cookie, and with the bearer token (and its fingerprint cookie)
    login = edge.login(edge.new_account())
    accepted("logout", edge.send("POST", "/auth/logout", cookies={REFRESH_COOKIE: login.refresh}))
    _after_revocation(edge, "logout (cookie)", login)
    login = edge.login(edge.new_account())
    bound = {FINGERPRINT_COOKIE: login.fingerprint}
    accepted("logout", edge.send("POST", "/auth/logout", bearer=login.access, cookies=bound))
    _after_revocation(edge, "logout (bearer)", login)
    # the user ends one of their sessions from another
    account = edge.new_account()
    target, other = edge.login(account), edge.login(account)
    accepted(
        "delete",
        edge.send(
            "DELETE",
            f"/auth/sessions/{target.session_id}",
            bearer=other.access,
            cookies={FINGERPRINT_COOKIE: other.fingerprint},
        ),
    )
    _after_revocation(edge, "DELETE /auth/sessions/{id}", target)
    # revoke-all ends every session, the caller's included
    account = edge.new_account()
    first, second = edge.login(account), edge.login(account)
    accepted(
        "revoke-all",
        edge.send(
            "POST",
            "/auth/sessions/revoke-all",
            bearer=second.access,
            cookies={FINGERPRINT_COOKIE: second.fingerprint},
        ),
    )
    _after_revocation(edge, "revoke-all (another session)", first)
    _after_revocation(edge, "revoke-all (the calling session)", second)
    # an admin revokes a user
    account = edge.new_account()
    victim, admin = edge.login(account), _admin(edge)
    accepted(
        "admin revoke",
        edge.send(
            "POST",
            f"/admin/users/{account.user_id}/revoke",
            bearer=admin.access,
            cookies={FINGERPRINT_COOKIE: admin.fingerprint},
        ),
    )
    _after_revocation(edge, "admin revoke", victim)
    # the operator disables the user (tokenctl disable-user, as `make ctl` runs it)
    account = edge.new_account()
    victim = edge.login(account)
    result = edge.stack.ctl("disable-user", account.username)
    assert result.returncode == 0, result.stderr
    _after_revocation(edge, "disable-user", victim)
    again = edge.send(
        "POST",
        "/auth/login",
        json_body={"username": account.username, "password": account.password},
        source_ip=fresh_source_ip(),
    )
    _assert_login_refused(edge, "login of a disabled user", again)
    # the password changes (through the user service, against the stack's table)
    account = edge.new_account()
    victim = edge.login(account)
    new_password = account.password + "-changed"
    REGISTRY.register(new_password, "password")
    edge.users().change_password(account.user_id, new_password)
    _after_revocation(edge, "password change", victim)
    old = edge.send(
        "POST",
        "/auth/login",
        json_body={"username": account.username, "password": account.password},
        source_ip=fresh_source_ip(),
    )
    _assert_login_refused(edge, "login with the old password", old)
    edge.login(Account(account.username, new_password, account.user_id))


# --- 7. brute force and rate limits ---------------------------------------------------------------

# Limits count in fixed windows that turn with the stacks' clocks (wall clock plus what tests
# advanced): each test starts with at least this much of its window left, far longer than the
# test takes, so its attempts never straddle a window's end.
LOGIN_WINDOW_LEFT = 120  # of LOGIN_RATE_LIMIT's and LOGIN_IP_RATE_LIMIT's 300 s
REFRESH_WINDOW_LEFT = 45  # of REFRESH_RATE_LIMIT's 60 s


def _assert_rate_limited(case: str, answer: Answer, window: int) -> int:
    refused("rate_limits", case, answer, status=429)
    assert answer.json()["error"] == "rate_limited"
    retry = int(answer.header("Retry-After") or "0")
    assert 1 <= retry <= window, retry
    assert answer.header("Set-Cookie") is None
    return retry


def test_login_is_limited_per_username_whatever_its_spelling(sec: Edge) -> None:
    sec.stack.fresh_window(300, needed=LOGIN_WINDOW_LEFT)
    account = sec.new_account()
    wrong = "not-the-password-of-" + account.username
    REGISTRY.register(wrong, "password")
    for attempt in range(5):  # LOGIN_RATE_LIMIT=5/300, each attempt from a new address
        answer = login_answer(sec, account.username, wrong, fresh_source_ip())
        refused("rate_limits", f"sec: wrong password {attempt + 1}", answer, status=401)
    spellings = [
        account.username,
        account.username.upper(),
        account.username.title(),
        f"  {account.username}  ",
        "".join(
            chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch for ch in account.username
        ),  # fullwidth
    ]
    limited = {}
    for spelling in spellings:
        answer = login_answer(sec, spelling, wrong, fresh_source_ip())
        _assert_rate_limited(f"sec: username spelled {spelling!r}", answer, 300)
        limited[spelling] = answer
    # While limited, the right password gets the very same answer: no oracle, no guessing.
    right = login_answer(sec, account.username, account.password, fresh_source_ip())
    _assert_rate_limited("sec: the right password while limited", right, 300)
    for answer in [*limited.values(), right]:
        assert (answer.status, answer.body) == (right.status, right.body)


def test_login_is_limited_per_source_address_and_forwarding_headers_do_not_reset_it(
    sec: Edge,
) -> None:
    sec.stack.fresh_window(300, needed=LOGIN_WINDOW_LEFT)
    address = fresh_source_ip()
    for n in range(12):  # LOGIN_IP_RATE_LIMIT=12/300: spraying twelve names from one address
        answer = login_answer(sec, f"sprayed-name-{n}", "sprayed-password-x", address)
        refused("rate_limits", f"sec: password spraying {n + 1}", answer, status=401)
    _assert_rate_limited(
        "sec: the thirteenth name from one address",
        login_answer(sec, "sprayed-name-12", "sprayed-password-x", address),
        300,
    )
    for header, value in {
        "X-Forwarded-For": "203.0.113.7",
        "X-Real-IP": "203.0.113.8",
        "Forwarded": "for=203.0.113.9",
        "True-Client-IP": "203.0.113.10",
    }.items():
        answer = login_answer(
            sec, "sprayed-name-13", "sprayed-password-x", address, **{header: value}
        )
        _assert_rate_limited(f"sec: spoofed {header}", answer, 300)


def test_an_attacker_cannot_lock_a_victim_out_without_the_victim_noticing(sec: Edge) -> None:
    """The per-username limit is the one lever an attacker has over a victim. What it cannot
    do: end the victim's sessions (refresh is limited per user id from a verified token, not
    per name), block the victim's address, or lock the account silently or for long (the
    victim sees 429 rate_limited with Retry-After, never "wrong password", and the window is
    LOGIN_RATE_LIMIT's, here 300 s)."""
    sec.stack.fresh_window(300, needed=LOGIN_WINDOW_LEFT)
    victim = sec.new_account()
    session = sec.login(victim, source_ip=fresh_source_ip())
    attacker_ip = fresh_source_ip()
    for n in range(8):
        answer = login_answer(sec, victim.username, f"guess-number-{n}-for-victim", attacker_ip)
        assert answer.status in (401, 429)
        record("rate_limits", f"sec: attacker guess {n}", answer.status in (401, 429))
    # The victim's session is untouched: it refreshes and calls the API.
    successor = _rotated(sec, session.refresh, session.fingerprint)
    accepted("victim's API call", sec.me(session.access, session.fingerprint))
    # A fresh login from the victim is refused as rate limited (visible), for a bounded time.
    retry = _assert_rate_limited(
        "sec: victim's own login while the attacker holds the limit",
        login_answer(sec, victim.username, victim.password, fresh_source_ip()),
        300,
    )
    assert retry <= 300
    # The attacker's address is limited for everyone it targets, not the victim's.
    other = sec.new_account()
    accepted(
        "another user from another address",
        login_answer(sec, other.username, other.password, fresh_source_ip()),
    )
    # Garbage refresh tokens naming the victim never spend the victim's refresh allowance.
    for n in range(5):
        forged = forge(
            {"alg": "HS256", "typ": "rt+jwt"}, {"sub": victim.user_id, "n": n}, secret=b"guess"
        )
        refused(
            "rate_limits",
            f"sec: forged refresh token naming the victim {n}",
            sec.refresh(forged),
            status=401,
        )
    accepted("the victim's refresh still works", sec.refresh(successor, session.fingerprint))


def test_refresh_is_limited_per_user_and_a_limited_refresh_keeps_the_session(strict: Edge) -> None:
    strict.stack.fresh_window(60, needed=REFRESH_WINDOW_LEFT)
    login = strict.login(strict.new_account())
    token = login.refresh
    # Garbage tokens do not count against the user: only verified tokens reach the limiter.
    for n in range(4):
        refused(
            "rate_limits",
            f"strict: garbage refresh {n}",
            strict.refresh(f"garbage-{n}.a.b"),
            status=401,
        )
    for _ in range(3):  # REFRESH_RATE_LIMIT=3/60
        token = _rotated(strict, token, login.fingerprint)
    answer = strict.refresh(token, login.fingerprint)
    _assert_rate_limited("strict: the fourth refresh in the window", answer, 60)
    # 429 keeps the cookies (no Set-Cookie at all) and the session: every request checks it here.
    assert answer.header("Set-Cookie") is None
    accepted("the session is still active", strict.me(login.access, login.fingerprint))
