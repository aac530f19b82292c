"""Strict JWK parsing and export (RFC 7517, 7518, 7638, 8037) with ``cryptography`` alone.

Every key is bound to exactly one algorithm when it is parsed, so a JWK must name its ``alg``,
and the algorithm must be one a key set may hold (``jose.algorithms``: access algorithms, and
for private documents only the refresh HMAC), with the ``kty`` and ``crv`` its registry entry
names. Anything else is refused, not skipped: these documents are ours, and a key we cannot use
is a misconfiguration that should fail loudly rather than surface later as "unknown kid".

Base64url members must be unpadded and canonical (``jose.codec``: one byte string, one
spelling). RSA integers may carry leading zero octets (some exporters write them); kids of
generated keys are thumbprints of the key itself (:func:`key_thumbprint`), never of a
document's spelling. Errors name the member that failed, never its value; the kid is named
once it has itself been validated.

JSON documents are read with :func:`parse_json_document`: ``jose.codec``'s strict JSON (no
duplicate members, no NaN or Infinity), bounded in size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tokencore.errors import InvalidKeyMaterial
from tokencore.jose.algorithms import (
    ALGORITHMS,
    Algorithm,
    EcdsaAlgorithm,
    Ed25519Algorithm,
    PrivateKey,
    PublicKey,
    RsaAlgorithm,
)
from tokencore.jose.codec import (
    MAX_KID_LENGTH,
    b64url_decode,
    b64url_encode,
    is_valid_kid,
    json_compact,
    json_object,
)
from tokencore.keys.model import KeyStatus, VerificationKey

# Bounds the work a hostile or broken document can cause before any crypto runs.
MAX_KEYS_PER_DOCUMENT = 64
MAX_DOCUMENT_BYTES = 256 * 1024
_MAX_MEMBER_CHARS = 4096

# Members that hold private material, whatever the kty; their presence makes a JWK private.
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_RSA_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi")
# RFC 7638 §3.2: the required members of each key type, the only ones a thumbprint covers.
_THUMBPRINT_MEMBERS: Mapping[str, tuple[str, ...]] = {
    "RSA": ("e", "kty", "n"),
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
}

_STATUSES = frozenset(status.value for status in KeyStatus)
# Lifecycle timestamps (epoch seconds) a key may carry: when it was created (a "next" key is
# published from then on) and when it stopped signing. Bounded so a typo cannot overflow.
LIFECYCLE_MEMBERS = ("created_at", "retired_at")
_MAX_TIMESTAMP = 2**40
# The key types and kinds of key a JWK may hold: those of the algorithms a key set may hold.
_KEY_SET_ALGORITHMS = [entry for entry in ALGORITHMS if entry.purpose is not None]
_KTYS = tuple(dict.fromkeys(entry.kty for entry in _KEY_SET_ALGORITHMS))
_SYMMETRIC_KTYS = frozenset(entry.kty for entry in _KEY_SET_ALGORITHMS if entry.symmetric)


def parse_json_document(text: str | bytes, what: str = "key document") -> dict[str, Any]:
    """Parse a JSON object strictly (``jose.codec``), at most ``MAX_DOCUMENT_BYTES`` long."""
    if len(text) > MAX_DOCUMENT_BYTES:
        raise InvalidKeyMaterial(f"{what} is too large")
    return json_object(text, lambda problem: InvalidKeyMaterial(f"{what} {problem}"))


# --- Reading one JWK ---------------------------------------------------------------------------


class _JwkReader:
    """Reads one JWK member at a time; every error names the member and never its value."""

    def __init__(self, doc: object) -> None:
        if not isinstance(doc, Mapping):
            raise InvalidKeyMaterial("JWK is not a JSON object")
        self._doc: Mapping[str, object] = doc
        self._where = "JWK"

    def fail(self, problem: str) -> InvalidKeyMaterial:
        return InvalidKeyMaterial(f"{self._where}: {problem}")

    def has(self, name: str) -> bool:
        return name in self._doc

    def kid(self) -> str:
        kid = self._doc.get("kid")
        if is_valid_kid(kid):
            self._where = f"JWK {kid!r}"
            return kid
        raise self.fail(
            f"'kid' must be 1 to {MAX_KID_LENGTH} printable ASCII characters without "
            "spaces, slashes, backslashes, quotes or '..'"
        )

    def text(self, name: str) -> str:
        value = self._doc.get(name)
        if not isinstance(value, str) or not value:
            raise self.fail(f"'{name}' is required and must be a string")
        return value

    def binding(self, *, allow_symmetric: bool) -> Algorithm:
        """The algorithm: ``kty`` and ``alg`` both required, alg one a key set may hold, and
        kty the one its registry entry names."""
        kty = self.text("kty")
        alg = self.text("alg")
        if kty in _SYMMETRIC_KTYS and not allow_symmetric:
            raise self.fail(f"symmetric keys (kty '{kty}') are never public")
        if kty not in _KTYS:
            raise self.fail(f"'kty' must be one of {', '.join(_KTYS)}")
        entry = ALGORITHMS.for_key_set(alg)
        if entry is None or entry.kty != kty:
            expected = " or ".join(e.name for e in _KEY_SET_ALGORITHMS if e.kty == kty)
            raise self.fail(f"'alg' must be {expected} for kty {kty}")
        return entry

    def usage(self, operation: str) -> None:
        """``use`` if present is "sig"; ``key_ops`` if present holds ``operation``."""
        if "use" in self._doc and self._doc["use"] != "sig":
            raise self.fail("'use' must be 'sig'")
        if "key_ops" not in self._doc:
            return
        ops = self._doc["key_ops"]
        if (
            not isinstance(ops, list)
            or not all(isinstance(op, str) for op in ops)
            or len(set(ops)) != len(ops)
            or not set(ops) <= {"sign", "verify"}
            or operation not in ops
        ):
            raise self.fail(f"'key_ops' must list only 'sign'/'verify' and include '{operation}'")

    def status(self) -> KeyStatus:
        value = self._doc.get("status", KeyStatus.ACTIVE.value)
        if not isinstance(value, str) or value not in _STATUSES:
            raise self.fail("'status' must be one of next, active, retired")
        return KeyStatus(value)

    def timestamp(self, name: str) -> int | None:
        """An optional NumericDate member (whole epoch seconds); absent is None."""
        if name not in self._doc:
            return None
        value = self._doc[name]
        if type(value) is not int or not 0 <= value < _MAX_TIMESTAMP:
            raise self.fail(f"'{name}' must be a whole number of seconds since the epoch")
        return value

    def bytes_member(self, name: str, *, length: int | None = None) -> bytes:
        value = self._doc.get(name)
        if not isinstance(value, str) or not value or len(value) > _MAX_MEMBER_CHARS:
            raise self.fail(f"'{name}' must be a non-empty unpadded base64url string")
        data = b64url_decode(value, lambda problem: self.fail(f"'{name}' {problem}"))
        if length is not None and len(data) != length:
            raise self.fail(f"'{name}' must be exactly {length} bytes")
        return data

    def integer(self, name: str) -> int:
        # Leading zero octets are tolerated (lenient on RSA integers); emptiness is not.
        return int.from_bytes(self.bytes_member(name), "big")


# --- Checks shared by every way a key arrives (JWK, generation, KMS) -------------------------


def _check_public_fits(key: object, alg: str, fail: Callable[[str], InvalidKeyMaterial]) -> None:
    """Refuse a public key whose type, size or curve does not fit ``alg`` (an algorithm a key
    set may hold; never a symmetric one, whose keys are never public)."""
    entry = ALGORITHMS.for_key_set(alg)
    if entry is None or entry.symmetric:
        raise fail(f"the key does not fit alg {alg}")
    entry.check_public_key(key, fail)


def _failer(where: str) -> Callable[[str], InvalidKeyMaterial]:
    return lambda problem: InvalidKeyMaterial(f"{where}: {problem}")


def verification_key_for(
    public_key: PublicKey,
    alg: str,
    *,
    kid: str | None = None,
    status: KeyStatus = KeyStatus.ACTIVE,
) -> VerificationKey:
    """Bind a cryptography public key (from KMS, say) to ``alg``; kid defaults to its thumbprint."""
    _check_public_fits(public_key, alg, _failer(f"{alg} key"))
    if kid is None:
        kid = key_thumbprint(public_key)
    elif not is_valid_kid(kid):
        raise InvalidKeyMaterial(f"{alg} key: kid is not acceptable")
    return VerificationKey(kid=kid, alg=alg, key=public_key, status=status)


# --- Private keys -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class PrivateKeyEntry:
    """One signing key bound to one algorithm: a cryptography private key, or the HS256 secret.

    Equality is identity: comparing secrets with ``==`` is not constant-time, and nothing
    needs it. The repr names the kid, never the material.
    """

    kid: str
    alg: str
    key: PrivateKey | bytes = field(repr=False)
    status: KeyStatus = KeyStatus.ACTIVE
    # Lifecycle timestamps (keys.lifecycle): when the key was created, when it stopped signing.
    created_at: int | None = None
    retired_at: int | None = None

    def __post_init__(self) -> None:
        # A hand-built entry gets the same checks as a parsed one.
        if not is_valid_kid(self.kid):
            raise InvalidKeyMaterial("private key: kid is not acceptable")
        if not isinstance(self.status, KeyStatus):
            raise InvalidKeyMaterial(f"private key {self.kid!r}: status must be a KeyStatus")
        for stamp in (self.created_at, self.retired_at):
            if stamp is not None and (type(stamp) is not int or not 0 <= stamp < _MAX_TIMESTAMP):
                raise InvalidKeyMaterial(f"private key {self.kid!r}: timestamps must be epochs")
        fail = _failer(f"private key {self.kid!r}")
        entry = ALGORITHMS.for_key_set(self.alg)
        if entry is None:
            raise fail(f"alg {self.alg!r} is not supported")
        entry.check_private_key(self.key, fail)

    @property
    def algorithm(self) -> Algorithm:
        """The registry entry of ``alg`` (``__post_init__`` made sure there is one)."""
        return ALGORITHMS[self.alg]

    @property
    def is_symmetric(self) -> bool:
        return self.algorithm.symmetric

    def verification_key(self) -> VerificationKey:
        """The key that verifies this key's signatures (the secret itself for HS256)."""
        material = self.key if isinstance(self.key, bytes) else self.key.public_key()
        return VerificationKey(kid=self.kid, alg=self.alg, key=material, status=self.status)

    def with_status(self, status: KeyStatus) -> PrivateKeyEntry:
        return replace(self, status=status)

    def retire(self, now: int) -> PrivateKeyEntry:
        """This key, retired at ``now`` (it stops signing and keeps verifying)."""
        return replace(self, status=KeyStatus.RETIRED, retired_at=now)

    def __repr__(self) -> str:  # never print key material
        return f"PrivateKeyEntry(kid={self.kid!r}, alg={self.alg!r}, status={self.status.value})"


