"""Token sidejacking defence (OWASP JWT cheat sheet): a random fingerprint travels in a hardened
cookie, and only its SHA-256 travels in the access token. A token stolen without the cookie (from
a log, a proxy, XSS reading memory) is useless."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from tokencore.jose.codec import b64url_encode


def new_fingerprint() -> tuple[str, str]:
    """Return (cookie value, hash for the token)."""
    value = secrets.token_urlsafe(32)
    return value, fingerprint_hash(value)


def fingerprint_hash(value: str) -> str:
    return b64url_encode(hashlib.sha256(value.encode("utf-8")).digest())


def fingerprint_matches(expected_hash: str, presented_value: str | None) -> bool:
    # A cookie value is ASCII (RFC 6265); anything else (a lone surrogate would make the hash
    # raise) is simply not the fingerprint.
    if not presented_value or len(presented_value) > 256 or not presented_value.isascii():
        return False
    return hmac.compare_digest(expected_hash, fingerprint_hash(presented_value))
