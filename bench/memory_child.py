"""The authorizer answering 10,000 events in one process (run by bench/memory.py, never
imported). BENCH_EVENT is one event with the token ``{{access_token}}``; BENCH_TOKENS names a
file of tokens, one a line, cycled (more distinct tokens than the claims cache holds, so it
fills and evicts). Each event is a fresh copy, as Lambda hands every invocation its own.
Prints one JSON line: peak RSS and current RSS after the first 100 invocations, after 1,000
and after all of them, in KiB. Peak is the kernel's high-water mark of this process's own
memory (VmHWM): ``ru_maxrss`` is not reset by exec, so it would report the parent's size."""

from __future__ import annotations

import json
import os
import resource
import sys


def main() -> None:
    total = int(sys.argv[1])
    with open(os.environ["BENCH_TOKENS"], encoding="utf-8") as handle:
        tokens = handle.read().split()
    template = os.environ["BENCH_EVENT"]
    from functions.authorizer import app

    stdout, sys.stdout = sys.stdout, open(os.devnull, "w")  # noqa: SIM115 - EMF lines
    peaks: dict[int, int] = {}
    current: dict[int, int] = {}
    allowed = 0
    try:
        for index in range(total):
            event = json.loads(template.replace("{{access_token}}", tokens[index % len(tokens)]))
            answer = app.lambda_handler(event, None)
            allowed += answer.get("isAuthorized") is True
            if index + 1 in (100, 1000, total):
                peaks[index + 1] = _status_kib("VmHWM") or _max_rss_kib()
                current[index + 1] = _status_kib("VmRSS")
    finally:
        sys.stdout.close()
        sys.stdout = stdout
    cache = app._authorizer().claims_cache
    print(
        json.dumps(
            {
                "peaks_kib": peaks,
                "current_kib": current,
                "allowed": allowed,
                "cache_entries": len(cache) if cache is not None else 0,
                "cache_hits": cache.hits if cache is not None else 0,
            }
        )
    )


def _status_kib(field: str) -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _max_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


main()
