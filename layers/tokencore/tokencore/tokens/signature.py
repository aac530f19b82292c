"""The signature layer: verify one JWS signature with a key bound to one algorithm.

PyJWT supplies the algorithm implementations (its ``Algorithm.verify`` wraps ``cryptography``
and converts raw ECDSA ``r || s`` to DER). Which algorithm runs is decided by the key, never by
the token: the caller has already checked that the header's ``alg`` equals the key's binding.
"""

from __future__ import annotations

from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from tokencore.errors import AlgorithmNotAllowed, InvalidSignature
from tokencore.keys.model import VerificationKey

# Every algorithm the signature layer knows. Access tokens are restricted further by the
# key sets (RS256, ES256, EdDSA); ES512 is here for completeness of the JOSE vectors only,
# and can only ever run with a P-521 key that was deliberately bound to it.
SIGNATURE_ALGORITHMS = frozenset({"RS256", "ES256", "ES512", "EdDSA", "HS256"})

_EXPECTED_CURVE = {"ES256": ec.SECP256R1, "ES512": ec.SECP521R1}
_MIN_RSA_BITS = 2048
_MIN_HMAC_BYTES = 32

# One Algorithm object per name, built once: PyJWT's objects are stateless.
_ALGORITHMS: dict[str, Any] = {
    name: jwt.get_algorithm_by_name(name) for name in SIGNATURE_ALGORITHMS
}


def _check_key_fits(key: VerificationKey) -> None:
    """Refuse a key whose type does not match its algorithm binding (defence in depth:
    key loading already enforces this, but a hand-built VerificationKey must not slip by)."""
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


def verify_signature(key: VerificationKey, signing_input: bytes, signature: bytes) -> None:
    """Raise InvalidSignature unless ``signature`` over ``signing_input`` verifies with ``key``."""
    algorithm = _ALGORITHMS.get(key.alg)
    if algorithm is None:
        raise AlgorithmNotAllowed(f"algorithm {key.alg!r} is not supported")
    _check_key_fits(key)
    if not signature:
        raise InvalidSignature("empty signature")
    try:
        valid = bool(algorithm.verify(signing_input, key.key, signature))
    except Exception as exc:
        raise InvalidSignature("signature could not be verified") from exc
    if not valid:
        raise InvalidSignature("signature does not verify")
