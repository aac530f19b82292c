"""A request path as the policy reads it: one canonical reading, and the other readings a
proxy or a backend behind API Gateway could make of the same bytes.

The canonical reading splits the path on its literal ``/``, drops empty segments, and decodes
each segment's percent-encoding once, as strict UTF-8 (``/users/a%40b.com`` is ``users``,
``a@b.com``; ``/search/caf%C3%A9`` is ``search``, ``café``). A percent-encoded character is never
a reason to deny by itself.

The other readings are what a less careful component could make of it: every escape decoded
before splitting (``%2F`` becomes a separator), decoded twice (``%252F``), overlong UTF-8 taken
as the ASCII it spells (``%C0%AF`` is ``/``), a backslash taken as a slash, the path cut at a
NUL, and dot segments resolved (``/me/../admin`` is ``/admin``). They are computed only when
a segment, decoded once, still holds something that can produce them (``/``, ``\\``, ``%``, a
NUL, or is a dot segment), so an ordinary path, encoded or not, costs one split. The policy
applies its rules to every reading (``tokencore.policy``): an encoding is refused only where
some reading would need a role the caller lacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote_to_bytes

Segments = tuple[str, ...]

MAX_PATH_CHARS: Final = 8192
_DOT_SEGMENTS: Final = frozenset({".", ".."})


@dataclass(frozen=True, slots=True)
class PathReadings:
    canonical: Segments
    # Every other reading that differs from the canonical one (empty for ordinary paths).
    alternates: frozenset[Segments] = frozenset()


def read_path(raw: str) -> PathReadings | None:
    """The readings of ``raw`` (a path as sent, without query string); None if it is not a
    path at all (empty, relative, too long)."""
    if not raw.startswith("/") or len(raw) > MAX_PATH_CHARS:
        return None
    pieces = raw.split("/")
    canonical = tuple(decode_once(piece) for piece in pieces if piece)
    if not any(_could_read_otherwise(segment) for segment in canonical):
        # Decoded once, nothing in it reads another way (a harmless %40, %20 or %C3%A9 too):
        # every other reading would equal this one.
        return PathReadings(canonical)
    texts = {
        "/".join(decode_once(piece) for piece in pieces),
        "/".join(decode_once(decode_once(piece)) for piece in pieces),
        "/".join(_decode_lenient(piece) for piece in pieces),
    }
    variants = set(texts)
    for text in texts:
        variants.add(text.replace("\\", "/"))
        variants.add(text.partition("\x00")[0].replace("\\", "/"))
        variants.add(text.partition("\x00")[0])
    alternates = {_resolve_dots(text.split("/")) for text in variants}
    alternates.add(_resolve_dots(canonical))
    alternates.discard(canonical)
    return PathReadings(canonical, frozenset(alternates))


def _could_read_otherwise(segment: str) -> bool:
    """A decoded segment that another reading could split, decode again, cut or resolve (an
    undecodable one is kept as sent, so it still holds its ``%``)."""
    return (
        segment in _DOT_SEGMENTS
        or "/" in segment
        or "\\" in segment
        or "%" in segment
        or "\x00" in segment
    )


def template_segments(template: str) -> Segments | None:
    """A route template (``/users/{email}``, ``/{proxy+}``) as segments, taken literally; None
    for something API Gateway never sends as a template."""
    if not template.startswith("/") or len(template) > MAX_PATH_CHARS:
        return None
    if "%" in template or "\\" in template:
        return None
    segments = tuple(segment for segment in template.split("/") if segment)
    if any(segment in _DOT_SEGMENTS for segment in segments):
        return None
    return segments


def decode_once(segment: str) -> str:
    """``segment`` with its escapes decoded once as strict UTF-8; as sent when the bytes are
    not UTF-8 (an overlong or truncated sequence is never read as the character it mimics)."""
    if "%" not in segment:
        return segment
    try:
        return unquote_to_bytes(segment).decode("utf-8")
    except UnicodeDecodeError:
        return segment


def _decode_lenient(segment: str) -> str:
    """What a decoder that accepts overlong UTF-8 makes of ``segment`` (``%C0%AF`` -> ``/``,
    ``%C0%AE`` -> ``.``); other undecodable bytes become U+FFFD."""
    if "%" not in segment:
        return segment
    data = unquote_to_bytes(segment)
    out: list[str] = []
    index = 0
    while index < len(data):
        byte = data[index]
        if byte in (0xC0, 0xC1) and index + 1 < len(data) and 0x80 <= data[index + 1] < 0xC0:
            out.append(chr(((byte & 0x1F) << 6) | (data[index + 1] & 0x3F)))
            index += 2
            continue
        if (
            byte == 0xE0
            and index + 2 < len(data)
            and 0x80 <= data[index + 1] < 0xA0
            and 0x80 <= data[index + 2] < 0xC0
        ):
            out.append(chr(((data[index + 1] & 0x3F) << 6) | (data[index + 2] & 0x3F)))
            index += 3
            continue
        end = index + 1
        while end < len(data) and data[end] not in (0xC0, 0xC1, 0xE0):
            end += 1
        out.append(data[index:end].decode("utf-8", errors="replace"))
        index = end
    return "".join(out)


def _resolve_dots(pieces: Segments | list[str]) -> Segments:
    """RFC 3986's remove_dot_segments on segments (empty ones dropped first)."""
    resolved: list[str] = []
    for piece in pieces:
        if not piece or piece == ".":
            continue
        if piece == "..":
            if resolved:
                resolved.pop()
            continue
        resolved.append(piece)
    return tuple(resolved)


__all__ = ["PathReadings", "Segments", "decode_once", "read_path", "template_segments"]
