"""The clients: users in browsers, an admin, and attackers, each a thread with its own source
address.

* ``BrowserClient``: one address (a household), a few users, each with one to three browsers
  ("devices", some bound with ``X-Device-Id``). Its mix: logins (now and then a typo first),
  ``GET /me``, ``GET /auth/sessions``, a refresh, several tabs refreshing one session at the same
  moment with the same refresh token, a login on another device, logout, deleting another
  device's session, revoke-all, an admin revoking the user, a thief replaying a stale refresh
  token, and tries of the sessions it ended on sensitive routes.
* ``AdminDesk``: the admin's console, shared by every thread (behind a lock); now and then it
  logs out and in again, and its ended session is tried on the admin route.
* ``Guesser``: one of several threads sending wrong passwords for one username at once, each
  from its own address.
* ``Sprayer``: threads sharing ONE address, one wrong guess per (unknown) username.

A client treats the stack as a real one would: a 503 is retried with the same request (a few
times, briefly: Retry-After says 1 s); a 403 from the authorizer on a session it believes alive
is retried too (a store fault denies), a 429 is accepted; tokens are refreshed before they
expire. What it observes goes into ``Observations`` and the journal; the model records which
sessions the run ended and how.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from load.model import (
    ADMIN,
    DELETED,
    LOGOUT,
    REUSE,
    REVOKE_ALL,
    Budget,
    Device,
    Observations,
    Probe,
    RevokedIdentity,
    SessionRecord,
    StaleReplay,
    Successor,
    User,
)
from load.wire import (
    FINGERPRINT_COOKIE,
    REFRESH_COOKIE,
    Answer,
    Journal,
    Wire,
    token_claims,
    token_header,
)

LOGIN: Final = "POST /auth/login"
REFRESH: Final = "POST /auth/refresh"
LOGOUT_ROUTE: Final = "POST /auth/logout"
ME: Final = "GET /me"
LIST_SESSIONS: Final = "GET /auth/sessions"
DELETE_SESSION: Final = "DELETE /auth/sessions/{id}"
REVOKE_ALL_ROUTE: Final = "POST /auth/sessions/revoke-all"
ADMIN_REVOKE: Final = "POST /admin/users/{id}/revoke"
SENSITIVE_PROBES: Final = (LIST_SESSIONS, DELETE_SESSION, REVOKE_ALL_ROUTE)

ATTEMPTS: Final = 4  # a request and three retries
RETRY_PAUSE_SECONDS: Final = 0.1
# A refresh whose answer was lost may have rotated the session: only a retry with the same token
# inside the grace window gets the successor (later, it is reuse). So a refresh keeps retrying
# a 503 or a lost answer, pausing as Retry-After says (at most this long), until this many
# seconds before the window closes.
REFRESH_RETRY_PAUSE_MAX_SECONDS: Final = 1.0
GRACE_MARGIN_SECONDS: Final = 5.0
REFRESH_MARGIN_SECONDS: Final = 60  # refresh an access token this close to its expiry
PROBES_PER_IDENTITY: Final = 2  # during the run; every one is tried again at the end
# A session the client believes alive meets 403 only when the authorizer's session read failed
# (a fault denies): retried like a 503.
AUTHORIZER_DENIAL: Final = frozenset({403})


@dataclass
class Context:
    """What every client shares: the stack's port, the journal, the observations."""

    port: int
    journal: Journal
    seen: Observations
    tabs: int
    grace_seconds: float = 30.0

    @property
    def refresh_patience(self) -> float:
        """How long a refresh may keep retrying and still be inside the grace window."""
        return max(0.0, self.grace_seconds - GRACE_MARGIN_SECONDS)

    def stack_now(self) -> float:
        """The stack's time (its clock is the wall clock plus the phase's offset)."""
        return time.time() + self.journal.offsets.get(self.journal.phase, 0.0)

    def wire(self, source_ip: str) -> Wire:
        return Wire(self.port, source_ip, self.journal)


