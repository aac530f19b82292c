"""A function for the container tests (tests/unit/test_devserver_containers.py): it answers
with what only the container that ran it knows, or fails in the way an event asks for."""

from __future__ import annotations

import os
from typing import Any

from tokencore.runtime import get_runtime

INVOCATIONS = 0  # module state: one count per container


def handler(event: dict[str, Any], context: Any) -> Any:
    global INVOCATIONS
    INVOCATIONS += 1
    action = event.get("action")
    if action == "raise":
        raise ValueError("the probe was told to fail")
    if action == "exit":
        os._exit(3)  # the process ends mid-invocation, as a crash would
    if action == "unserializable":
        return {"a set": {1, 2}}
    return {
        "pid": os.getpid(),
        "invocations": INVOCATIONS,
        "now": get_runtime().clock.now(),
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "event": event,
        "mark": os.environ.get("PROBE_MARK"),
    }
