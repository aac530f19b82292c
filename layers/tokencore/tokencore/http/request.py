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
from collections.abc import Mapping
from typing import Any

from tokencore import wire
from tokencore.authcontext import AuthorizerContext
from tokencore.http.cookies import parse_cookies
from tokencore.http.errors import (
    BadRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from tokencore.jose.codec import json_object

MAX_BODY_BYTES = 16 * 1024
MAX_JSON_DEPTH = 8
MAX_HEADER_CHARS = 8192
USER_AGENT_MAX_CHARS = 256
SOURCE_IP_MAX_CHARS = 64


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


class Request:
    """One event. Cheap to build; parses lazily."""

    def __init__(self, event: Mapping[str, Any]) -> None:
        self._event = event
        headers = event.get("headers")
        # A header repeated under two spellings is a list here: no single-value reader takes
        # it (``wire.header_map``, as at the authorizer).
        self._headers = wire.header_map(headers) if isinstance(headers, Mapping) else {}
        self._cookies: dict[str, str] | None = None

    # --- envelope ---------------------------------------------------------------------------

    def header(self, name: str) -> str | None:
        value = self._headers.get(name.lower())
        if not isinstance(value, str) or len(value) > MAX_HEADER_CHARS:
            return None
        return value

    def cookie(self, name: str) -> str | None:
        """Cookie ``name`` by the authorizer's rules (``wire``): absent, empty or a repeated
        ``__Host-`` cookie is None."""
        if self._cookies is None:
            self._cookies = parse_cookies(
                self._event.get("cookies"), self._headers.get(wire.COOKIE)
            )
        return self._cookies.get(name)

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
        value = self._headers.get(wire.DEVICE_ID_HEADER)
        if value is None or value == "":
            return None
        if not wire.is_valid_device_id(value):
            raise BadRequest("X-Device-Id must be 1 to 128 printable ASCII characters")
        return str(value)

    def bearer_token(self) -> str | None:
        """The token of ``Authorization: Bearer <token>`` by the authorizer's rule
        (``wire.bearer_token``), or None if absent or malformed."""
        return wire.bearer_token_or_none(self._headers.get(wire.AUTHORIZATION))

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

    def caller(self, now: float, *, leeway_seconds: float = 0) -> AuthorizerContext:
        """The caller named by the Lambda authorizer (payload 2.0 simple response context,
        ``requestContext.authorizer.lambda``): ``AuthorizerContext.from_context``, which
        refuses a missing or malformed identity (401) and enforces ``expires_at`` again."""
        context = _get(self._event, "requestContext", "authorizer", "lambda")
        return AuthorizerContext.from_context(context, now=now, leeway_seconds=leeway_seconds)
