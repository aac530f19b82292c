"""How many attacks of each category the security tier tried, and how many were refused.

The HTTP attack suite, the authorizer-event catalogue, the fuzzers and the fault injector
record each case here; ``tests/conftest.py`` prints the table at the end of every run (the
README's numbers come from it), and docs/security.md lists the categories.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class Count:
    tried: int = 0
    refused: int = 0
    failures: list[str] = field(default_factory=list)


_lock = threading.Lock()
TALLY: dict[str, Count] = {}
# Display order and labels; a category not listed here is printed after these.
CATEGORIES = {
    "signature": "signature and algorithm",
    "header": "header injection",
    "claims": "claims",
    "token_type": "token-type confusion and retired keys",
    "rotation": "refresh rotation",
    "revocation": "revocation propagation",
    "rate_limits": "brute force and rate limits",
    "cookies_cors_headers": "cookies, CORS and headers",
    "cross_site": "cross-site requests on cookie routes",
    "malformed_input": "oversize and malformed input",
    "authorizer_events": "malformed authorizer events",
    "fuzz": "property-based fuzzing (examples)",
    "faults": "fault injection (call positions x faults)",
    "local_stack": "the local stack's Host and Origin checks",
}


def record(category: str, case: str, refused: bool) -> None:
    with _lock:
        count = TALLY.setdefault(category, Count())
        count.tried += 1
        if refused:
            count.refused += 1
        else:
            count.failures.append(case)


def summary_lines() -> list[str]:
    with _lock:
        if not TALLY:
            return []
        order = list(CATEGORIES) + sorted(set(TALLY) - set(CATEGORIES))
        lines = []
        for key in order:
            count = TALLY.get(key)
            if count is None:
                continue
            label = CATEGORIES.get(key, key)
            verdict = "all refused" if count.refused == count.tried else "NOT ALL REFUSED"
            lines.append(f"  {label:<44} {count.tried:>5} tried, {count.refused:>5} {verdict}")
        total = sum(count.tried for count in TALLY.values())
        refused = sum(count.refused for count in TALLY.values())
        lines.append(f"  {'total':<44} {total:>5} tried, {refused:>5} refused")
        return lines