# --- Parsing ----------------------------------------------------------------------------------


def parse_public_jwk(doc: Mapping[str, object]) -> VerificationKey:
    """Parse one public signature JWK of an access algorithm (RSA, EC or OKP; see the registry
    in ``jose.algorithms`` for which algorithm and curve each may have)."""
    reader = _JwkReader(doc)
    kid = reader.kid()
    algorithm = reader.binding(allow_symmetric=False)
    reader.usage("verify")
    status = reader.status()
    if any(reader.has(name) for name in _PRIVATE_MEMBERS):
        raise reader.fail("private members are not allowed in a public JWK")
    key = _public_key(reader, algorithm)
    algorithm.check_public_key(key, reader.fail)
    return VerificationKey(kid=kid, alg=algorithm.name, key=key, status=status)


def _public_key(reader: _JwkReader, algorithm: Algorithm) -> PublicKey:
    if isinstance(algorithm, RsaAlgorithm):
        n, e = reader.integer("n"), reader.integer("e")
        algorithm.check_numbers(n, e, reader.fail)
        return rsa.RSAPublicNumbers(e, n).public_key()
    if isinstance(algorithm, EcdsaAlgorithm):
        crv, size = algorithm.crv, algorithm.coordinate_bytes
        if reader.text("crv") != crv:
            raise reader.fail(f"'crv' must be {crv}")
        x = reader.bytes_member("x", length=size)
        y = reader.bytes_member("y", length=size)
        try:
            return ec.EllipticCurvePublicKey.from_encoded_point(algorithm.curve, b"\x04" + x + y)
        except ValueError as exc:
            raise reader.fail(f"('x', 'y') is not a point on {crv}") from exc
    if isinstance(algorithm, Ed25519Algorithm):
        if reader.text("crv") != algorithm.crv:
            raise reader.fail(f"'crv' must be {algorithm.crv}")
        x = reader.bytes_member("x", length=algorithm.key_bytes)
        return Ed25519PublicKey.from_public_bytes(x)
    raise reader.fail(f"alg {algorithm.name} has no public key")


