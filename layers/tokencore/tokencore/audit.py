"""Security events: one structured log line per event, identifiers hashed, never a secret.

Events are what an operator alarms on and an auditor reads: refresh reuse with its class,
revocations, login failures and rate limiting. Identifiers (user and session ids) are opaque
already, but they are hashed anyway so that a log store is not an index of live sessions;
the same id always hashes the same way, so events about one session can still be joined.
"""

from __future__ import annotations

import hashlib
import logging

logger = logging.getLogger("tokencore.audit")

_HASHED_FIELDS = frozenset({"user_id", "session_id", "device_id", "source_ip"})


def hash_identifier(value: str) -> str:
    """A short, stable, non-reversible label for an identifier (not for secrets: those are
    never logged at all)."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def security_event(event: str, *, level: int = logging.WARNING, **fields: object) -> None:
    """Log ``event`` with ``fields``; identifier fields are replaced by their hashes."""
    record: dict[str, object] = {"security_event": event}
    for name, value in fields.items():
        if value is None:
            continue
        if name in _HASHED_FIELDS:
            record[f"{name}_hash"] = hash_identifier(str(value))
        else:
            record[name] = value
    logger.log(level, "security_event", extra=record)
