"""The load run's invariant checks (load.invariants) catch what they exist to catch, on
journals made up for the purpose: each violation a check must report, and what it must not
mistake for one (a window edge, a 429, an eviction the run caused)."""

from __future__ import annotations

from load.invariants import (
    Check,
    EndedSession,
    FinalRefresh,
    Limit,
    answers,
    limit_held,
    refresh_races,
    revoked_refused,
    revoked_refused_everywhere,
    sessions_kept,
    stale_replays,
    window_of,
)
from load.model import Observations, OrdinaryProbe, Probe, StaleReplay, Successor
from load.run import revocation_latencies
from load.wire import Exchange

LOGIN = "POST /auth/login"
WINDOW_START = 1_800_000_000.0  # a multiple of 300 and of 60


def exchange(
    status: int,
    *,
    at: float = WINDOW_START + 10,
    takes: float = 0.2,
    route: str = LOGIN,
    key: str | None = "victim",
    ip: str = "127.0.1.10",
    phase: str = "A",
    retry_after: str | None = None,
) -> Exchange:
    return Exchange(
        route=route,
        status=status,
        retry_after=retry_after,
        sent=at,
        answered=at + takes,
        latency=takes,
        source_ip=ip,
        phase=phase,
        key=key,
    )


# --- answers ----------------------------------------------------------------------------------


def test_only_503_may_be_a_5xx_and_it_says_when_to_retry() -> None:
    check = answers(
        [
            exchange(200),
            exchange(401),
            exchange(503, retry_after="1"),
            exchange(429, retry_after="120"),
            exchange(500),
            exchange(502),
            exchange(503),
            exchange(429, retry_after="soon"),
            exchange(429, retry_after="0"),
            exchange(0),
        ]
    )
    assert check.checked == 10
    assert len(check.violations) == 6
    assert "500 from POST /auth/login" in check.violations[0]
    assert any("no answer" in violation for violation in check.violations)


# --- limits -----------------------------------------------------------------------------------


def logins(
    count: int,
    *,
    status: int = 401,
    start: float = WINDOW_START + 10,
    key: str = "victim",
    phase: str = "A",
) -> list[Exchange]:
    return [exchange(status, at=start + i, key=key, phase=phase) for i in range(count)]


def check_usernames(exchanges: list[Exchange], offsets: dict[str, float] | None = None) -> Check:
    return limit_held(
        "per username",
        exchanges,
        route=LOGIN,
        counted=frozenset({200, 401}),
        key=lambda e: e.key,
        limit=Limit(10, 300),
        offsets=offsets or {"A": 0.0},
    )


def test_parallel_guesses_past_the_limit_are_a_violation() -> None:
    """The bug the run exists to catch: eleven guesses reached the password check in one
    window (four threads, none told to stop in time)."""
    check = check_usernames(logins(11))
    assert check.checked == 1
    assert check.violations == [
        f"victim: 11 attempts reached the check in the window starting at "
        f"{int(WINDOW_START)} (limit 10)"
    ]


def test_the_limit_itself_and_refused_attempts_are_fine() -> None:
    within = logins(9) + logins(1, status=200) + logins(20, status=429) + logins(3, status=503)
    check = check_usernames(within)
    assert check.ok
    assert check.checked == 1


def test_windows_and_keys_are_counted_apart() -> None:
    check = check_usernames(
        logins(10)
        + logins(10, start=WINDOW_START + 300 + 5)  # the next window
        + logins(10, key="someone-else")
    )
    assert check.ok
    assert check.checked == 3


def test_an_attempt_across_a_window_edge_is_counted_in_neither() -> None:
    """Sent before the edge, answered after it: the stack may have counted it in either
    window, so it cannot make a violation (and is reported)."""
    edge = WINDOW_START + 300
    straddling = exchange(401, at=edge - 0.1, takes=0.3)
    check = check_usernames([*logins(10), straddling, *logins(10, start=edge + 1)])
    assert check.ok
    assert check.note == "1 attempts at a window edge not counted"
    assert window_of(straddling, {"A": 0.0}, 300) is None


def test_the_stack_clock_offset_of_each_phase_places_attempts() -> None:
    """Ten in phase A and one in phase B, a wall-clock minute later but in the same window of
    the stack's clock only once B's offset is applied."""
    early = logins(10)
    late = logins(1, start=WINDOW_START + 10 + 600, phase="B")
    assert check_usernames(early + late, {"A": 0.0, "B": 0.0}).ok
    assert not check_usernames(early + late, {"A": 0.0, "B": -600.0}).ok


def test_per_address_limits_use_the_source_address() -> None:
    spray = [exchange(401, at=WINDOW_START + i, key=f"spray-{i}") for i in range(101)]
    check = limit_held(
        "per address",
        spray,
        route=LOGIN,
        counted=frozenset({200, 401}),
        key=lambda e: e.source_ip,
        limit=Limit(100, 300),
        offsets={"A": 0.0},
    )
    assert len(check.violations) == 1
    assert check.violations[0].startswith("127.0.1.10: 101 attempts")


# --- refresh races ----------------------------------------------------------------------------