def parse_private_jwk(doc: Mapping[str, object]) -> PrivateKeyEntry:
    """Parse one private JWK: an access algorithm's key (RSA, EC, OKP), or the refresh HMAC
    secret (oct)."""
    reader = _JwkReader(doc)
    kid = reader.kid()
    algorithm = reader.binding(allow_symmetric=True)
    reader.usage("sign")
    status = reader.status()
    created_at, retired_at = (reader.timestamp(name) for name in LIFECYCLE_MEMBERS)
    key: PrivateKey | bytes
    if algorithm.symmetric:
        key = reader.bytes_member("k")
        algorithm.check_private_key(key, lambda problem: reader.fail(f"'k': {problem}"))
    elif isinstance(algorithm, RsaAlgorithm):
        key = _rsa_private_key(reader, algorithm)
    elif isinstance(algorithm, EcdsaAlgorithm):
        key = _ec_private_key(reader, algorithm)
    else:
        key = _ed25519_private_key(reader, algorithm)
    return PrivateKeyEntry(
        kid=kid,
        alg=algorithm.name,
        key=key,
        status=status,
        created_at=created_at,
        retired_at=retired_at,
    )


def _rsa_private_key(reader: _JwkReader, algorithm: RsaAlgorithm) -> rsa.RSAPrivateKey:
    if reader.has("oth"):
        raise reader.fail("multi-prime RSA keys ('oth') are not supported")
    n, e = reader.integer("n"), reader.integer("e")
    algorithm.check_numbers(n, e, reader.fail)
    d, p, q, dp, dq, qi = (reader.integer(name) for name in _RSA_PRIVATE_MEMBERS)
    numbers = rsa.RSAPrivateNumbers(p, q, d, dp, dq, qi, rsa.RSAPublicNumbers(e, n))
    try:
        # cryptography checks p*q == n and the CRT values, and OpenSSL checks the key.
        return numbers.private_key()
    except ValueError as exc:
        raise reader.fail("the RSA private members are inconsistent") from exc


