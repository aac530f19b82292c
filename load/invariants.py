"""The invariants, checked over what the run recorded; each is a tally line: checked N,
violations M, and what the violations were.

Sound at window edges: the stack counts a rate-limit attempt in the window of the moment its
function read the clock, which lies between the moment the request was sent and the moment its
answer came back. Both are wall-clock readings here, and the stack's clock is the wall clock
plus an offset that only the run moves, between phases, with no request in flight
(``Journal.offsets``). An attempt whose whole interval falls in one window is counted in it;
one that straddles a window edge is counted in none (and reported), so an over-limit window is
never an artefact of guessing. The counts are lower bounds of what reached the password check:
a 429 that came after it, or a 503, is not counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from load.model import STORED_REASONS, Observations, Probe, StaleReplay
from load.wire import Exchange

MAX_DETAILS = 20


@dataclass
class Check:
    name: str
    checked: int = 0
    violations: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def ok(self) -> bool:
        return not self.violations

    def fail(self, detail: str) -> None:
        self.violations.append(detail)


@dataclass(frozen=True, slots=True)
class Limit:
    count: int
    seconds: int

    @classmethod
    def parse(cls, text: str) -> Limit:
        count, _, seconds = text.partition("/")
        return cls(int(count), int(seconds))

    def __str__(self) -> str:
        return f"{self.count}/{self.seconds}"


# --- 1. answers -------------------------------------------------------------------------------


def answers(exchanges: Iterable[Exchange]) -> Check:
    """Every request is answered; nothing answers 5xx but 503; every 503 and 429 carries a
    Retry-After of whole seconds."""
    check = Check("every request answered; no 5xx but 503; Retry-After on every 503 and 429")
    for exchange in exchanges:
        check.checked += 1
        where = f"{exchange.route} (phase {exchange.phase})"
        if exchange.status == 0:
            check.fail(f"no answer to {where}: {exchange.error}")
        elif exchange.status >= 500 and exchange.status != 503:
            check.fail(f"{exchange.status} from {where}")
        elif exchange.status in (429, 503):
            value = (exchange.retry_after or "").strip()
            if not value.isdigit() or int(value) < 1:
                check.fail(f"{exchange.status} without a valid Retry-After from {where}")
    return check


# --- 2. sessions kept -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FinalRefresh:
    """The last word on a session the run did not end: a refresh with faults off."""

    label: str
    status: int
    stored_status: str  # the session item's status and reason, as the table holds them
    stored_reason: str
    exceeds_cap: bool  # its user logged in more devices than the cap, on purpose
    noticed: str | None  # what the client saw go wrong during the run, if anything


@dataclass(frozen=True, slots=True)
class EndedSession:
    """A session the run ended, and what the table says about it at the end."""

    label: str
    reason: str  # how the run ended it (load.model)
    stored_status: str
    stored_reason: str
    noticed: str | None


def sessions_kept(
    finals: Iterable[FinalRefresh],
    ended: Iterable[EndedSession],
    uncertain: int,
    unanswered: int = 0,
) -> Check:
    """Every session the run did not end still refreshes (the only other ending accepted is
    the session cap's eviction of a user the run logged in beyond it), and every session it
    ended was ended by that, not before, for another reason."""
    check = Check("no session lost or revoked by a fault (not ended: refreshes; ended: as run)")
    check.note = (
        f"{uncertain} sessions left out: the run tried to end them and got a 503; "
        f"{unanswered}: a refresh went unanswered and no retry settled it inside the grace window"
    )
    for session in ended:
        check.checked += 1
        if session.stored_reason not in STORED_REASONS[session.reason]:
            seen = f"; during the run: {session.noticed}" if session.noticed else ""
            check.fail(
                f"{session.label}: ended by the run ({session.reason}) but stored as "
                f"{session.stored_status or 'missing'}"
                f"{' (' + session.stored_reason + ')' if session.stored_reason else ''}{seen}"
            )
    for final in finals:
        check.checked += 1
        if final.status == 200:
            continue
        if final.stored_reason == "evicted" and final.exceeds_cap:
            continue  # the run's own logins exceeded the cap: an ending it caused
        seen = f"; during the run: {final.noticed}" if final.noticed else ""
        check.fail(
            f"{final.label}: refresh answered {final.status}; stored as "
            f"{final.stored_status or 'missing'}"
            f"{' (' + final.stored_reason + ')' if final.stored_reason else ''}{seen}"
        )
    return check


# --- 3. revoked sessions refused --------------------------------------------------------------


def revoked_refused(probes: Iterable[Probe]) -> Check:
    check = Check("a session the run ended never passes a sensitive route")
    for probe in probes:
        check.checked += 1
        if probe.status not in (401, 403):
            check.fail(
                f"{probe.label} (ended: {probe.reason}): {probe.route} answered {probe.status} "
                f"(phase {probe.phase})"
            )
    return check


# --- 4. refresh races -------------------------------------------------------------------------


def refresh_races(seen: Observations) -> Check:
    """Every refresh token answered more than once (tabs racing, retries after a 503) had one
    successor at most, and no answer treated the race as reuse while another got tokens."""
    check = Check("every refresh race has one winner: one successor per refresh token")
    for presented, statuses in seen.refresh_statuses.items():
        if len(statuses) < 2:
            continue
        check.checked += 1
        successors = seen.successors.get(presented, set())
        label = seen.refresh_labels.get(presented, "?")
        if len(successors) > 1:
            check.fail(f"{label}: one refresh token, {len(successors)} different successors")
        elif successors and 401 in statuses:
            check.fail(f"{label}: one tab got tokens, another was refused (401) in the same race")
    check.note = f"{seen.races} tab races"
    return check


def stale_replays(replays: Iterable[StaleReplay]) -> Check:
    check = Check("a replayed stale refresh token is refused (reuse detected)")
    for replay in replays:
        if replay.status in (0, 429, 503):
            continue  # not processed: limited or failed (the answers check covers 0)
        check.checked += 1
        if replay.status != 401:
            check.fail(f"{replay.label}: a stale refresh token answered {replay.status}")
    return check


# --- 5. limits --------------------------------------------------------------------------------


def window_of(exchange: Exchange, offsets: Mapping[str, float], seconds: int) -> int | None:
    """The stack's window the exchange was counted in, or None when it may be either of two."""
    offset = offsets.get(exchange.phase, 0.0)
    first = int((exchange.sent + offset) // seconds)
    last = int((exchange.answered + offset) // seconds)
    return first if first == last else None


def limit_held(
    name: str,
    exchanges: Iterable[Exchange],
    *,
    route: str,
    counted: frozenset[int],
    key: Callable[[Exchange], str | None],
    limit: Limit,
    offsets: Mapping[str, float],
    label: Callable[[str], str] = str,
) -> Check:
    """Per key and window, the attempts answered with one of ``counted`` never exceed the
    limit. Checked: the (key, window) pairs that saw such an attempt."""
    check = Check(f"{name} ({limit})")
    counts: Counter[tuple[str, int]] = Counter()
    edges = 0
    for exchange in exchanges:
        if exchange.route != route or exchange.status not in counted:
            continue
        identity = key(exchange)
        if not identity:
            continue
        window = window_of(exchange, offsets, limit.seconds)
        if window is None:
            edges += 1
            continue
        counts[(identity, window)] += 1
    check.checked = len(counts)
    for (identity, window), count in sorted(counts.items()):
        if count > limit.count:
            check.fail(
                f"{label(identity)}: {count} attempts reached the check in the window starting "
                f"at {window * limit.seconds} (limit {limit.count})"
            )
    check.note = f"{edges} attempts at a window edge not counted" if edges else ""
    return check


def details(check: Check) -> list[str]:
    shown = check.violations[:MAX_DETAILS]
    more = len(check.violations) - len(shown)
    return shown + ([f"... and {more} more"] if more > 0 else [])
