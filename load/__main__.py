"""``python -m load [options]`` (what `make load LOAD_ARGS="..."` runs). Exit 0 when every
invariant held, 1 on any violation, 2 when the run itself could not be carried out."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from types import FrameType

from devserver.faults import KINDS
from load.report import document, lines
from load.run import MIN_CLIENTS, Options, run
from load.stack import StackError

QUICK_REQUESTS = 1_000


def _setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.isupper():
        raise argparse.ArgumentTypeError("use NAME=VALUE, e.g. REFRESH_RATE_LIMIT=10/60")
    return name, value


def parse(argv: list[str]) -> tuple[Options, Path | None]:
    parser = argparse.ArgumentParser(prog="python -m load", description=__doc__)
    parser.add_argument("--requests", type=int, default=10_000, help="default 10,000")
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_REQUESTS:,} requests (what make test runs)"
    )
    parser.add_argument(
        "--clients", type=int, default=48, help=f"concurrent clients, at least {MIN_CLIENTS}"
    )
    parser.add_argument("--fault-rate", type=float, default=0.1, help="share of AWS requests")
    parser.add_argument(
        "--fault-kinds", default=",".join(KINDS), help=f"comma-separated from {', '.join(KINDS)}"
    )
    parser.add_argument("--tabs", type=int, default=3, help="tabs racing to refresh a session")
    parser.add_argument("--seed", type=int, default=1, help="the workload's and faults' seed")
    parser.add_argument(
        "--set",
        type=_setting,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a stack setting (repeatable), e.g. --set LOGIN_RATE_LIMIT=20/300",
    )
    parser.add_argument("--log-dir", type=Path, help="keep the stack's logs here")
    parser.add_argument("--json", type=Path, help="also write the figures and tally as JSON")
    args = parser.parse_args(argv)
    kinds = tuple(kind.strip() for kind in args.fault_kinds.split(",") if kind.strip())
    if not kinds or not set(kinds) <= set(KINDS):
        parser.error(f"--fault-kinds: choose from {', '.join(KINDS)}")
    if args.clients < MIN_CLIENTS:
        parser.error(f"--clients: at least {MIN_CLIENTS}")
    if not 0 <= args.fault_rate <= 1:
        parser.error("--fault-rate: from 0 to 1")
    if args.tabs < 2:
        parser.error("--tabs: at least 2")
    options = Options(
        requests=QUICK_REQUESTS if args.quick else args.requests,
        clients=args.clients,
        fault_rate=args.fault_rate,
        fault_kinds=kinds,
        tabs=args.tabs,
        seed=args.seed,
        settings=dict(args.set),
        log_dir=args.log_dir,
    )
    return options, args.json


class _Stopped(Exception):
    """SIGTERM: unwind, so that the run stops the stack it started."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Stopped


def main(argv: list[str] | None = None) -> int:
    options, json_path = parse(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        result = run(options)
    except (StackError, RuntimeError) as exc:
        print(f"load: the run could not be completed: {exc}", file=sys.stderr)
        return 2
    except (_Stopped, KeyboardInterrupt):
        print("load: stopped; the stack was stopped too", file=sys.stderr)
        return 2
    print("\n".join(lines(result)))
    if json_path is not None:
        json_path.write_text(json.dumps(document(result), indent=2) + "\n")
    return 0 if result.violations == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