def _ec_private_key(reader: _JwkReader, algorithm: EcdsaAlgorithm) -> ec.EllipticCurvePrivateKey:
    public = _public_key(reader, algorithm)
    d = int.from_bytes(reader.bytes_member("d", length=algorithm.coordinate_bytes), "big")
    try:
        private = ec.derive_private_key(d, algorithm.curve)
    except ValueError as exc:
        raise reader.fail(f"'d' is not a valid {algorithm.crv} private scalar") from exc
    if private.public_key() != public:
        raise reader.fail("'d' does not match ('x', 'y')")
    return private


def _ed25519_private_key(reader: _JwkReader, algorithm: Algorithm) -> Ed25519PrivateKey:
    if not isinstance(algorithm, Ed25519Algorithm):
        raise reader.fail(f"alg {algorithm.name} has no private key of its own")
    public = _public_key(reader, algorithm)
    d = reader.bytes_member("d", length=algorithm.key_bytes)
    private = Ed25519PrivateKey.from_private_bytes(d)
    if private.public_key() != public:
        raise reader.fail("'d' does not match 'x'")
    return private


def _key_list(doc: Mapping[str, object], what: str) -> list[object]:
    if not isinstance(doc, Mapping):
        raise InvalidKeyMaterial(f"{what} is not a JSON object")
    keys = doc.get("keys")
    if not isinstance(keys, list) or not keys:
        raise InvalidKeyMaterial(f"{what} needs a non-empty 'keys' list")
    if len(keys) > MAX_KEYS_PER_DOCUMENT:
        raise InvalidKeyMaterial(f"{what} has more than {MAX_KEYS_PER_DOCUMENT} keys")
    return keys


