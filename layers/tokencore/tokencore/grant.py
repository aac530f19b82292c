"""What a successful login or refresh hands the client: made by ``service``, answered by
``http`` (the body and the cookies). Its own module so the HTTP edge never imports the flows."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """Every field but the ids and times is secret (kept out of ``repr``)."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_in: int
    session_id: str
    refresh_expires_at: int
    # The fingerprint cookie's value (None when binding is off).
    fingerprint: str | None = field(default=None, repr=False)
    grace_replay: bool = False


__all__ = ["TokenGrant"]