def patient_refresh(send: Callable[[], Answer], within: float) -> tuple[Answer, bool]:
    """``send`` until it is answered with something other than a 503, for at most ``within``
    seconds from the first try (a refresh's retries must land inside the grace window).

    Once an attempt went unanswered (0 or 503: it may have rotated the session), a 429 is
    retried too: the retries count against the refresh limit like any hit, and giving up on
    one would leave the client holding a token that may be superseded. An answer still
    unresolved at the end is reported as 503, uncertain, whatever the last status was (the
    exchanges themselves are recorded as they came). The flag says whether any attempt went
    unanswered."""
    started = time.monotonic()
    answer = send()
    unsure = answer.status in (0, 503)
    retryable = {0, 503}
    while answer.status in retryable and time.monotonic() - started < within:
        if unsure:
            retryable = {0, 429, 503}
        advised = (answer.header("Retry-After") or "").strip()
        pause = float(advised) if advised.isdigit() else RETRY_PAUSE_SECONDS
        time.sleep(min(pause, REFRESH_RETRY_PAUSE_MAX_SECONDS))
        answer = send()
        unsure = unsure or answer.status in (0, 503)
    if unsure and answer.status in (0, 429, 503):
        return Answer(503, answer.headers, answer.body), unsure
    return answer, unsure


def patient(
    send: Callable[[], Answer],
    *,
    retry: frozenset[int] = frozenset(),
    earlier: list[int] | None = None,
) -> Answer:
    """``send`` until it is not a 503 (nor in ``retry``), at most ATTEMPTS times; the statuses
    of the attempts before the last are appended to ``earlier``."""
    answer = send()
    for _ in range(ATTEMPTS - 1):
        if answer.status != 503 and answer.status not in retry:
            break
        if answer.status == 503:
            time.sleep(RETRY_PAUSE_SECONDS)
        if earlier is not None:
            earlier.append(answer.status)
        answer = send()
    return answer


def headers_for(
    session: SessionRecord | None, device: Device, *, bearer: bool = False, refresh: bool = False
) -> dict[str, str]:
    """What the browser's client sends: the cookies whose path matches, the bearer token, its
    id, and X-Requested-With, as web/tokencore.js does (a cookie-authenticated POST needs it)."""
    headers: dict[str, str] = {"X-Requested-With": "tokencore"}
    cookies = []
    if session is not None:
        if refresh:
            cookies.append(f"{REFRESH_COOKIE}={session.refresh}")
        if session.fingerprint:
            cookies.append(f"{FINGERPRINT_COOKIE}={session.fingerprint}")
        if bearer:
            headers["Authorization"] = f"Bearer {session.access}"
    if cookies:
        headers["Cookie"] = "; ".join(cookies)
    if device.device_id:
        headers["X-Device-Id"] = device.device_id
    return headers


def kid_of(token: str | None) -> str:
    return str(token_header(token).get("kid", "")) if token else ""


# --- what a browser does ----------------------------------------------------------------------


