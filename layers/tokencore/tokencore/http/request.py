"""A typed, defensive view of one HTTP API (payload 2.0) event.

Every accessor tolerates a missing or mistyped field (API Gateway builds the event, but the
local stack and hand-written test events do too) and bounds what it returns. Failures are the
edge errors of ``errors.py``: a bad body is 400/413/415, a missing authorizer context is 401,
never a KeyError that would become a 503.

Body rules (POST /auth/login, and /auth/refresh and /auth/logout when REFRESH_TOKEN_TRANSPORT
includes ``body``): ``Content-Type: application/json`` (a ``charset`` parameter, if any, must be
UTF-8), at most 16 KiB, one JSON object parsed by ``jose.codec``'s strict JSON (strict UTF-8,
no duplicate members, no NaN or Infinity, finite numbers), nesting at most 8 levels deep.
String fields are type-checked and length-bounded.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tokencore.http.cookies import parse_cookies
from tokencore.http.errors import (
    BadRequest,
    PayloadTooLarge,
    Unauthenticated,
    UnsupportedMediaType,
)
from tokencore.jose.codec import json_object
from tokencore.users.base import is_valid_user_id

MAX_BODY_BYTES = 16 * 1024
MAX_JSON_DEPTH = 8
MAX_HEADER_CHARS = 8192
DEVICE_ID_MAX_CHARS = 128
USER_AGENT_MAX_CHARS = 256
SOURCE_IP_MAX_CHARS = 64

# A device id is an opaque client label: printable ASCII without spaces at the ends.
_DEVICE_ID = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]{0,126}[\x21-\x7e])?")
# Session ids are 22 url-safe characters today; accept what the session store accepts.
_SESSION_ID = re.compile(r"[A-Za-z0-9_\-.:@+=]{1,128}")
_BEARER = re.compile(r"Bearer +([A-Za-z0-9._~+/=-]{1,8192})", re.IGNORECASE)
_ROLE_SPLIT = re.compile(r"[,\s]+")


def _get(mapping: object, *path: str) -> object:
    """``mapping[path[0]][path[1]]...`` or None if any step is missing or not a mapping."""
    current = mapping
    for key in path:
        if not isinstance(current, Mapping):
            return None
        current = current.get(key)
    return current


def _body_error(problem: str) -> BadRequest:
    return BadRequest(f"request body {problem}")


def _depth(value: object) -> int:
    """Nesting depth, iteratively (no recursion on hostile input)."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth > MAX_JSON_DEPTH:
                return depth
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


