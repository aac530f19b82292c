"""`make bench`: every figure of the performance budgets, each with its budget and a pass or a
miss, as Markdown tables (the README and docs/capacity.md show them as printed).

    python -m bench                 # everything (about 4 minutes on the 2-core reference machine)
    python -m bench --quick         # fewer rounds and requests: a smoke run
    python -m bench --only hotpath coldstart
    python -m bench --output bench-results.md   # also write what is printed to a file

Exits 1 when any budget is missed (``--strict`` is accepted and changes nothing).

Sections: hotpath (budgets 1, 2), coldstart (3), calls (4), memory (5), capacity (6),
refresh (7), layer (the layer's size; no budget).
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable

from bench import calls, capacity, coldstart, hotpath, layer, memory, refresh
from bench.common import Budget, machine, table

SECTIONS: dict[str, Callable[[bool], tuple[list[str], list[Budget]]]] = {
    "hotpath": hotpath.run,
    "coldstart": coldstart.run,
    "calls": calls.run,
    "memory": memory.run,
    "capacity": capacity.run,
    "refresh": refresh.run,
    "layer": layer.run,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds: a smoke run")
    parser.add_argument("--only", nargs="+", choices=sorted(SECTIONS), help="these sections")
    parser.add_argument("--output", help="also write the tables to this file")
    parser.add_argument("--strict", action="store_true", help="the default: exit 1 on a miss")
    args = parser.parse_args(argv)

    out = io.StringIO()

    def emit(text: str = "") -> None:
        print(text, flush=True)
        out.write(text + "\n")

    command = "make bench" + (f" BENCH_ARGS='{' '.join(argv)}'" if argv else "")
    emit(f"## tokencore benchmarks (`{command}`)")
    emit()
    emit(machine() + ".")
    emit()
    budgets: list[Budget] = []
    started = time.monotonic()
    for name in args.only or list(SECTIONS):
        section_start = time.monotonic()
        lines, section_budgets = SECTIONS[name](args.quick)
        for line in lines:
            emit(line)
        emit()
        emit(f"_{name}: {time.monotonic() - section_start:.0f} s_")
        emit()
        budgets.extend(section_budgets)
    emit("### Budgets")
    emit()
    emit(
        table(
            ["#", "budget", "measured", "limit", "result", "note"],
            [budget.row() for budget in budgets],
        )
    )
    missed = [budget for budget in budgets if not budget.passed]
    emit()
    emit(
        f"{len(budgets) - len(missed)} of {len(budgets)} budgets met"
        + (f"; missed: {', '.join(b.what for b in missed)}" if missed else "")
        + f" ({time.monotonic() - started:.0f} s)."
    )
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(out.getvalue())
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
