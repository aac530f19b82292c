"""What a run prints: throughput, latency per route, faults injected, the invariant tally."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any

from load.invariants import details
from load.run import Result

SCENARIO_PHASES = ("A", "B")


def percentile(sorted_values: list[float], share: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(share * len(sorted_values)))
    return sorted_values[rank - 1]


def lines(result: Result) -> list[str]:
    options = result.options
    scenario = [e for e in result.exchanges if e.phase in SCENARIO_PHASES]
    seconds = sum(p.seconds for p in result.phases if p.name in SCENARIO_PHASES)
    verify = [e for e in result.exchanges if e.phase not in SCENARIO_PHASES]
    out = [
        "",
        f"tokencore load run: {len(scenario):,} requests ({options.requests:,} asked) from "
        f"{sum(result.population[k] for k in result.population if k.endswith('threads'))} "
        f"concurrent clients, {options.tabs} tabs per race, AWS faults at "
        f"{options.fault_rate:.0%} ({', '.join(options.fault_kinds)}), seed {options.seed}",
        "  " + ", ".join(f"{v} {k}" for k, v in result.population.items()),
        f"  throughput {len(scenario) / seconds:,.1f} requests/s over {seconds:,.1f} s "
        f"(key rotation and verification apart; verification: {len(verify):,} requests)"
        if seconds > 0
        else "  throughput: no time measured",
        "",
        f"  {'route':<34} {'requests':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}  statuses",
    ]
    by_route: dict[str, list[float]] = defaultdict(list)
    statuses: dict[str, Counter[int]] = defaultdict(Counter)
    for exchange in scenario:
        by_route[exchange.route].append(exchange.latency * 1000)
        statuses[exchange.route][exchange.status] += 1
    for route in sorted(by_route, key=lambda r: -len(by_route[r])):
        values = sorted(by_route[route])
        shown = " ".join(f"{s}:{n}" for s, n in sorted(statuses[route].items()))
        out.append(
            f"  {route:<34} {len(values):>8,} {percentile(values, 0.50):>8.1f} "
            f"{percentile(values, 0.95):>8.1f} {percentile(values, 0.99):>8.1f}  {shown}"
        )
    out.append(
        "  (the 401s and 403s on sensitive routes include the tries of sessions the run ended,"
        " which must be denied)"
    )
    denied, allowed = result.revocation_denied_after, result.revocation_allowed_ages
    out += [
        "",
        f"  revocation on an ordinary route (GET /me, no session read): {len(denied):,} ended "
        f"sessions tried from their end, first denial p50 {percentile(denied, 0.50):.1f} s, "
        f"p99 {percentile(denied, 0.99):.1f} s after the end; {len(allowed):,} tries still let "
        f"through, the latest {max(allowed, default=0.0):.1f} s after",
        "  (each ended session is tried every 0.25 s until denied, so a first denial is at most"
        " a quarter second late, plus the tries' own queueing; "
        f"{result.revocation_tried_late:,} more were first tried over a second after their end"
        " and are not timed)",
    ]
    out += ["", *fault_lines(result.faults), ""]
    out.append(f"  {'invariant':<92} {'checked':>8} {'violations':>10}")
    for check in result.checks:
        out.append(f"  {check.name:<92} {check.checked:>8,} {len(check.violations):>10,}")
        if check.note:
            out.append(f"      ({check.note})")
    for check in result.checks:
        if check.violations:
            out += ["", f"  VIOLATED: {check.name}"]
            out += [f"    - {detail}" for detail in details(check)]
    out += ["", *info_lines(result)]
    total = result.violations
    out += [
        "",
        f"load: {'PASS' if total == 0 else 'FAIL'}: {total} violations "
        f"(stack logs: {result.log_dir})",
    ]
    return out


def fault_lines(faults: dict[str, Any]) -> list[str]:
    requests = sum(faults["requests"].values())
    injected = {kind: sum(counts.values()) for kind, counts in faults["injected"].items()}
    total = sum(injected.values())
    out = [
        f"  AWS faults injected: {total:,} of {requests:,} AWS requests made by the functions "
        f"({total / requests:.1%})"
        if requests
        else "  AWS faults injected: none (no AWS request seen)",
        "    " + ", ".join(f"{kind} {count:,}" for kind, count in injected.items()),
    ]
    per_operation: Counter[str] = Counter()
    for counts in faults["injected"].values():
        per_operation.update(counts)
    if per_operation:
        top = ", ".join(f"{op} {n}" for op, n in per_operation.most_common(8))
        out.append(f"    by operation: {top}")
    return out


def info_lines(result: Result) -> list[str]:
    out = ["  also seen (not invariants):"]
    for scope, (windows, highest) in sorted(result.counters.items()):
        out.append(
            f"    rate-limit counters in the table, {scope}: {windows} windows, highest {highest}"
        )
    out.append(
        f"    sessions active in the table that no client ever received (a login answered "
        f"503 after its write): {result.ghosts}"
    )
    for what, count in sorted(result.notes.items()):
        out.append(f"    {what}: {count}")
    return out


def document(result: Result) -> dict[str, Any]:
    """The run as JSON (``--json``): figures and the tally, no token, no session id."""
    scenario = [e for e in result.exchanges if e.phase in SCENARIO_PHASES]
    seconds = sum(p.seconds for p in result.phases if p.name in SCENARIO_PHASES)
    routes: dict[str, Any] = {}
    for route in sorted({e.route for e in scenario}):
        values = sorted(e.latency * 1000 for e in scenario if e.route == route)
        routes[route] = {
            "requests": len(values),
            "p50_ms": percentile(values, 0.5),
            "p95_ms": percentile(values, 0.95),
            "p99_ms": percentile(values, 0.99),
            "statuses": dict(Counter(str(e.status) for e in scenario if e.route == route)),
        }
    return {
        "requests": len(scenario),
        "seconds": seconds,
        "throughput": len(scenario) / seconds if seconds else None,
        "routes": routes,
        "faults": result.faults,
        "invariants": [
            {"name": c.name, "checked": c.checked, "violations": c.violations, "note": c.note}
            for c in result.checks
        ],
        "violations": result.violations,
        "revocation_seconds": {
            "sessions": len(result.revocation_denied_after),
            "tried_late": result.revocation_tried_late,
            "p50": percentile(result.revocation_denied_after, 0.5),
            "p99": percentile(result.revocation_denied_after, 0.99),
            "allowed_after_end": len(result.revocation_allowed_ages),
            "latest_allowed": max(result.revocation_allowed_ages, default=0.0),
        },
    }