class JwksDocumentParser:
    """``parse_jwks(parse_json_document(text))``, remembering the last document's keys.

    A key source is read again every ``JWKS_CACHE_TTL_SECONDS`` and almost always finds the same
    document; parsing it (key loading, the ROCA and size checks) holds the GIL for milliseconds,
    which a request running beside a background refresh waits out (``make bench`` budget 7).
    The parse depends on the text alone, so the same text gives the same keys: the very objects,
    which also lets the claims cache see at once that a key is still served. A different text
    is parsed in full, and a failed parse is never remembered."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._last: tuple[str, tuple[VerificationKey, ...]] | None = None

    def parse_parameter(self, response: Mapping[str, object]) -> list[VerificationKey]:
        """``parse`` of a GetParameter answer's value (either client's: the same shape)."""
        parameter = response.get("Parameter")
        value = parameter.get("Value") if isinstance(parameter, dict) else None
        if not isinstance(value, str):
            raise InvalidKeyMaterial(f"{self._what} has no value")
        return self.parse(value)

    def parse(self, text: str) -> list[VerificationKey]:
        last = self._last
        if last is not None and last[0] == text:
            return list(last[1])
        keys = parse_jwks(parse_json_document(text, self._what))
        self._last = (text, tuple(keys))
        return keys


def parse_jwks(doc: Mapping[str, object]) -> list[VerificationKey]:
    """Parse a public ``{"keys": [...]}`` document; any bad entry refuses the whole document.

    Fail closed on the document, not the entry: it is our own (published by us or configured
    by the operator), so a malformed entry means a broken rotation or tampering. Skipping it
    could silently drop the very key that should verify, turning a loud fault (503, retry)
    into a storm of "unknown kid" rejections (401, users logged out).
    """
    return _unique_kids(
        [_entry(parse_public_jwk, jwk, index) for index, jwk in enumerate(_key_list(doc, "JWKS"))],
        "JWKS",
    )


def parse_private_jwks(doc: Mapping[str, object]) -> list[PrivateKeyEntry]:
    """Parse a ``{"keys": [...]}`` document of private JWKs by the rules of ``parse_jwks``."""
    entries = [
        _entry(parse_private_jwk, jwk, index)
        for index, jwk in enumerate(_key_list(doc, "private key set"))
    ]
    return _unique_kids(entries, "private key set")


def _entry[T](parse: Callable[[Mapping[str, object]], T], jwk: object, index: int) -> T:
    if not isinstance(jwk, Mapping):
        raise InvalidKeyMaterial(f"key {index}: JWK is not a JSON object")
    try:
        return parse(jwk)
    except InvalidKeyMaterial as exc:
        raise InvalidKeyMaterial(f"key {index}: {exc.message}") from exc


def _unique_kids[K: (VerificationKey, PrivateKeyEntry)](keys: list[K], what: str) -> list[K]:
    seen: set[str] = set()
    for key in keys:
        if key.kid in seen:
            raise InvalidKeyMaterial(f"{what} has the kid {key.kid!r} more than once")
        seen.add(key.kid)
    return keys


# --- Export -----------------------------------------------------------------------------------


def _minimal_bytes(value: int) -> bytes:
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def _public_members(key: PublicKey) -> dict[str, str]:
    """The RFC 7638 required members of a public key (kty and the key parameters), for a key
    of a key-set algorithm (kty and crv from its registry entry)."""
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        return {
            "kty": RsaAlgorithm.kty,
            "n": b64url_encode(_minimal_bytes(numbers.n)),
            "e": b64url_encode(_minimal_bytes(numbers.e)),
        }
    if isinstance(key, ec.EllipticCurvePublicKey):
        algorithm = ALGORITHMS.for_curve(key.curve.name)
        if not isinstance(algorithm, EcdsaAlgorithm):
            raise InvalidKeyMaterial(f"EC keys on {key.curve.name} cannot be exported")
        # The coordinates at full width (RFC 7518 §6.2.1.2), from the numbers rather than the
        # X9.62 point: cryptography's serialization module is a tenth of a verifier's cold start.
        point = key.public_numbers()
        size = algorithm.coordinate_bytes
        return {
            "kty": algorithm.kty,
            "crv": algorithm.crv,
            "x": b64url_encode(point.x.to_bytes(size, "big")),
            "y": b64url_encode(point.y.to_bytes(size, "big")),
        }
    if isinstance(key, Ed25519PublicKey):
        return {
            "kty": Ed25519Algorithm.kty,
            "crv": Ed25519Algorithm.crv,
            "x": b64url_encode(key.public_bytes_raw()),
        }
    raise InvalidKeyMaterial("unsupported public key type")


def public_jwk(key: VerificationKey) -> dict[str, str]:
    """The public JWK we publish: kty, kid, use "sig", alg and the key parameters.

    HS256 keys are secrets and are refused here, so no code path can publish one.
    """
    if key.is_symmetric or isinstance(key.key, bytes):
        raise InvalidKeyMaterial(f"key {key.kid!r} ({key.alg}) is symmetric and never published")
    _check_public_fits(key.key, key.alg, _failer(f"key {key.kid!r}"))
    members = _public_members(key.key)
    return {"kty": members.pop("kty"), "kid": key.kid, "use": "sig", "alg": key.alg, **members}


def private_jwk(entry: PrivateKeyEntry) -> dict[str, Any]:
    """The private JWK of ``entry`` with its kid, alg, status and lifecycle timestamps (for the
    secret document; the timestamps appear only when set)."""
    head: dict[str, Any] = {
        "kid": entry.kid,
        "use": "sig",
        "alg": entry.alg,
        "status": entry.status.value,
    }
    for name, stamp in zip(LIFECYCLE_MEMBERS, (entry.created_at, entry.retired_at), strict=True):
        if stamp is not None:
            head[name] = stamp
    key = entry.key
    if isinstance(key, bytes):
        return {"kty": entry.algorithm.kty, **head, "k": b64url_encode(key)}
    members = _public_members(key.public_key())
    kty = members.pop("kty")
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.private_numbers()
        values = (numbers.d, numbers.p, numbers.q, numbers.dmp1, numbers.dmq1, numbers.iqmp)
        for name, value in zip(_RSA_PRIVATE_MEMBERS, values, strict=True):
            members[name] = b64url_encode(_minimal_bytes(value))
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        scalar = key.private_numbers().private_value
        size = (key.curve.key_size + 7) // 8
        members["d"] = b64url_encode(scalar.to_bytes(size, "big"))
    else:
        members["d"] = b64url_encode(key.private_bytes_raw())
    return {"kty": kty, **head, **members}


def jwk_thumbprint(jwk: Mapping[str, object]) -> str:
    """RFC 7638 SHA-256 thumbprint, base64url: the kid of every key we generate.

    Symmetric keys have no thumbprint here: a hash of the refresh secret has no business
    travelling in token headers.
    """
    kty = jwk.get("kty")
    names = _THUMBPRINT_MEMBERS.get(kty) if isinstance(kty, str) else None
    if names is None:
        raise InvalidKeyMaterial("thumbprints are computed for RSA, EC and OKP keys only")
    required: dict[str, str] = {}
    for name in names:
        value = jwk.get(name)
        if not isinstance(value, str) or not value:
            raise InvalidKeyMaterial(f"JWK thumbprint: '{name}' is required")
        required[name] = value
    # RFC 7638 §3.3: members in lexicographic order (each tuple above is), no whitespace.
    return b64url_encode(hashlib.sha256(json_compact(required)).digest())


def key_thumbprint(public_key: PublicKey) -> str:
    """RFC 7638 thumbprint of a cryptography public key."""
    return jwk_thumbprint(_public_members(public_key))
