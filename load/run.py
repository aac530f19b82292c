"""One load and chaos run, from starting the stack to the tally.

1. Start ``python -m devserver`` (free ports) with the run's settings and its users, wait until
   it serves; move its clock to the start of a rate-limit window (time is moved, never waited
   for); turn the faults on.
2. Phase A: every client works through the first half of the requests.
3. Key rotation (access and refresh key sets) with ``make ctl``'s command, while the stack's
   functions still meet faults; the clock moves past the key caches' lifetime.
4. Phase B: the second half.
5. Verification, faults off: the sessions whose last refresh ended in a 503 refresh once; the
   access tokens minted before the rotation still pass ``GET /me``; after the clock moves to a
   fresh refresh window, every session the run did not end refreshes; every session it ended
   is tried on the sensitive routes; the table is read (sessions, rate-limit counters).
6. Stop the stack (SIGINT, exit 0, no traceback in its log); check the invariants.
"""

from __future__ import annotations

import functools
import math
import random
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from devserver.faults import KINDS
from devserver.settings import CONCURRENCY_VARIABLE, MAX_CONCURRENCY
from load import invariants
from load.actors import (
    ADMIN_REVOKE,
    LOGIN,
    ME,
    REFRESH,
    SENSITIVE_PROBES,
    AdminDesk,
    BrowserClient,
    Browsers,
    Context,
    Guesser,
    RevocationWatcher,
    Sprayer,
)
from load.invariants import Check, EndedSession, FinalRefresh, Limit
from load.model import (
    EVICTED,
    Budget,
    Device,
    KeyCheck,
    Observations,
    OrdinaryProbe,
    RevokedIdentity,
    SessionRecord,
    User,
)
from load.stack import LoadStack, free_port
from load.wire import Exchange, Journal, OnSecret
from tokencore.config import DEFAULT_SENSITIVE_ROUTES

# The run's settings; anything else is the template's default. The limits and the sensitive
# routes are the defaults, spelled out so the checks know them. Key caches of 5 s let the
# rotation take effect after a 6 s move of the clock, well inside the 30 s grace window.
# A cap of 5 sessions lets one user be evicted within the login limit.
RUN_SETTINGS: Final = {
    "LOGIN_RATE_LIMIT": "10/300",
    "LOGIN_IP_RATE_LIMIT": "100/300",
    "REFRESH_RATE_LIMIT": "5/60",
    "SENSITIVE_ROUTES": DEFAULT_SENSITIVE_ROUTES,
    "JWKS_CACHE_TTL_SECONDS": "5",
    "JWKS_REFETCH_MIN_INTERVAL_SECONDS": "1",
    "MAX_SESSIONS_PER_USER": "5",
    "REFRESH_REUSE_GRACE_SECONDS": "30",
}
MIN_CLIENTS: Final = 32
GUESSER_CAMPAIGNS: Final = 2
GUESS_SHARE: Final = 0.06
SPRAY_SHARE: Final = 0.06
OPS_PER_USER: Final = 36  # sizes the user population: about this many operations each


@dataclass(frozen=True)
class Options:
    requests: int = 10_000
    clients: int = 48
    fault_rate: float = 0.1
    fault_kinds: tuple[str, ...] = KINDS
    tabs: int = 3
    seed: int = 1
    settings: dict[str, str] = field(default_factory=dict)
    log_dir: Path | None = None


@dataclass
class Phase:
    name: str
    started: float = 0.0
    ended: float = 0.0

    @property
    def seconds(self) -> float:
        return self.ended - self.started


@dataclass
class Result:
    options: Options
    settings: dict[str, str]
    checks: list[Check]
    exchanges: list[Exchange]
    phases: list[Phase]
    faults: dict[str, Any]
    notes: dict[str, int]
    log_dir: Path
    population: dict[str, int]
    counters: dict[str, tuple[int, int]]  # rate-limit scope -> (windows, highest count)
    ghosts: int
    # Issue 20: per ended session tried from its end on, the stack seconds from its end to its
    # first denial on GET /me (revocation_latencies); the denied ones first tried too late to
    # time; and the ages at which GET /me still let an ended session through.
    revocation_denied_after: list[float] = field(default_factory=list)
    revocation_tried_late: int = 0
    revocation_allowed_ages: list[float] = field(default_factory=list)

    @property
    def violations(self) -> int:
        return sum(len(check.violations) for check in self.checks)


