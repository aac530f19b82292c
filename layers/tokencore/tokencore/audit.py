"""Security events: one structured log line per event, identifiers labelled, never a secret.

Events are what an operator alarms on and an auditor reads: refresh reuse with its class,
revocations, role changes, login failures and rate limiting. Identifiers (user and session ids,
usernames, source addresses) are replaced by a label: HMAC-SHA256 keyed with the deployment's
``AUDIT_LABEL_KEY`` (a secret the template generates per stack), cut to 16 hex digits. The same
id always gets the same label within a deployment, so events join; without the key a label
cannot be reversed by trying candidates (an unkeyed hash of a username or an address can: a
dictionary of names and the IPv4 space are small). The key is never logged.

Without ``AUDIT_LABEL_KEY`` (a test, a hand-made environment) the labels are keyed with a random
key of this process: still irreversible, but they join only within one container; a warning
says so once.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
from typing import Final

logger = logging.getLogger("tokencore.audit")

AUDIT_LABEL_KEY_VARIABLE: Final = "AUDIT_LABEL_KEY"
# A generated key is 64 characters; anything shorter than 32 is not a key but a typo.
AUDIT_LABEL_KEY_MIN_CHARS: Final = 32
LABEL_HEX_DIGITS: Final = 16

_HASHED_FIELDS = frozenset({"user_id", "session_id", "device_id", "source_ip"})

_lock = threading.Lock()
_keyed: tuple[str | None, hmac.HMAC] | None = None


def _label_mac() -> hmac.HMAC:
    """An HMAC primed with the current key (rebuilt when the variable changes)."""
    global _keyed
    configured = os.environ.get(AUDIT_LABEL_KEY_VARIABLE) or None
    keyed = _keyed
    if keyed is not None and keyed[0] == configured:
        return keyed[1]
    with _lock:
        if configured is not None and len(configured) >= AUDIT_LABEL_KEY_MIN_CHARS:
            key = configured.encode("utf-8", "surrogatepass")
        else:
            logger.warning(
                "audit_label_key_missing",
                extra={
                    "variable": AUDIT_LABEL_KEY_VARIABLE,
                    "detail": "unset or shorter than 32 characters: labels join within this "
                    "process only",
                },
            )
            key = os.urandom(32)
        mac = hmac.new(key, digestmod=hashlib.sha256)
        _keyed = (configured, mac)
        return mac


def hash_identifier(value: str) -> str:
    """A short, stable, non-reversible label for an identifier: keyed, so nobody without the
    deployment's key can test a guess against it (not for secrets: those are never logged)."""
    mac = _label_mac().copy()
    mac.update(value.encode("utf-8", "surrogatepass"))
    return mac.hexdigest()[:LABEL_HEX_DIGITS]


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
