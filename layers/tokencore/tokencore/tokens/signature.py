"""The signature layer: verify one JWS signature with a key bound to one algorithm.

The algorithms are called on ``cryptography`` directly, exactly as PyJWT's ``Algorithm.verify``
does (RSASSA-PKCS1-v1_5 with SHA-256, ECDSA with the raw ``r || s`` of RFC 7518 §3.4 converted
to DER, Ed25519, HMAC compared in constant time), without importing PyJWT: ``import jwt`` loads
its X.509, JWKS-client and HTTP modules, which is most of a verifier's cold start (see
docs/capacity.md and ``make bench``). Which algorithm runs is decided by the key, never by the
token: the caller has already checked that the header's ``alg`` equals the key's binding.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any, Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tokencore.errors import AlgorithmNotAllowed, InvalidSignature
from tokencore.keys.model import VerificationKey

# Every algorithm the signature layer knows. Access tokens are restricted further by the
# key sets (RS256, ES256, EdDSA); ES512 is here for completeness of the JOSE vectors only,
# and can only ever run with a P-521 key that was deliberately bound to it.
SIGNATURE_ALGORITHMS = frozenset({"RS256", "ES256", "ES512", "EdDSA", "HS256"})

_EXPECTED_CURVE = {"ES256": ec.SECP256R1, "ES512": ec.SECP521R1}
_MIN_RSA_BITS = 2048
_MIN_HMAC_BYTES = 32

# Stateless parameter objects, built once instead of once per verification.
_PKCS1V15: Final = padding.PKCS1v15()
_SHA256: Final = hashes.SHA256()
_ECDSA: Final = {"ES256": ec.ECDSA(hashes.SHA256()), "ES512": ec.ECDSA(hashes.SHA512())}
# Raw r || s: each half is the curve order's size in bytes (32 for P-256, 66 for P-521).
_ECDSA_HALF: Final = {"ES256": 32, "ES512": 66}

# Keys already checked by _check_key_fits, by identity. The entry holds the key itself, so an
# id cannot be reused by another object while it is cached; bounded, since keys come and go
# with rotations (clearing only costs a re-check).
_FITTING_KEYS: dict[int, VerificationKey] = {}
_MAX_FITTING_KEYS: Final = 64


def _check_key_fits(key: VerificationKey) -> None:
    """Refuse a key whose type does not match its algorithm binding (defence in depth:
    key loading already enforces this, but a hand-built VerificationKey must not slip by)."""
    if _FITTING_KEYS.get(id(key)) is key:
        return
    alg, material = key.alg, key.key
    if alg == "RS256":
        ok = isinstance(material, RSAPublicKey) and material.key_size >= _MIN_RSA_BITS
    elif alg in _EXPECTED_CURVE:
        ok = isinstance(material, ec.EllipticCurvePublicKey) and isinstance(
            material.curve, _EXPECTED_CURVE[alg]
        )
    elif alg == "EdDSA":
        ok = isinstance(material, Ed25519PublicKey)
    elif alg == "HS256":
        ok = isinstance(material, bytes) and len(material) >= _MIN_HMAC_BYTES
    else:
        ok = False
    if not ok:
        raise AlgorithmNotAllowed(f"key {key.kid!r} does not fit algorithm {alg}")
    if len(_FITTING_KEYS) >= _MAX_FITTING_KEYS:
        _FITTING_KEYS.clear()
    _FITTING_KEYS[id(key)] = key


# Each verifier raises (anything) when the signature does not verify. ``material`` is the
# key's ``key``, whose type _check_key_fits has already established for the algorithm.


def _verify_rs256(material: Any, signing_input: bytes, signature: bytes) -> None:
    material.verify(signature, signing_input, _PKCS1V15, _SHA256)


def _verify_ecdsa(alg: str) -> Callable[[Any, bytes, bytes], None]:
    half, algorithm = _ECDSA_HALF[alg], _ECDSA[alg]

    def verify(material: Any, signing_input: bytes, signature: bytes) -> None:
        if len(signature) != 2 * half:
            raise InvalidSignature("ECDSA signature has the wrong length")
        r = int.from_bytes(signature[:half], "big")
        s = int.from_bytes(signature[half:], "big")
        material.verify(encode_dss_signature(r, s), signing_input, algorithm)

    return verify


def _verify_eddsa(material: Any, signing_input: bytes, signature: bytes) -> None:
    material.verify(signature, signing_input)


def _verify_hs256(material: Any, signing_input: bytes, signature: bytes) -> None:
    expected = hmac.new(material, signing_input, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, signature):
        raise InvalidSignature("signature does not verify")


_VERIFIERS: Final[dict[str, Callable[[Any, bytes, bytes], None]]] = {
    "RS256": _verify_rs256,
    "ES256": _verify_ecdsa("ES256"),
    "ES512": _verify_ecdsa("ES512"),
    "EdDSA": _verify_eddsa,
    "HS256": _verify_hs256,
}


def verify_signature(key: VerificationKey, signing_input: bytes, signature: bytes) -> None:
    """Raise InvalidSignature unless ``signature`` over ``signing_input`` verifies with ``key``."""
    verifier = _VERIFIERS.get(key.alg)
    if verifier is None:
        raise AlgorithmNotAllowed(f"algorithm {key.alg!r} is not supported")
    _check_key_fits(key)
    if not signature:
        raise InvalidSignature("empty signature")
    try:
        verifier(key.key, signing_input, signature)
    except InvalidSignature:
        raise
    except Exception as exc:  # cryptography's InvalidSignature, or a malformed signature
        raise InvalidSignature("signature could not be verified") from exc