def test_a_refresh_token_with_two_successors_is_a_violation() -> None:
    seen = Observations()
    seen.refresh_answer("rt-1", "u001.d1.s1", 200, Successor("s", "jti-a", 2))
    seen.refresh_answer("rt-1", "u001.d1.s1", 200, Successor("s", "jti-b", 2))
    seen.refresh_answer("rt-2", "u002.d1.s1", 200, Successor("s2", "jti-c", 2))
    seen.refresh_answer("rt-2", "u002.d1.s1", 200, Successor("s2", "jti-c", 2))
    seen.refresh_answer("rt-2", "u002.d1.s1", 429, None)
    seen.refresh_answer("rt-3", "u003.d1.s1", 200, Successor("s3", "jti-d", 2))  # alone
    check = refresh_races(seen)
    assert check.checked == 2
    assert check.violations == ["u001.d1.s1: one refresh token, 2 different successors"]


def test_a_race_that_revoked_while_another_tab_won_is_a_violation() -> None:
    seen = Observations()
    seen.refresh_answer("rt-1", "u001.d1.s1", 200, Successor("s", "jti-a", 2))
    seen.refresh_answer("rt-1", "u001.d1.s1", 401, None)
    check = refresh_races(seen)
    assert len(check.violations) == 1


def test_a_stale_refresh_token_must_be_refused() -> None:
    check = stale_replays(
        [
            StaleReplay("a", 401),
            StaleReplay("b", 429),  # limited: not processed
            StaleReplay("c", 503),
            StaleReplay("d", 200),
        ]
    )
    assert check.checked == 2
    assert check.violations == ["d: a stale refresh token answered 200"]


# --- sessions and revocations -----------------------------------------------------------------


def test_a_session_the_run_did_not_end_must_still_refresh() -> None:
    check = sessions_kept(
        [
            FinalRefresh("u001.d1.s1", 200, "active", "", False, None),
            FinalRefresh("u002.d1.s1", 401, "revoked", "refresh_reuse", False, "answered 401"),
            FinalRefresh("hoarder.d1.s1", 401, "revoked", "evicted", True, None),
            FinalRefresh("u003.d1.s1", 401, "revoked", "evicted", False, None),
        ],
        [],
        uncertain=2,
    )
    assert check.checked == 4
    assert len(check.violations) == 2
    assert check.violations[0].startswith("u002.d1.s1: refresh answered 401; stored as revoked")
    assert "(refresh_reuse)" in check.violations[0]
    assert check.violations[1].startswith("u003.d1.s1")  # evicted, but never above the cap


def test_a_session_the_run_ended_must_have_ended_for_that_reason() -> None:
    """One the table says was revoked for another reason was lost before the run ended it
    (and a revocation answered 204 must have happened)."""
    check = sessions_kept(
        [],
        [
            EndedSession("u001.d1.s1", "logout", "revoked", "logout", None),
            EndedSession("u001.d2.s2", "deleted", "revoked", "user_revoked", None),
            EndedSession("u002.d1.s1", "admin", "revoked", "revoke_all", None),  # index missed
            EndedSession("u003.d1.s1", "logout", "revoked", "refresh_reuse", "answered 401"),
            EndedSession("u004.d1.s1", "revoke_all", "active", "", None),
        ],
        uncertain=0,
    )
    assert check.checked == 5
    assert check.violations == [
        "u003.d1.s1: ended by the run (logout) but stored as revoked (refresh_reuse); during "
        "the run: answered 401",
        "u004.d1.s1: ended by the run (revoke_all) but stored as active",
    ]


def test_an_ended_session_passing_a_sensitive_route_is_a_violation() -> None:
    check = revoked_refused(
        [
            Probe("u001.d1.s1", "GET /auth/sessions", 403, "logout", "A"),
            Probe("u001.d1.s1", "DELETE /auth/sessions/{id}", 401, "logout", "verify"),
            Probe("u002.d1.s2", "POST /auth/sessions/revoke-all", 204, "admin", "B"),
            Probe("u002.d1.s2", "GET /auth/sessions", 503, "admin", "B"),
        ]
    )
    assert check.checked == 4
    assert len(check.violations) == 2
    assert "answered 204" in check.violations[0]


def test_an_ended_session_passing_an_ordinary_route_after_the_bound_is_a_violation() -> None:
    probes = [
        OrdinaryProbe("alice-1", "logout", 200, 4.0),  # within the bound: the list's latency
        OrdinaryProbe("alice-1", "logout", 403, 6.0),
        OrdinaryProbe("bob-1", "admin", 503, 30.0),  # a fault denies: fine
        OrdinaryProbe("bob-1", "admin", 200, 16.5),
    ]
    check = revoked_refused_everywhere(probes, 16.0)
    assert check.checked == 2
    assert len(check.violations) == 1
    assert "bob-1" in check.violations[0]
    assert "16.5 s" in check.violations[0]


def test_revocation_latency_counts_only_sessions_tried_from_their_end() -> None:
    probes = [
        OrdinaryProbe("alice-1", "logout", 200, 0.3),
        OrdinaryProbe("alice-1", "logout", 200, 4.9),
        OrdinaryProbe("alice-1", "logout", 403, 5.2),
        OrdinaryProbe("alice-1", "logout", 403, 5.5),  # only the first denial counts
        OrdinaryProbe("bob-1", "admin", 403, 0.8),
        OrdinaryProbe("carol-1", "logout", 403, 112.0),  # first tried late: an upper bound only
        OrdinaryProbe("dave-1", "logout", 503, 0.2),  # never denied: no latency
    ]
    assert revocation_latencies(probes) == ([0.8, 5.2], 1)
