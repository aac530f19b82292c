"""Strict JWK parsing and export (RFC 7517, 7518, 7638, 8037) with ``cryptography`` alone.

Every key is bound to exactly one algorithm when it is parsed, so a JWK must name its ``alg``
and the pair (kty, alg) must be one we sign with: RSA/RS256, EC P-256/ES256, OKP Ed25519/EdDSA,
and, for private documents only, oct/HS256 (the refresh-token key). Anything else is refused,
not skipped: these documents are ours, and a key we cannot use is a misconfiguration that
should fail loudly rather than surface later as "unknown kid".

Base64url members must be unpadded and canonical (the unused low bits of the last character
are zero): one byte string, one spelling. RSA integers may carry leading zero octets (some
exporters write them); kids of generated keys are thumbprints of the key itself
(:func:`key_thumbprint`), never of a document's spelling. Errors name the member that failed,
never its value; the kid is named once it has itself been validated.

JSON documents are read with :func:`parse_json_document`, which refuses duplicate members
(``json.loads`` would silently keep the last one) and non-finite numbers.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeGuard

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tokencore.errors import InvalidKeyMaterial
from tokencore.keys.model import (
    ASYMMETRIC_ALGORITHMS,
    SYMMETRIC_ALGORITHMS,
    KeyStatus,
    PublicKey,
    VerificationKey,
)

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | Ed25519PrivateKey

MAX_KID_LENGTH = 128
MIN_RSA_BITS = 2048
# Verification cost grows with the modulus; 8192 bits covers every sane deployment.
MAX_RSA_BITS = 8192
MIN_HMAC_KEY_BYTES = 32
# Bounds the work a hostile or broken document can cause before any crypto runs.
MAX_KEYS_PER_DOCUMENT = 64
MAX_DOCUMENT_BYTES = 256 * 1024
_MAX_MEMBER_CHARS = 4096

# The one algorithm each key type is bound to.
ALG_BY_KTY: Mapping[str, str] = {"RSA": "RS256", "EC": "ES256", "OKP": "EdDSA", "oct": "HS256"}
_P256_COORDINATE_BYTES = 32
_ED25519_BYTES = 32
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
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
# kid: printable ASCII without space, path separators, quotes or backticks, and never "..";
# nothing that could steer a path, a log line or a query if a kid ever reaches one.
_KID_FORBIDDEN = frozenset("/\\\"'`")
_KID = re.compile(
    "["
    + re.escape("".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in _KID_FORBIDDEN))
    + f"]{{1,{MAX_KID_LENGTH}}}"
)

# ROCA (CVE-2017-15361): a modulus from the flawed Infineon generator is, modulo each of these
# primes, a power of 65537. A sound modulus passes all 38 tests with probability about 4e-9.
_ROCA_PRIMES = (
    3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71,
    73, 79, 83, 89, 97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
)  # fmt: skip
_ROCA_GENERATOR = 65537


def is_valid_kid(kid: object) -> TypeGuard[str]:
    """True if ``kid`` is a string we would accept as a key id (see the module rules)."""
    return isinstance(kid, str) and _KID.fullmatch(kid) is not None and ".." not in kid


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url, the only spelling JOSE uses."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def parse_json_document(text: str | bytes, what: str = "key document") -> dict[str, Any]:
    """Parse a JSON object strictly: bounded size, no duplicate members, no NaN or Infinity."""
    if len(text) > MAX_DOCUMENT_BYTES:
        raise InvalidKeyMaterial(f"{what} is too large")
    try:
        document = json.loads(
            text, object_pairs_hook=_unique_members, parse_constant=_refuse_constant
        )
    # JSONDecodeError is a ValueError; deep nesting makes the decoder raise RecursionError.
    except (ValueError, RecursionError) as exc:
        raise InvalidKeyMaterial(f"{what} is not valid JSON") from exc
    if not isinstance(document, dict):
        raise InvalidKeyMaterial(f"{what} is not a JSON object")
    return document


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        raise ValueError("duplicate member")
    return document


def _refuse_constant(name: str) -> Any:
    raise ValueError("non-finite number")


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

    def binding(self, *, allow_symmetric: bool) -> tuple[str, str]:
        """(kty, alg): both required, and alg must be the one algorithm bound to kty."""
        kty = self.text("kty")
        alg = self.text("alg")
        if kty == "oct" and not allow_symmetric:
            raise self.fail("symmetric keys (kty 'oct') are never public")
        expected = ALG_BY_KTY.get(kty)
        if expected is None:
            raise self.fail(f"'kty' must be one of {', '.join(ALG_BY_KTY)}")
        if alg != expected:
            raise self.fail(f"'alg' must be {expected} for kty {kty}")
        return kty, alg

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
        if (
            not isinstance(value, str)
            or not value
            or len(value) > _MAX_MEMBER_CHARS
            or len(value) % 4 == 1
            or not _B64URL.fullmatch(value)
        ):
            raise self.fail(f"'{name}' must be a non-empty unpadded base64url string")
        try:
            data = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        except (binascii.Error, ValueError) as exc:
            raise self.fail(f"'{name}' is not base64url") from exc
        if b64url_encode(data) != value:
            raise self.fail(f"'{name}' is not canonical base64url")
        if length is not None and len(data) != length:
            raise self.fail(f"'{name}' must be exactly {length} bytes")
        return data

    def integer(self, name: str) -> int:
        # Leading zero octets are tolerated (lenient on RSA integers); emptiness is not.
        return int.from_bytes(self.bytes_member(name), "big")


# --- Checks shared by every way a key arrives (JWK, generation, KMS) -------------------------


@functools.cache
def _roca_powers() -> tuple[tuple[int, frozenset[int]], ...]:
    table = []
    for prime in _ROCA_PRIMES:
        powers: set[int] = set()
        power = 1
        while power not in powers:
            powers.add(power)
            power = power * _ROCA_GENERATOR % prime
        table.append((prime, frozenset(powers)))
    return tuple(table)


def has_roca_fingerprint(modulus: int) -> bool:
    """True if ``modulus`` has the ROCA fingerprint (a key from the flawed Infineon generator)."""
    return all(modulus % prime in powers for prime, powers in _roca_powers())


def _check_rsa_numbers(n: int, e: int, fail: Callable[[str], InvalidKeyMaterial]) -> None:
    if not MIN_RSA_BITS <= n.bit_length() <= MAX_RSA_BITS or n % 2 == 0:
        raise fail(f"'n' must be an odd modulus of {MIN_RSA_BITS} to {MAX_RSA_BITS} bits")
    # e > 1 and odd (e = 1 makes the "signature" the message); below 2**256 as NIST asks.
    if e <= 1 or e % 2 == 0 or e.bit_length() > 256 or e >= n:
        raise fail("'e' must be an odd exponent greater than 1 and below 2**256")
    if has_roca_fingerprint(n):
        raise fail("'n' has the ROCA fingerprint (CVE-2017-15361); replace the key")


def _check_public_fits(key: object, alg: str, fail: Callable[[str], InvalidKeyMaterial]) -> None:
    """Refuse a public key whose type, size or curve does not fit ``alg``."""
    if alg == "RS256" and isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        _check_rsa_numbers(numbers.n, numbers.e, fail)
    elif alg == "ES256" and isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise fail("ES256 needs a P-256 key")
    elif not (alg == "EdDSA" and isinstance(key, Ed25519PublicKey)):
        raise fail(f"the key does not fit alg {alg}")


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
        if self.alg in SYMMETRIC_ALGORITHMS:
            if not isinstance(self.key, bytes) or len(self.key) < MIN_HMAC_KEY_BYTES:
                raise fail(f"HS256 needs a secret of at least {MIN_HMAC_KEY_BYTES} bytes")
        elif self.alg in ASYMMETRIC_ALGORITHMS:
            if isinstance(self.key, bytes):
                raise fail(f"the key does not fit alg {self.alg}")
            _check_public_fits(self.key.public_key(), self.alg, fail)
        else:
            raise fail(f"alg {self.alg!r} is not supported")

    @property
    def is_symmetric(self) -> bool:
        return self.alg in SYMMETRIC_ALGORITHMS

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
    """Parse one public signature JWK (RSA/RS256, EC P-256/ES256, OKP Ed25519/EdDSA)."""
    reader = _JwkReader(doc)
    kid = reader.kid()
    kty, alg = reader.binding(allow_symmetric=False)
    reader.usage("verify")
    status = reader.status()
    if any(reader.has(name) for name in _PRIVATE_MEMBERS):
        raise reader.fail("private members are not allowed in a public JWK")
    key = _public_key(reader, kty)
    _check_public_fits(key, alg, reader.fail)
    return VerificationKey(kid=kid, alg=alg, key=key, status=status)


def _public_key(reader: _JwkReader, kty: str) -> PublicKey:
    if kty == "RSA":
        n, e = reader.integer("n"), reader.integer("e")
        _check_rsa_numbers(n, e, reader.fail)
        return rsa.RSAPublicNumbers(e, n).public_key()
    if kty == "EC":
        if reader.text("crv") != "P-256":
            raise reader.fail("'crv' must be P-256")
        x = reader.bytes_member("x", length=_P256_COORDINATE_BYTES)
        y = reader.bytes_member("y", length=_P256_COORDINATE_BYTES)
        try:
            return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + x + y)
        except ValueError as exc:
            raise reader.fail("('x', 'y') is not a point on P-256") from exc
    if reader.text("crv") != "Ed25519":
        raise reader.fail("'crv' must be Ed25519")
    x = reader.bytes_member("x", length=_ED25519_BYTES)
    return Ed25519PublicKey.from_public_bytes(x)


def parse_private_jwk(doc: Mapping[str, object]) -> PrivateKeyEntry:
    """Parse one private JWK: RSA, EC P-256, OKP Ed25519, or oct/HS256 (the refresh key)."""
    reader = _JwkReader(doc)
    kid = reader.kid()
    kty, alg = reader.binding(allow_symmetric=True)
    reader.usage("sign")
    status = reader.status()
    created_at, retired_at = (reader.timestamp(name) for name in LIFECYCLE_MEMBERS)
    key: PrivateKey | bytes
    if kty == "oct":
        key = reader.bytes_member("k")
        if len(key) < MIN_HMAC_KEY_BYTES:
            raise reader.fail(f"'k' must be at least {MIN_HMAC_KEY_BYTES} bytes")
    elif kty == "RSA":
        key = _rsa_private_key(reader)
    elif kty == "EC":
        key = _ec_private_key(reader)
    else:
        key = _ed25519_private_key(reader)
    return PrivateKeyEntry(
        kid=kid, alg=alg, key=key, status=status, created_at=created_at, retired_at=retired_at
    )


def _rsa_private_key(reader: _JwkReader) -> rsa.RSAPrivateKey:
    if reader.has("oth"):
        raise reader.fail("multi-prime RSA keys ('oth') are not supported")
    n, e = reader.integer("n"), reader.integer("e")
    _check_rsa_numbers(n, e, reader.fail)
    d, p, q, dp, dq, qi = (reader.integer(name) for name in _RSA_PRIVATE_MEMBERS)
    numbers = rsa.RSAPrivateNumbers(p, q, d, dp, dq, qi, rsa.RSAPublicNumbers(e, n))
    try:
        # cryptography checks p*q == n and the CRT values, and OpenSSL checks the key.
        return numbers.private_key()
    except ValueError as exc:
        raise reader.fail("the RSA private members are inconsistent") from exc


def _ec_private_key(reader: _JwkReader) -> ec.EllipticCurvePrivateKey:
    public = _public_key(reader, "EC")
    d = int.from_bytes(reader.bytes_member("d", length=_P256_COORDINATE_BYTES), "big")
    try:
        private = ec.derive_private_key(d, ec.SECP256R1())
    except ValueError as exc:
        raise reader.fail("'d' is not a valid P-256 private scalar") from exc
    if private.public_key() != public:
        raise reader.fail("'d' does not match ('x', 'y')")
    return private


def _ed25519_private_key(reader: _JwkReader) -> Ed25519PrivateKey:
    public = _public_key(reader, "OKP")
    private = Ed25519PrivateKey.from_private_bytes(reader.bytes_member("d", length=_ED25519_BYTES))
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
    """The RFC 7638 required members of a public key (kty and the key parameters)."""
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        return {
            "kty": "RSA",
            "n": b64url_encode(_minimal_bytes(numbers.n)),
            "e": b64url_encode(_minimal_bytes(numbers.e)),
        }
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise InvalidKeyMaterial("only P-256 EC keys can be exported")
        # The coordinates at full width (RFC 7518 §6.2.1.2), from the numbers rather than the
        # X9.62 point: cryptography's serialization module is a tenth of a verifier's cold start.
        point = key.public_numbers()
        size = _P256_COORDINATE_BYTES
        return {
            "kty": "EC",
            "crv": "P-256",
            "x": b64url_encode(point.x.to_bytes(size, "big")),
            "y": b64url_encode(point.y.to_bytes(size, "big")),
        }
    if isinstance(key, Ed25519PublicKey):
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(key.public_bytes_raw())}
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
        return {"kty": "oct", **head, "k": b64url_encode(key)}
    members = _public_members(key.public_key())
    kty = members.pop("kty")
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.private_numbers()
        values = (numbers.d, numbers.p, numbers.q, numbers.dmp1, numbers.dmq1, numbers.iqmp)
        for name, value in zip(_RSA_PRIVATE_MEMBERS, values, strict=True):
            members[name] = b64url_encode(_minimal_bytes(value))
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        scalar = key.private_numbers().private_value
        members["d"] = b64url_encode(scalar.to_bytes(_P256_COORDINATE_BYTES, "big"))
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
    canonical = json.dumps(required, separators=(",", ":"), sort_keys=True, ensure_ascii=True)
    return b64url_encode(hashlib.sha256(canonical.encode("ascii")).digest())


def key_thumbprint(public_key: PublicKey) -> str:
    """RFC 7638 thumbprint of a cryptography public key."""
    return jwk_thumbprint(_public_members(public_key))
