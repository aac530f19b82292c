"""`make load`'s quick mode in `make test`: 1,000 requests from 48 clients against a local stack
of its own, 10% of the functions' AWS calls failing, and every invariant must hold.

The run also has to have exercised what the invariants speak of (faults of every kind, tab
races, ended sessions tried on sensitive routes, the login limits reached, the rotation), or a
clean tally would prove nothing. Nothing depends on the machine's speed: no latency is
asserted, and every wait is bounded and generous (load.stack, load.wire). What the run's
clients sent and received is registered with the security tier's secrets registry, and the
stack's logs land under pytest's temporary directory, so the whole-run log scan covers them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from load.report import lines
from load.run import Options, Result, run
from tests.security.secrets_registry import REGISTRY

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Result:
    directory = Path(tmp_path_factory.mktemp("load"))
    return run(
        Options(requests=1_000, log_dir=directory),
        on_secret=REGISTRY.register,
        say=lambda line: None,
    )


def test_every_invariant_holds_under_load_and_faults(quick_run: Result) -> None:
    report = "\n".join(lines(quick_run))
    assert quick_run.violations == 0, report
    assert all(check.checked > 0 for check in quick_run.checks if "stale" not in check.name), report


def test_the_run_met_every_kind_of_fault(quick_run: Result) -> None:
    injected = {kind: sum(counts.values()) for kind, counts in quick_run.faults["injected"].items()}
    assert all(count > 0 for count in injected.values()), injected
    assert set(injected) == {"throttle", "error", "lost"}
    assert quick_run.faults["plan"]["rate"] == 0.1


def test_the_run_reached_the_limits_and_raced_tabs(quick_run: Result) -> None:
    logins = [e for e in quick_run.exchanges if e.route == "POST /auth/login"]
    assert any(e.status == 429 for e in logins), "no login limit was reached"
    races = next(c for c in quick_run.checks if "refresh race" in c.name)
    assert races.checked > 0
    probes = next(c for c in quick_run.checks if "sensitive route" in c.name)
    assert probes.checked > 0
    scenario = [e for e in quick_run.exchanges if e.phase in ("A", "B")]
    assert len(scenario) >= 1_000
