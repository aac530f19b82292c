"""The spelling of JOSE values: canonical base64url, strict JSON and the kid grammar.

One implementation for tokens, key documents and HTTP bodies. These are where lenient parsers
go wrong (PyJWT pads and accepts ``=``, and ``json.loads`` lets the last duplicate member win),
so everything that reads JOSE bytes reads them here. A failure is raised as the caller's own
error (``error``: a malformed token by default, a bad key document, a bad request body), with a
message that says what is wrong and never repeats the input.
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Callable
from typing import Any, TypeGuard

from tokencore.errors import MalformedToken

# Builds the caller's exception from a problem phrased as a predicate ("is not valid JSON").
ErrorFactory = Callable[[str], Exception]


def token_segment_error(problem: str) -> Exception:
    """The default error: a segment of a compact JWS that is not what it should be."""
    return MalformedToken(f"segment {problem}")


# --- base64url --------------------------------------------------------------------------------

# Only the base64url alphabet: no padding, no whitespace, no standard-alphabet characters.
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
# The last character of a text of length 4n + 2 carries 2 bits of data and 4 unused bits; of
# length 4n + 3, 4 bits and 2 unused. Canonical encodings leave the unused bits zero.
_LAST_OF_2 = "AQgw"
_LAST_OF_3 = "AEIMQUYcgkosw048"
_NOT_CANONICAL = "is not canonical base64url"
_LAST_BYTES = {2: frozenset(_LAST_OF_2.encode()), 3: frozenset(_LAST_OF_3.encode())}
_PADDING = (b"", b"", b"==", b"=")
_URLSAFE_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_STANDARD_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url, the only spelling JOSE uses."""
    return (
        binascii.b2a_base64(data, newline=False)
        .translate(_STANDARD_TO_URLSAFE)
        .rstrip(b"=")
        .decode("ascii")
    )


def b64url_decode(text: str, error: ErrorFactory = token_segment_error) -> bytes:
    """Decode unpadded base64url, refusing every non-canonical form.

    Non-canonical means: a character outside the alphabet, padding, a length that no encoding
    produces (4n + 1), or unused trailing bits that are not zero (two strings decoding to the
    same bytes would make signatures malleable).
    """
    if not isinstance(text, str) or not _B64URL.fullmatch(text):
        raise error(_NOT_CANONICAL)
    return decode_segment(text, error)


def decode_segment(segment: str | bytes, error: ErrorFactory = token_segment_error) -> bytes:
    """``b64url_decode`` for text already known to be in the base64url alphabet (the verifier
    checks a whole token against it once): the length and trailing-bit checks, then the
    decode, without a second pass over the alphabet or a re-encode."""
    try:
        raw = segment.encode("ascii") if isinstance(segment, str) else segment
    except UnicodeEncodeError as exc:
        raise error(_NOT_CANONICAL) from exc
    remainder = len(raw) % 4
    if remainder == 1 or not raw:
        raise error(_NOT_CANONICAL)
    if remainder and raw[-1] not in _LAST_BYTES[remainder]:
        raise error(_NOT_CANONICAL)
    try:
        # binascii directly: base64.urlsafe_b64decode is the same decode behind two Python
        # calls (twice the cost on the authorizer's hot path).
        return binascii.a2b_base64(raw.translate(_URLSAFE_TO_STANDARD) + _PADDING[remainder])
    except binascii.Error as exc:
        raise error(_NOT_CANONICAL) from exc


# --- strict JSON ------------------------------------------------------------------------------


class _Refused(ValueError):
    """Raised inside the decoder's hooks; turned into the caller's error."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # RFC 7515 §4 and RFC 7517 §4: member names must be unique.
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _Refused("has a duplicate member")
    return result


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are not JSON (RFC 8259) and would slip past numeric comparisons.
    raise _Refused("holds NaN or Infinity, which are not JSON")


def _finite_float(text: str) -> float:
    # "1e400" parses to infinity without passing through parse_constant.
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _Refused("holds a number out of range")
    return value


# Built once: json.loads with hooks builds a decoder on every call, a third of the parse.
_STRICT_DECODER = json.JSONDecoder(
    object_pairs_hook=_refuse_duplicates,
    parse_constant=_refuse_constant,
    parse_float=_finite_float,
)
# Set by JSONDecoder.__init__ (the C scanner when available); typeshed does not declare it.
_scan_once: Callable[[str, int], tuple[Any, int]] = _STRICT_DECODER.scan_once  # type: ignore[attr-defined]


def _parse_strict(text: str) -> Any:
    """``_STRICT_DECODER.decode(text)``. A compact document (no whitespace around the value,
    every token's payload) is scanned directly, skipping decode's two whitespace matches;
    anything else, including what the scanner refuses, takes decode's path and its errors."""
    if text[:1] == "{":
        try:
            value, end = _scan_once(text, 0)
        except StopIteration:
            pass
        else:
            if end == len(text):
                return value
    return _STRICT_DECODER.decode(text)


def json_object(data: bytes | str, error: ErrorFactory = token_segment_error) -> dict[str, Any]:
    """Parse one JSON object strictly: UTF-8 (bytes must decode strictly, no byte order mark),
    no duplicate members at any depth, no NaN or Infinity, every number finite."""
    try:
        text = data.decode("utf-8", errors="strict") if isinstance(data, bytes) else data
        value = _parse_strict(text)
    except _Refused as exc:
        raise error(exc.problem) from exc
    # JSONDecodeError is a ValueError (so is an integer too long to convert); deep nesting
    # makes the decoder raise RecursionError.
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise error("is not valid JSON") from exc
    if not isinstance(value, dict):
        raise error("is not a JSON object")
    return value


def json_compact(value: dict[str, Any]) -> bytes:
    """Deterministic compact JSON: the same members in the same order give the same bytes."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode(
        "ascii"
    )


# --- kid --------------------------------------------------------------------------------------

MAX_KID_LENGTH = 128
# Printable ASCII without space, path separators, quotes or backticks, and never "..": nothing
# that could steer a path, a log line or a query if a kid ever reaches one. A kid may start
# with "-" or "_": ours are RFC 7638 thumbprints (base64url).
_KID_FORBIDDEN = frozenset("/\\\"'`")
_KID = re.compile(
    "["
    + re.escape("".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in _KID_FORBIDDEN))
    + f"]{{1,{MAX_KID_LENGTH}}}"
)


def is_valid_kid(kid: object) -> TypeGuard[str]:
    """True if ``kid`` is a string we accept as a key id, in a header or a JWK."""
    return isinstance(kid, str) and _KID.fullmatch(kid) is not None and ".." not in kid