class JsonBody:
    """A parsed JSON object with typed, bounded field access."""

    def __init__(self, members: Mapping[str, Any]) -> None:
        self._members = members

    def __contains__(self, name: str) -> bool:
        return name in self._members

    def string(self, name: str, *, max_chars: int) -> str:
        """The required member ``name``: a non-empty string of at most ``max_chars``."""
        value = self.optional_string(name, max_chars=max_chars)
        if value is None:
            raise BadRequest(f"{name} is required")
        return value

    def optional_string(self, name: str, *, max_chars: int) -> str | None:
        """The member ``name`` if present (JSON null counts as absent), with the same rules."""
        value = self._members.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or not value or len(value) > max_chars:
            raise BadRequest(f"{name} must be a string of 1 to {max_chars} characters")
        try:
            value.encode("utf-8")  # a JSON escape can smuggle in a lone surrogate
        except UnicodeEncodeError as exc:
            raise BadRequest(f"{name} is not valid Unicode") from exc
        return value


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling a protected route, as the Lambda authorizer put it in the context."""

    user_id: str
    session_id: str
    email: str | None
    roles: tuple[str, ...]

    def has_role(self, role: str) -> bool:
        return role in self.roles


class Request:
    """One event. Cheap to build; parses lazily."""

    def __init__(self, event: Mapping[str, Any]) -> None:
        self._event = event
        headers = event.get("headers")
        self._headers: dict[str, str] = {}
        if isinstance(headers, Mapping):
            for name, value in headers.items():
                if isinstance(name, str) and isinstance(value, str):
                    self._headers[name.lower()] = value
        self._cookies: dict[str, str] | None = None

    # --- envelope ---------------------------------------------------------------------------

    def header(self, name: str) -> str | None:
        value = self._headers.get(name.lower())
        if value is None or len(value) > MAX_HEADER_CHARS:
            return None
        return value

    def cookie(self, name: str) -> str | None:
        if self._cookies is None:
            self._cookies = parse_cookies(self._event.get("cookies"))
        value = self._cookies.get(name)
        return value or None

    def path_parameter(self, name: str) -> str | None:
        value = _get(self._event, "pathParameters", name)
        return value if isinstance(value, str) and value else None

    @property
    def source_ip(self) -> str | None:
        value = _get(self._event, "requestContext", "http", "sourceIp")
        if not isinstance(value, str) or not value or len(value) > SOURCE_IP_MAX_CHARS:
            return None
        return value if value.isprintable() else None

    @property
    def user_agent(self) -> str | None:
        value = _get(self._event, "requestContext", "http", "userAgent")
        if not isinstance(value, str):
            value = self.header("user-agent")
        if not value:
            return None
        return "".join(ch for ch in value[:USER_AGENT_MAX_CHARS] if ch.isprintable()) or None

    def device_id(self) -> str | None:
        """``X-Device-Id``: optional, 1-128 printable ASCII characters; anything else is 400
        (refused, not truncated, so two devices never collapse into one id)."""
        value = self._headers.get("x-device-id")
        if value is None or value == "":
            return None
        if len(value) > DEVICE_ID_MAX_CHARS or not _DEVICE_ID.fullmatch(value):
            raise BadRequest("X-Device-Id must be 1 to 128 printable ASCII characters")
        return value

    def bearer_token(self) -> str | None:
        """The token of ``Authorization: Bearer <token>``, or None if absent or malformed."""
        value = self.header("authorization")
        if value is None:
            return None
        match = _BEARER.fullmatch(value.strip())
        return match.group(1) if match else None

    # --- body -------------------------------------------------------------------------------

    def has_body(self) -> bool:
        body = self._event.get("body")
        return isinstance(body, str) and body != ""

    def _body_bytes(self) -> bytes:
        body = self._event.get("body")
        if body is None or body == "":
            return b""
        if not isinstance(body, str):
            raise BadRequest("request body is malformed")
        if self._event.get("isBase64Encoded") is True:
            if len(body) > (MAX_BODY_BYTES // 3 + 1) * 4:
                raise PayloadTooLarge("request body is too large")
            try:
                raw = base64.b64decode(body, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise BadRequest("request body is not valid base64") from exc
        else:
            if len(body) > MAX_BODY_BYTES:
                raise PayloadTooLarge("request body is too large")
            try:
                raw = body.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise BadRequest("request body is not valid UTF-8") from exc
        if len(raw) > MAX_BODY_BYTES:
            raise PayloadTooLarge("request body is too large")
        return raw

    def _require_json_content_type(self) -> None:
        value = self.header("content-type")
        if value is None:
            raise UnsupportedMediaType("Content-Type is missing")
        media_type, *params = (part.strip() for part in value.split(";"))
        if media_type.lower() != "application/json":
            raise UnsupportedMediaType("Content-Type must be application/json")
        for param in params:
            key, _, charset = param.partition("=")
            if key.strip().lower() == "charset" and charset.strip().strip('"').lower() not in (
                "utf-8",
                "utf8",
            ):
                raise UnsupportedMediaType("only UTF-8 JSON is accepted")

    def json_body(self) -> JsonBody:
        """The body as one JSON object (see the module docstring for the rules)."""
        self._require_json_content_type()
        raw = self._body_bytes()
        if not raw:
            raise BadRequest("request body must be a JSON object")
        parsed = json_object(raw, _body_error)
        if _depth(parsed) > MAX_JSON_DEPTH:
            raise BadRequest("request body is nested too deeply")
        return JsonBody(parsed)

    # --- the authorizer's context -------------------------------------------------------------

    def caller(self, now: float, *, leeway_seconds: float = 0) -> Caller:
        """The caller named by the Lambda authorizer (payload 2.0 simple response context,
        ``requestContext.authorizer.lambda``). Any missing or malformed identity is 401: a
        protected route reached without the authorizer (a template mistake) refuses, never
        crashes. ``expires_at``, when present, is enforced again here, so an authorizer result
        cached by API Gateway never outlives the token it was computed from; with the same
        leeway the authorizer gave it (CLOCK_SKEW_LEEWAY_SECONDS), so a token inside the leeway
        is not allowed by the authorizer and then refused by the route."""
        context = _get(self._event, "requestContext", "authorizer", "lambda")
        if not isinstance(context, Mapping):
            raise Unauthenticated("no authorizer context")
        user_id = context.get("user_id")
        session_id = context.get("session_id")
        if not is_valid_user_id(user_id) or not isinstance(session_id, str):
            raise Unauthenticated("authorizer context has no valid user_id")
        if not _SESSION_ID.fullmatch(session_id):
            raise Unauthenticated("authorizer context has no valid session_id")
        expires_at = context.get("expires_at")
        if expires_at is not None:
            deadline = _number(expires_at)
            if deadline is None or now >= deadline + leeway_seconds:
                raise Unauthenticated("authorizer context has expired")
        email = context.get("email")
        return Caller(
            user_id=str(user_id),
            session_id=session_id,
            email=email if isinstance(email, str) and email else None,
            roles=_roles(context.get("roles")),
        )


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str) and len(value) <= 32:
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _roles(value: object) -> tuple[str, ...]:
    """Roles arrive comma-joined (context values are strings); a list is accepted too."""
    if isinstance(value, str):
        items: list[object] = list(_ROLE_SPLIT.split(value[:4096]))
    elif isinstance(value, list):
        items = list(value[:64])
    else:
        return ()
    roles = {item.strip() for item in items if isinstance(item, str) and item.strip()}
    return tuple(sorted(roles))
