"""Strict encoding for JWS compact serialization: base64url without padding, JSON without
duplicate keys. These are where PyJWT is lenient (it pads and accepts ``=``, and lets the last
duplicate key win), so tokencore parses the segments itself before anything else looks at them.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from tokencore.errors import MalformedToken

# Only the base64url alphabet: no padding, no whitespace, no standard-alphabet characters.
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(segment: str) -> bytes:
    """Decode an unpadded base64url segment, refusing every non-canonical form.

    Non-canonical means: a character outside the alphabet, padding, a length that no encoding
    produces (4n + 1), or trailing bits that are not zero (two strings decoding to the same
    bytes would make signatures malleable).
    """
    if not _SEGMENT.fullmatch(segment):
        raise MalformedToken("segment is not canonical base64url")
    return decode_segment(segment)


# The last character of a segment of length 4n + 2 carries 2 bits of data and 4 unused bits;
# of length 4n + 3, 4 bits and 2 unused. Canonical encodings leave the unused bits zero.
_LAST_OF_2 = frozenset("AQgw")
_LAST_OF_3 = frozenset("AEIMQUYcgkosw048")


def decode_segment(segment: str) -> bytes:
    """``b64url_decode`` for a segment already known to be in the base64url alphabet (the
    verifier checks the whole token against it once): the length and trailing-bit checks,
    then the decode, without a second pass of the regular expression or a re-encode."""
    remainder = len(segment) % 4
    if remainder == 1 or not segment:
        raise MalformedToken("segment is not canonical base64url")
    if remainder == 2:
        if segment[-1] not in _LAST_OF_2:
            raise MalformedToken("segment is not canonical base64url")
        segment += "=="
    elif remainder == 3:
        if segment[-1] not in _LAST_OF_3:
            raise MalformedToken("segment is not canonical base64url")
        segment += "="
    try:
        return base64.urlsafe_b64decode(segment)
    except (binascii.Error, ValueError) as exc:
        raise MalformedToken("segment is not canonical base64url") from exc


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise MalformedToken("duplicate JSON member")
    return result


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are not JSON (RFC 8259) and would slip past numeric comparisons.
    raise MalformedToken(f"non-JSON constant {name}")


def _finite_float(text: str) -> float:
    # "1e400" parses to infinity without passing through parse_constant.
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise MalformedToken("number out of range")
    return value


def json_object(data: bytes) -> dict[str, Any]:
    """Parse a UTF-8 JSON object strictly (RFC 7515 §4: member names must be unique)."""
    try:
        text = data.decode("utf-8", errors="strict")
        value = json.loads(
            text,
            object_pairs_hook=_refuse_duplicates,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
        )
    except MalformedToken:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MalformedToken("segment is not a JSON object") from exc
    if not isinstance(value, dict):
        raise MalformedToken("segment is not a JSON object")
    return value


def json_compact(value: dict[str, Any]) -> bytes:
    """Deterministic compact JSON: the same claims always give the same bytes."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode(
        "ascii"
    )
