"""Response builders: JSON bodies serialized here (so the resolver never re-encodes them), 204s,
and the token response shared by login and refresh."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.shared.cookies import Cookie

from tokencore.config import Settings
from tokencore.grant import TokenGrant
from tokencore.http.cookies import grant_cookies

JSON = "application/json"
TOKEN_TYPE = "Bearer"

HttpResponse = Response[str]


def dump_json(body: Mapping[str, Any]) -> str:
    """Compact, ASCII-only JSON (no byte of a body depends on the client's locale or input
    encoding)."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def json_response(
    status: int,
    body: Mapping[str, Any],
    *,
    headers: Mapping[str, str] | None = None,
    cookies: Sequence[Cookie] = (),
) -> HttpResponse:
    return Response(
        status_code=status,
        content_type=JSON,
        body=dump_json(body),
        headers=dict(headers or {}),
        cookies=list(cookies),
    )


def no_content(*, cookies: Sequence[Cookie] = ()) -> HttpResponse:
    """204 with an empty body (and no Content-Type: there is no content)."""
    return Response(status_code=204, content_type=None, body="", cookies=list(cookies))


def grant_response(grant: TokenGrant, settings: Settings, now: float) -> HttpResponse:
    """200 for a login or a refresh: the access token in the body; the refresh token in the body
    and/or its cookie, per REFRESH_TOKEN_TRANSPORT; the fingerprint cookie when binding is on."""
    body: dict[str, Any] = {
        "access_token": grant.access_token,
        "token_type": TOKEN_TYPE,
        "expires_in": grant.expires_in,
        "session_id": grant.session_id,
    }
    if settings.refresh_body_in_use:
        body["refresh_token"] = grant.refresh_token
    return json_response(200, body, cookies=grant_cookies(grant, settings, now))


def to_iso8601(epoch_seconds: float) -> str:
    """``2027-01-15T08:00:00Z``: UTC, whole seconds (sub-second precision tells a client
    nothing and only widens the fingerprint of a session)."""
    moment = datetime.fromtimestamp(math.floor(epoch_seconds), tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