def _say(line: str) -> None:
    print(line, flush=True)


# --- the population ---------------------------------------------------------------------------


@dataclass
class Population:
    clients: list[BrowserClient]
    guessers: list[Guesser]
    sprayers: list[Sprayer]
    admin: AdminDesk
    users: list[User]
    victims: list[str]  # per phase, per campaign: A1, A2, B1, B2

    def everyone(self) -> list[User]:
        return [*self.users, self.admin.user]


def _password() -> str:
    return secrets.token_urlsafe(18)


def build_population(options: Options, context: Context) -> Population:
    per_campaign = max(3, options.clients // 12)
    sprayer_threads = max(2, options.clients // 12)
    browser_threads = options.clients - GUESSER_CAMPAIGNS * per_campaign - sprayer_threads
    rng = random.Random(options.seed)
    ops_per_thread = options.requests * (1 - GUESS_SHARE - SPRAY_SHARE) / browser_threads
    users_per_thread = min(6, max(2, int(ops_per_thread // OPS_PER_USER)))

    def user(name: str, label: str, devices: int, roles: tuple[str, ...] = ("user",)) -> User:
        made = User(name, _password(), label, roles)
        for index in range(1, devices + 1):
            bound = rng.random() < 0.5
            made.devices.append(Device(made, index, f"{label}-d{index}" if bound else None))
        return made

    users: list[User] = []
    groups: list[list[User]] = []
    for thread in range(browser_threads):
        group = []
        for slot in range(users_per_thread):
            number = thread * users_per_thread + slot
            devices = rng.choices((1, 2, 3), (6, 3, 1))[0]
            group.append(user(f"load-user-{number:03d}", f"u{number:03d}", devices))
        groups.append(group)
        users += group
    cap = 5
    hoarder = user("load-hoarder", "hoarder", cap + 3)
    hoarder.exceeds_cap = True
    groups[0].append(hoarder)
    users.append(hoarder)
    victims = [user(f"load-victim-{n}", f"victim{n}", 1) for n in (1, 2, 3)]
    admin_user = user("load-admin", "admin", 0, ("admin", "user"))
    admin = AdminDesk(context, admin_user, "127.0.3.1")

    clients = [
        BrowserClient(
            context,
            f"127.0.0.{10 + index}",
            group,
            admin,
            thief_ip=f"127.0.5.{1 + index}",
            seed=options.seed * 1000 + index,
        )
        for index, group in enumerate(groups)
    ]
    guessers = [
        Guesser(context, f"127.0.1.{10 + index}", seed=options.seed * 2000 + index)
        for index in range(GUESSER_CAMPAIGNS * per_campaign)
    ]
    sprayers = [
        Sprayer(context, "127.0.2.1", str(index), seed=options.seed * 3000 + index)
        for index in range(sprayer_threads)
    ]
    everyone = [*users, *victims]
    return Population(
        clients,
        guessers,
        sprayers,
        admin,
        everyone,
        # Each campaign meets a fresh username per phase; one of them does not exist (the
        # unknown-user path costs the same Argon2 work and must be limited the same).
        victims=[victims[0].username, "load-nobody", victims[1].username, victims[2].username],
    )


# --- phases -----------------------------------------------------------------------------------


def _run_threads(work: Sequence[tuple[str, Callable[[], None]]]) -> None:
    """Run each piece of work in its own thread; re-raise the first failure of the tool
    itself (a violation is never an exception)."""
    failures: list[BaseException] = []

    def guarded(target: Callable[[], None]) -> Callable[[], None]:
        def body() -> None:
            try:
                target()
            except BaseException as exc:  # noqa: BLE001 - reported after the join
                failures.append(exc)

        return body

    threads = [threading.Thread(target=guarded(t), name=n, daemon=True) for n, t in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"a client thread failed: {failures[0]!r}") from failures[0]


def _phase(
    name: str,
    requests: int,
    population: Population,
    journal: Journal,
    offset: float,
) -> Phase:
    journal.phase = name
    journal.offsets[name] = offset
    guess_budget = round(requests * GUESS_SHARE)
    spray_budget = round(requests * SPRAY_SHARE)
    browse = Budget(requests - guess_budget - spray_budget)
    index = 0 if name == "A" else 2
    per_campaign = len(population.guessers) // GUESSER_CAMPAIGNS
    guess_budgets = [Budget(guess_budget // GUESSER_CAMPAIGNS) for _ in range(GUESSER_CAMPAIGNS)]
    for number, guesser in enumerate(population.guessers):
        guesser.victim = population.victims[index + number // per_campaign]
    spray = Budget(spray_budget)
    work: list[tuple[str, Callable[[], None]]] = []
    for number, client in enumerate(population.clients):
        work.append((f"browser-{number}", functools.partial(client.run, browse)))
    for number, guesser in enumerate(population.guessers):
        budget = guess_budgets[number // per_campaign]
        work.append((f"guesser-{number}", functools.partial(guesser.run, budget)))
    for number, sprayer in enumerate(population.sprayers):
        work.append((f"sprayer-{number}", functools.partial(sprayer.run, spray)))
    context = population.admin.browsers.context
    watcher = RevocationWatcher(context, context.wire("127.0.4.2"))
    work.append(("revocation-watcher", functools.partial(watcher.run, browse)))
    phase = Phase(name, started=time.time())
    _run_threads(work)
    phase.ended = time.time()
    return phase


def _rotate(stack: LoadStack, cache_seconds: int) -> float:
    """Rotate both key sets as an operator would (`make ctl ARGS="rotate-keys"`), then move the
    clock past the key caches' lifetime so every signer and verifier follows. Returns the
    stack clock's new offset."""
    for extra in ((), ("--refresh",)):
        report = stack.ctl("rotate-keys", *extra)
        if not report.get("promoted"):
            # The next key had not been published for a whole cache lifetime yet.
            stack.advance(cache_seconds + 1)
            report = stack.ctl("rotate-keys", *extra)
        if not report.get("promoted"):
            raise RuntimeError(f"rotate-keys {' '.join(extra)} promoted no key")
    return stack.advance(cache_seconds + 1)


@dataclass
class Verification:
    finals: list[FinalRefresh]  # the last refresh of every session the run did not end
    ended: list[EndedSession]  # what the table says of every session it ended
    uncertain: int  # sessions whose ending answered 503
    unanswered: int  # sessions whose refresh answered 503 for the whole grace window
    items: list[dict[str, Any]]  # the table at the end


# --- verification -----------------------------------------------------------------------------


def _verify(
    stack: LoadStack,
    population: Population,
    context: Context,
    settings: dict[str, str],
    refresh_limit: Limit,
) -> Verification:
    journal = context.journal
    now, offset = stack.clock()
    journal.phase = "verify"
    journal.offsets["verify"] = offset
    checker = Browsers(context, context.wire("127.0.4.1"), random.Random(0))
    users = population.everyone()

    # A session whose last refresh got no answer but 503s for as long as the grace window
    # allowed may have been rotated by one of them: its client holds a token that is now either
    # current or reuse, and cannot know which. Such sessions are left out (and counted), like
    # revocations that answered 503; any retry now would be past the window.
    for user in users:
        for session in user.sessions:
            if session.live and session.noticed_dead is None and session.refresh_uncertain:
                session.refresh_unresolved = True
                session.ended_uncertain = True
    unanswered = sum(1 for user in users for s in user.sessions if s.refresh_unresolved)

    # The last refreshes, at most the refresh limit per user in each of as many fresh windows
    # as needed (the clock moves to each), so that none meets a 429.
    items = {_item_key(item): item for item in stack.table_items(settings["SESSIONS_TABLE_NAME"])}
    finals: list[FinalRefresh] = []
    kept: list[SessionRecord] = []
    uncertain = sum(1 for user in users for s in user.sessions if s.ended_uncertain) - unanswered
    ended: list[EndedSession] = []
    for user in users:
        for session in user.sessions:
            if session.ended is not None:
                item = items.get(("SESSION#" + session.session_id, "META"), {})
                ended.append(
                    EndedSession(
                        session.label,
                        session.ended,
                        _string(item, "status"),
                        _string(item, "revoked_reason"),
                        session.noticed_dead,
                    )
                )
    waiting = {user: [s for s in user.sessions if s.live] for user in users}
    round_number = 0
    while any(waiting.values()):
        round_number += 1
        now, _ = stack.clock()
        offset = stack.advance(refresh_limit.seconds - now % refresh_limit.seconds + 0.5)
        journal.phase = f"final-{round_number}"
        journal.offsets[journal.phase] = offset
        for user, sessions in waiting.items():
            for session in sessions[: refresh_limit.count]:
                answer = checker.send_refresh(checker.wire, session, session.refresh)
                item = items.get(("SESSION#" + session.session_id, "META"), {})
                finals.append(
                    FinalRefresh(
                        label=session.label,
                        status=answer.status,
                        stored_status=_string(item, "status"),
                        stored_reason=_string(item, "revoked_reason"),
                        exceeds_cap=user.exceeds_cap,
                        noticed=session.noticed_dead,
                    )
                )
                if answer.status == 200:
                    kept.append(session)
                elif _string(item, "revoked_reason") == EVICTED:
                    checker.ended.append(checker.identity(session, EVICTED))  # tried as ended
            del sessions[: refresh_limit.count]

    # The rotation denied nothing: access tokens minted before it, of sessions still alive,
    # still pass /me.
    for session in kept:
        if session.phase == "A" and session.first_access_expires > context.stack_now() + 30:
            answer = checker.wire.send(
                "GET", "/me", route=ME, headers=_bearer(session.first_access, session)
            )
            context.seen.key_check(
                KeyCheck(
                    "a token minted before the rotation still passes GET /me",
                    session.label,
                    answer.status == 200,
                    f"answered {answer.status}",
                )
            )

    # Every session the run ended, on every sensitive route.
    identities: list[RevokedIdentity] = [
        identity for client in population.clients for identity in client.browsers.ended
    ]
    identities += population.admin.ended() + checker.ended
    for identity in identities:
        routes = (ADMIN_REVOKE, *SENSITIVE_PROBES) if identity.admin else SENSITIVE_PROBES
        for route in routes:
            checker.probe(identity, route)
    return Verification(finals, ended, uncertain, unanswered, list(items.values()))


def _bearer(access: str, session: SessionRecord) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {access}"}
    if session.fingerprint:
        headers["Cookie"] = f"__Host-fgp={session.fingerprint}"
    if session.device.device_id:
        headers["X-Device-Id"] = session.device.device_id
    return headers


def _item_key(item: dict[str, Any]) -> tuple[str, str]:
    return str(item.get("pk", {}).get("S", "")), str(item.get("sk", {}).get("S", ""))


def _string(item: dict[str, Any], name: str) -> str:
    return str(item.get(name, {}).get("S", ""))


# --- the run ----------------------------------------------------------------------------------


def run(
    options: Options, *, on_secret: OnSecret | None = None, say: Callable[[str], None] = _say
) -> Result:
    if options.clients < MIN_CLIENTS:
        raise ValueError(f"at least {MIN_CLIENTS} concurrent clients")
    log_dir = options.log_dir or Path(tempfile.mkdtemp(prefix="tokencore-load-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    journal = Journal(on_secret)
    seen = Observations()
    # Lambda scales to the offered load; the local stack's pools stop at DEV_FUNCTION_CONCURRENCY
    # (default 4), after which a request waits up to 30 s and gets API Gateway's own 503, which
    # has no Retry-After. A container per client, as Lambda would run: the run measures the
    # stack, not a queue in front of it.
    containers = {CONCURRENCY_VARIABLE: str(min(MAX_CONCURRENCY, options.clients))}
    settings = {
        "SESSIONS_TABLE_NAME": "tokencore-sessions",
        **RUN_SETTINGS,
        **containers,
        **options.settings,
    }
    login_limit = Limit.parse(settings["LOGIN_RATE_LIMIT"])
    ip_limit = Limit.parse(settings["LOGIN_IP_RATE_LIMIT"])
    refresh_limit = Limit.parse(settings["REFRESH_RATE_LIMIT"])
    cache_seconds = int(settings["JWKS_CACHE_TTL_SECONDS"])

    port, aws_port = free_port(), free_port()
    context = Context(
        port=port,
        journal=journal,
        seen=seen,
        tabs=options.tabs,
        grace_seconds=float(settings["REFRESH_REUSE_GRACE_SECONDS"]),
    )
    population = build_population(options, context)
    for user in population.everyone():
        journal.secret(user.password, "password")
    seeds = ";".join(user.seed_entry() for user in population.everyone())
    say(
        f"load: starting the local stack with {len(population.everyone())} users "
        f"(logs in {log_dir})"
    )
    stack = LoadStack({**settings, "SEED_USERS": seeds}, log_dir, port=port, aws_port=aws_port)

    phases: list[Phase] = []
    exit_code = -1
    try:
        stack.wait_ready()
        # Start on a fresh window of every limit (their lengths divide each other's).
        span = math.lcm(login_limit.seconds, ip_limit.seconds, refresh_limit.seconds)
        now, _ = stack.clock()
        offset = stack.advance(span - now % span + 0.5)
        before = stack.faults(
            {"rate": options.fault_rate, "kinds": list(options.fault_kinds), "seed": options.seed}
        )
        half = options.requests // 2
        say(f"load: phase A, {half} requests, faults at {options.fault_rate:.0%}")
        phases.append(_phase("A", half, population, journal, offset))
        say("load: rotating the access and refresh keys (tokenctl rotate-keys)")
        offset = _rotate(stack, cache_seconds)
        say(f"load: phase B, {options.requests - half} requests")
        phases.append(_phase("B", options.requests - half, population, journal, offset))
        after = stack.faults({"rate": 0})
        say("load: verifying, faults off")
        verify = Phase("verify", started=time.time())
        verified = _verify(stack, population, context, settings, refresh_limit)
        verify.ended = time.time()
        phases.append(verify)
    finally:
        exit_code = stack.stop()
    logs = stack.stderr.read_text(errors="replace") + stack.stdout.read_text(errors="replace")

    exchanges = journal.in_phase(*journal.offsets)  # every phase but the start-up
    labels = {user.user_id: user.label for user in population.everyone() if user.user_id}
    counted = frozenset({200, 401})
    checks = [
        invariants.answers(exchanges),
        invariants.sessions_kept(
            verified.finals, verified.ended, verified.uncertain, verified.unanswered
        ),
        invariants.revoked_refused(seen.probes),
        invariants.revoked_refused_everywhere(seen.ordinary_probes, revocation_bound(settings)),
        invariants.refresh_races(seen),
        invariants.stale_replays(seen.stale_replays),
        invariants.limit_held(
            "login attempts per username",
            exchanges,
            route=LOGIN,
            counted=counted,
            key=lambda e: e.key,
            limit=login_limit,
            offsets=journal.offsets,
        ),
        invariants.limit_held(
            "login attempts per source address",
            exchanges,
            route=LOGIN,
            counted=counted,
            key=lambda e: e.source_ip,
            limit=ip_limit,
            offsets=journal.offsets,
        ),
        invariants.limit_held(
            "refreshes per user",
            exchanges,
            route=REFRESH,
            counted=frozenset({200}),
            key=lambda e: e.key,
            limit=refresh_limit,
            offsets=journal.offsets,
            label=lambda user_id: labels.get(user_id, "a user"),
        ),
        _rotation_check(seen, phases),
        _stack_check(exit_code, logs),
    ]
    faults = _fault_delta(before, after)
    counters = _counters(verified.items)
    known = {session.session_id for user in population.everyone() for session in user.sessions}
    ghosts = sum(
        1
        for item in verified.items
        if _item_key(item)[0].startswith("SESSION#")
        and _string(item, "status") == "active"
        and _string(item, "session_id") not in known
    )
    latencies, tried_late = revocation_latencies(seen.ordinary_probes)
    return Result(
        options=options,
        settings=settings,
        checks=checks,
        exchanges=exchanges,
        phases=phases,
        faults=faults,
        notes=dict(seen.notes),
        log_dir=log_dir,
        population={
            "browser threads": len(population.clients),
            "guesser threads": len(population.guessers),
            "sprayer threads": len(population.sprayers),
            "users": len(population.everyone()),
        },
        counters=counters,
        ghosts=ghosts,
        revocation_denied_after=latencies,
        revocation_tried_late=tried_late,
        revocation_allowed_ages=sorted(
            probe.age for probe in seen.ordinary_probes if probe.status == 200
        ),
    )


def revocation_bound(settings: dict[str, str]) -> float:
    """The stale bound of the authorizers' revocation lists, plus a second of flight."""
    return 3 * float(settings.get("REVOCATION_PROPAGATION_SECONDS", "5")) + 1


# A first try later than this after the end bounds the latency from above, nothing more.
TRIED_FROM_SECONDS: Final = 1.0


def revocation_latencies(
    probes: Iterable[OrdinaryProbe], tried_from: float = TRIED_FROM_SECONDS
) -> tuple[list[float], int]:
    """Per ended session first tried on GET /me within ``tried_from`` stack seconds of its end,
    the seconds to its first denial (sorted); and how many denied sessions were left out
    because their first try came later (a first denial then is when it was tried, not when
    the list reached the authorizers)."""
    first_try: dict[str, float] = {}
    first_denial: dict[str, float] = {}
    for probe in probes:
        first_try[probe.label] = min(probe.age, first_try.get(probe.label, probe.age))
        if probe.status in (401, 403):
            first_denial[probe.label] = min(probe.age, first_denial.get(probe.label, probe.age))
    kept = [age for label, age in first_denial.items() if first_try[label] <= tried_from]
    return sorted(kept), len(first_denial) - len(kept)


def _rotation_check(seen: Observations, phases: list[Phase]) -> Check:
    check = Check("key rotation: old tokens still pass; new tokens carry the new keys")
    before = {(a, r) for phase, _label, a, r in seen.minted if phase == "A"}
    old_access = {a for a, _ in before}
    old_refresh = {r for _, r in before}
    for phase, label, access_kid, refresh_kid in seen.minted:
        if phase != "B":
            continue
        check.checked += 1
        if access_kid in old_access or refresh_kid in old_refresh:
            check.fail(f"{label}: a token minted after the rotation carries a key of before it")
    for key_check in seen.key_checks:
        check.checked += 1
        if not key_check.passed:
            check.fail(f"{key_check.label}: {key_check.what}: {key_check.detail}")
    return check


def _stack_check(exit_code: int, logs: str) -> Check:
    check = Check("the stack logged no traceback and stopped cleanly", checked=1)
    tracebacks = logs.count("Traceback")
    if tracebacks:
        check.fail(f"{tracebacks} tracebacks in the stack's log")
    if exit_code != 0:
        check.fail(f"the stack exited {exit_code} after SIGINT")
    return check


def _fault_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    def minus(later: dict[str, int], earlier: dict[str, int]) -> dict[str, int]:
        return {k: v - earlier.get(k, 0) for k, v in later.items() if v - earlier.get(k, 0)}

    return {
        "requests": minus(after["requests"], before["requests"]),
        "injected": {
            kind: minus(after["injected"][kind], before["injected"].get(kind, {}))
            for kind in after["injected"]
        },
        "plan": before["plan"],
    }


def _counters(items: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    found: dict[str, tuple[int, int]] = {}
    for item in items:
        pk = _item_key(item)[0]
        if not pk.startswith("RATE#"):
            continue
        scope = pk.split("#")[1]
        count = int(item.get("count", {}).get("N", "0"))
        windows, highest = found.get(scope, (0, 0))
        found[scope] = (windows + 1, max(highest, count))
    return found