@dataclass
class Browsers:
    """The operations of the browsers of one client thread, and the sessions it ended (to try
    them on sensitive routes)."""

    context: Context
    wire: Wire
    rng: random.Random
    revoked: list[RevokedIdentity] = field(default_factory=list)  # due for a probe
    ended: list[RevokedIdentity] = field(default_factory=list)  # every session it ended
    probes_done: dict[str, int] = field(default_factory=dict)

    # login ---------------------------------------------------------------------------------

    def login(self, device: Device, *, typo: bool = False) -> Answer:
        user = device.user
        password = user.password + "-typo" if typo else user.password
        if typo:
            self.context.journal.secret(password, "password")
        answer = patient(
            lambda: self.wire.send(
                "POST",
                "/auth/login",
                route=LOGIN,
                headers=headers_for(None, device),
                body={"username": user.username, "password": password},
                key=user.username,
            )
        )
        if answer.status == 200 and typo:
            self.context.seen.note("a wrong password was accepted")
        elif answer.status == 200:
            self._adopt_login(device, answer)
        elif answer.status == 401 and not typo:
            self.context.seen.note("the right password was refused")
        return answer

    def _adopt_login(self, device: Device, answer: Answer) -> None:
        user = device.user
        body = answer.json()
        access = str(body["access_token"])
        cookies = answer.cookies()
        refresh = cookies.get(REFRESH_COOKIE) or ""
        claims = token_claims(access)
        user.user_id = str(claims.get("sub") or user.user_id or "")
        phase = self.context.journal.phase
        record = SessionRecord(
            label=f"{user.label}.d{device.index}.s{len(user.sessions) + 1}",
            session_id=str(body["session_id"]),
            user=user,
            device=device,
            phase=phase,
            refresh=refresh,
            access=access,
            fingerprint=cookies.get(FINGERPRINT_COOKIE),
            first_access=access,
            first_access_expires=float(claims.get("exp") or 0),
            lineage=[refresh],
        )
        user.sessions.append(record)
        device.session = record
        self.context.seen.mint(phase, record.label, kid_of(access), kid_of(refresh))

    # refresh -------------------------------------------------------------------------------

    def send_refresh(self, wire: Wire, session: SessionRecord, presented: str) -> Answer:
        headers = headers_for(None, session.device)
        cookies = [f"{REFRESH_COOKIE}={presented}"]
        if session.fingerprint:
            cookies.append(f"{FINGERPRINT_COOKIE}={session.fingerprint}")
        headers["Cookie"] = "; ".join(cookies)
        user_id = session.user.user_id
        return wire.send("POST", "/auth/refresh", route=REFRESH, headers=headers, key=user_id)

    def refresh(self, session: SessionRecord) -> None:
        presented = session.refresh
        answer, unsure = patient_refresh(
            lambda: self.send_refresh(self.wire, session, presented), self.context.refresh_patience
        )
        self._settle_refresh(session, presented, [answer], unsure=unsure)

    def tab_race(self, session: SessionRecord) -> None:
        """Several tabs of one browser refresh at the same moment with the same token."""
        presented = session.refresh
        tabs = self.context.tabs
        start = threading.Barrier(tabs)
        answers: list[Answer] = [Answer(0, [], b"")] * tabs
        unsure = [False] * tabs

        def tab(index: int) -> None:
            with contextlib.suppress(threading.BrokenBarrierError):  # slow to start: go anyway
                start.wait(timeout=30)
            answers[index], unsure[index] = patient_refresh(
                lambda: self.send_refresh(self.wire, session, presented),
                self.context.refresh_patience,
            )

        threads = [threading.Thread(target=tab, args=(i,), daemon=True) for i in range(tabs)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.context.seen.race()
        self._settle_refresh(session, presented, answers, unsure=any(unsure))

    def _settle_refresh(
        self, session: SessionRecord, presented: str, answers: list[Answer], *, unsure: bool
    ) -> None:
        seen = self.context.seen
        adopted: tuple[str, str] | None = None
        for answer in answers:
            successor = None
            if answer.status == 200:
                token = answer.cookies().get(REFRESH_COOKIE) or ""
                access = str(answer.json().get("access_token", ""))
                claims = token_claims(token)
                successor = Successor(
                    str(claims.get("sid")), str(claims.get("jti")), int(claims.get("gen") or -1)
                )
                seen.mint(self.context.journal.phase, session.label, kid_of(access), kid_of(token))
                if adopted is None:
                    adopted = (token, access)
            seen.refresh_answer(presented, session.label, answer.status, successor)
        statuses = {answer.status for answer in answers}
        if adopted is not None:
            session.refresh, session.access = adopted
            if session.lineage[-1] != adopted[0]:
                session.lineage.append(adopted[0])
            session.refresh_uncertain = False
        elif 401 in statuses and (unsure or session.refresh_uncertain):
            # An earlier attempt with this very token went unanswered and may have rotated the
            # session; a retry came after the grace window (a slow machine stretches every
            # attempt), so it is reuse, as designed. Left out and counted, not a fault's loss.
            session.refresh_unresolved = True
            session.ended_uncertain = True
            self._detach(session)
        elif 401 in statuses:
            self._noticed_dead(session, f"{REFRESH} answered 401")
        elif statuses & {0, 503}:
            session.refresh_uncertain = True

    def fresh(self, session: SessionRecord) -> None:
        """Refresh first when the access token is about to expire."""
        expires = float(token_claims(session.access).get("exp") or 0)
        if expires - self.context.stack_now() < REFRESH_MARGIN_SECONDS:
            self.refresh(session)

    # routes behind the authorizer ------------------------------------------------------------

    def call(self, session: SessionRecord, route: str, method: str, path: str) -> Answer:
        """A protected route with the session's access token; a persistent denial means the
        session is dead (the run did not end it: invariant 2 will say why)."""
        self.fresh(session)
        # The refresh cookie's Path is /auth: a browser sends it to /auth/sessions, not /me.
        headers = headers_for(
            session, session.device, bearer=True, refresh=path.startswith("/auth/")
        )
        earlier: list[int] = []
        answer = patient(
            lambda: self.wire.send(method, path, route=route, headers=headers),
            retry=AUTHORIZER_DENIAL,
            earlier=earlier,
        )
        if answer.status in (401, 403) and (0 in earlier or 503 in earlier):
            # An earlier attempt may have been applied (a revocation answered 503 after its
            # write): the denials that follow may be its own effect.
            return Answer(503, answer.headers, answer.body)
        if answer.status in (401, 403) and session.live:
            self._noticed_dead(session, f"{route} answered {answer.status}")
        elif answer.status == 404 and route != DELETE_SESSION:
            # The route exists: another function's resolver answered (docs/capacity.md).
            self.context.seen.note(f"{route} answered 404, as if routed to another function")
        return answer

    def logout(self, session: SessionRecord) -> None:
        headers = headers_for(session, session.device, refresh=True)
        answer = patient(
            lambda: self.wire.send("POST", "/auth/logout", route=LOGOUT_ROUTE, headers=headers)
        )
        self.ended_by(answer, [session], LOGOUT)

    def delete_other(self, session: SessionRecord, other: SessionRecord) -> None:
        answer = self.call(session, DELETE_SESSION, "DELETE", f"/auth/sessions/{other.session_id}")
        if answer.status == 404:
            self.context.seen.note("deleting one's own session answered 404")
        self.ended_by(answer, [other], DELETED)

    def revoke_all(self, session: SessionRecord) -> None:
        user = session.user
        live = [s for s in user.sessions if s.live]
        answer = self.call(session, REVOKE_ALL_ROUTE, "POST", "/auth/sessions/revoke-all")
        self.ended_by(answer, live, REVOKE_ALL)

    def ended_by(self, answer: Answer, sessions: list[SessionRecord], reason: str) -> None:
        if answer.status == 204:
            for session in sessions:
                self.end(session, reason)
        elif answer.status in (0, 503):
            for session in sessions:
                session.ended_uncertain = True
                self._detach(session)

    def end(self, session: SessionRecord, reason: str) -> None:
        """The run ended ``session``: from now on its access token must be refused on every
        sensitive route, and the table must say it ended for ``reason`` (not earlier, for
        another: invariant 2)."""
        if not session.live:
            return
        session.ended = reason
        self._detach(session)
        identity = self.identity(session, reason)
        self.revoked.append(identity)
        self.ended.append(identity)

    @staticmethod
    def identity(session: SessionRecord, reason: str) -> RevokedIdentity:
        """What the client still holds of an ended session, to try on sensitive routes."""
        return RevokedIdentity(
            label=session.label,
            session_id=session.session_id,
            access=session.access,
            fingerprint=session.fingerprint,
            device_id=session.device.device_id,
            user_id=session.user.user_id or "",
            reason=reason,
            admin="admin" in session.user.roles,
            access_expires=float(token_claims(session.access).get("exp") or 0),
        )

    def _noticed_dead(self, session: SessionRecord, what: str) -> None:
        if session.noticed_dead is None:
            cap = " (a user logged in beyond the session cap)" if session.user.exceeds_cap else ""
            self.context.seen.note(
                f"sessions given up by their client{cap} (ended, or an outage): {what}"
            )
        session.noticed_dead = session.noticed_dead or what
        self._detach(session)

    @staticmethod
    def _detach(session: SessionRecord) -> None:
        if session.device.session is session:
            session.device.session = None

    # the thief and the probes ----------------------------------------------------------------

    def replay_stale(self, session: SessionRecord, thief: Wire) -> None:
        """A refresh token two generations old, replayed from elsewhere: reuse must be detected
        (401, the session revoked), never answered with tokens."""
        stale = session.lineage[-3]
        answer = patient(lambda: self.send_refresh(thief, session, stale))
        self.context.seen.stale(StaleReplay(session.label, answer.status))
        if answer.status == 401:
            self.end(session, REUSE)
        elif answer.status in (0, 503):
            session.ended_uncertain = True
            self._detach(session)
        elif answer.status == 200:
            self._noticed_dead(session, "a stale refresh token was accepted")

    def probe(self, identity: RevokedIdentity, route: str) -> None:
        """One try of an ended session's access token on a sensitive route (no retry: any
        answer but a denial is a violation)."""
        session_path = f"/auth/sessions/{identity.session_id}"
        method, path = {
            LIST_SESSIONS: ("GET", "/auth/sessions"),
            DELETE_SESSION: ("DELETE", session_path),
            REVOKE_ALL_ROUTE: ("POST", "/auth/sessions/revoke-all"),
            ADMIN_REVOKE: ("POST", f"/admin/users/{identity.user_id}/revoke"),
        }[route]
        headers = {"Authorization": f"Bearer {identity.access}"}
        if identity.fingerprint:
            headers["Cookie"] = f"{FINGERPRINT_COOKIE}={identity.fingerprint}"
        if identity.device_id:
            headers["X-Device-Id"] = identity.device_id
        answer = self.wire.send(method, path, route=route, headers=headers)
        self.context.seen.probe(
            Probe(identity.label, route, answer.status, identity.reason, self.context.journal.phase)
        )

    def probe_next(self) -> bool:
        """Try the oldest ended session that is due; False when none is."""
        if not self.revoked:
            return False
        identity = self.revoked.pop(0)
        done = self.probes_done.get(identity.label, 0)
        routes = (ADMIN_REVOKE, *SENSITIVE_PROBES) if identity.admin else SENSITIVE_PROBES
        self.probe(identity, routes[done % len(routes)])
        self.probes_done[identity.label] = done + 1
        if done + 1 < PROBES_PER_IDENTITY:
            self.revoked.append(identity)
        return True


# --- the admin --------------------------------------------------------------------------------

ADMIN_RELOGIN_EVERY: Final = 8  # revocations between the admin's logout and next login


class AdminDesk:
    """The admin's console: one session at a time, shared by every thread under a lock."""

    def __init__(self, context: Context, user: User, source_ip: str) -> None:
        self._lock = threading.Lock()
        self.user = user
        self.device = Device(user, 1, "admin-console")
        user.devices.append(self.device)
        self.browsers = Browsers(context, context.wire(source_ip), random.Random(0))
        self._uses = 0

    def revoke_user(self, target: User) -> Answer | None:
        """``POST /admin/users/{id}/revoke`` for ``target``; None when the admin cannot log in."""
        with self._lock:
            session = self._session()
            if session is None:
                return None
            answer = self.browsers.call(
                session, ADMIN_REVOKE, "POST", f"/admin/users/{target.user_id}/revoke"
            )
            self._uses += 1
            if self._uses % ADMIN_RELOGIN_EVERY == 0 and self.device.session is session:
                self.browsers.logout(session)  # its access token joins the probes
                while self.browsers.probe_next():
                    pass
            return answer

    def _session(self) -> SessionRecord | None:
        if self.device.session is None:
            self.browsers.login(self.device)
        return self.device.session

    def ended(self) -> list[RevokedIdentity]:
        with self._lock:
            return list(self.browsers.ended)


# --- the users' threads -----------------------------------------------------------------------


class BrowserClient:
    """The users of one source address, working through the mix until the budget is spent."""

    WEIGHTS: Final = {
        "me": 40.0,
        "sessions": 10.0,
        "refresh": 6.0,
        "race": 3.0,
        "another_device": 4.0,
        "typo": 1.0,
        "logout": 3.0,
        "delete_other": 1.5,
        "revoke_all": 0.6,
        "admin": 0.4,
        "stale": 3.0,  # only once a session has rotated twice: rare
        "probe": 5.0,
    }

    def __init__(
        self,
        context: Context,
        source_ip: str,
        users: list[User],
        admin: AdminDesk,
        thief_ip: str,
        seed: int,
    ) -> None:
        self.context = context
        self.users = users
        self.admin = admin
        self.rng = random.Random(seed)
        self.browsers = Browsers(context, context.wire(source_ip), self.rng)
        self.thief = context.wire(thief_ip)

    def run(self, budget: Budget) -> None:
        while True:
            user = self.rng.choice(self.users)
            device, action = self._choose(user)
            cost = self.context.tabs if action == "race" else 2 if action == "typo_first" else 1
            if not budget.take(cost):
                return
            self._perform(user, device, action)

    def _choose(self, user: User) -> tuple[Device, str]:
        """A device of ``user`` and what it does next."""
        rng = self.rng
        signed_in = [d for d in user.devices if d.session is not None]
        if not signed_in:
            device = rng.choice(user.devices)
            return device, "typo_first" if rng.random() < 0.1 else "login"
        device = rng.choice(signed_in)
        session = device.session
        weights = dict(self.WEIGHTS)
        if user.exceeds_cap:
            weights["another_device"] = 30.0
        if len(signed_in) == len(user.devices):
            weights["another_device"] = weights["typo"] = 0.0
        if len(signed_in) < 2:
            weights["delete_other"] = 0.0
        if session is None or len(session.lineage) < 3:
            weights["stale"] = 0.0
        if not self.browsers.revoked:
            weights["probe"] = 0.0
        if user.user_id is None:
            weights["admin"] = 0.0
        names = list(weights)
        return device, rng.choices(names, [weights[name] for name in names])[0]

    def _perform(self, user: User, device: Device, action: str) -> None:
        browsers, rng = self.browsers, self.rng
        signed_out = [d for d in user.devices if d.session is None]
        if action == "login":
            browsers.login(device)
            return
        if action == "typo_first":
            if browsers.login(device, typo=True).status != 429:
                browsers.login(device)
            return
        session = device.session
        if session is None:
            return
        if action == "me":
            browsers.call(session, ME, "GET", "/me")
        elif action == "sessions":
            browsers.call(session, LIST_SESSIONS, "GET", "/auth/sessions")
        elif action == "refresh":
            browsers.refresh(session)
        elif action == "race":
            browsers.tab_race(session)
        elif action == "another_device" and signed_out:
            browsers.login(rng.choice(signed_out))
        elif action == "typo" and signed_out:
            browsers.login(rng.choice(signed_out), typo=True)
        elif action == "logout":
            browsers.logout(session)
        elif action == "delete_other":
            others = [d.session for d in user.devices if d is not device and d.session]
            if others:
                browsers.delete_other(session, rng.choice(others))
        elif action == "revoke_all":
            browsers.revoke_all(session)
        elif action == "admin":
            self._admin_revoke(user)
        elif action == "stale":
            browsers.replay_stale(session, self.thief)
        elif action == "probe":
            browsers.probe_next()

    def _admin_revoke(self, user: User) -> None:
        live = [s for s in user.sessions if s.live]
        answer = self.admin.revoke_user(user)
        if answer is not None:
            self.browsers.ended_by(answer, live, ADMIN)


# --- attackers --------------------------------------------------------------------------------


class Guesser:
    """Wrong passwords for one username, as fast as the stack answers."""

    def __init__(self, context: Context, source_ip: str, seed: int) -> None:
        self.context = context
        self.wire = context.wire(source_ip)
        self.rng = random.Random(seed)
        self.victim = ""

    def run(self, budget: Budget) -> None:
        while budget.take():
            password = f"guess-{self.rng.getrandbits(64):016x}"
            self.context.journal.secret(password, "password")
            self.wire.send(
                "POST",
                "/auth/login",
                route=LOGIN,
                body={"username": self.victim, "password": password},
                key=self.victim,
            )


class Sprayer:
    """One wrong guess per username, many usernames, from an address shared with other
    sprayer threads: the per-address limit is what stands in the way."""

    def __init__(self, context: Context, source_ip: str, name: str, seed: int) -> None:
        self.context = context
        self.wire = context.wire(source_ip)
        self.name = name
        self.rng = random.Random(seed)
        self.sent = 0

    def run(self, budget: Budget) -> None:
        while budget.take():
            self.sent += 1
            username = f"spray-{self.name}-{self.sent}"
            password = f"spray-{self.rng.getrandbits(64):016x}"
            self.context.journal.secret(password, "password")
            self.wire.send(
                "POST",
                "/auth/login",
                route=LOGIN,
                body={"username": username, "password": password},
                key=username,
            )
