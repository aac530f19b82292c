"""The published JWKS document (``GET /.well-known/jwks.json``).

Only asymmetric keys appear; an HS256 key handed in by mistake is dropped here, silently and
always, because this function's output is public and a secret must never reach it. The order
is stable (active, then next, then retired, each in the order given) so caches and diffs see
the same document for the same keys.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokencore.errors import InvalidKeyMaterial
from tokencore.keys.jwk import public_jwk
from tokencore.keys.model import KeyStatus, VerificationKey

_STATUS_ORDER = {KeyStatus.ACTIVE: 0, KeyStatus.NEXT: 1, KeyStatus.RETIRED: 2}


def sort_by_status(keys: Iterable[VerificationKey]) -> list[VerificationKey]:
    """Active first, then next, then retired; stable within each status."""
    return sorted(keys, key=lambda key: _STATUS_ORDER[key.status])


def jwks_document(keys: Iterable[VerificationKey]) -> dict[str, list[dict[str, str]]]:
    """``{"keys": [public JWK, ...]}`` for the asymmetric keys among ``keys``."""
    published = [
        key
        for key in sort_by_status(keys)
        if not key.is_symmetric and not isinstance(key.key, bytes)
    ]
    kids = [key.kid for key in published]
    if len(set(kids)) != len(kids):
        raise InvalidKeyMaterial("JWKS would publish the same kid twice")
    return {"keys": [public_jwk(key) for key in published]}
