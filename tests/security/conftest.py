"""Keys and key lookups for the attack tests: generated once per session, never committed.
And the two local stacks the HTTP attack suite runs against (``edges``), started once per
session, together, with the e2e tier's helpers; and that suite's arsenal (a victim and the
stack's keys), built once per test module as before the suite was split in files."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.e2e.conftest import launch_stack, wait_until_ready
from tests.functional.conftest import (  # noqa: F401  (the functional stack, as fixtures here)
    authz,
    aws_clients,
    generated_keys,
    stack,
)
from tests.security.http_attacks_kit import EDGES, Arsenal
from tests.security.http_kit import Edge
from tokencore.errors import UnknownKey
from tokencore.keys.jwk import PrivateKeyEntry
from tokencore.keys.local import LocalSigner, generate_key
from tokencore.keys.model import VerificationKey


class KeyLookup:
    """A fixed set of verification keys: ``get(kid)`` or ``UnknownKey``. Records every kid it is
    asked for, so a test can prove that a hostile header was refused before any key was used."""

    def __init__(self, *keys: VerificationKey) -> None:
        self._keys = {key.kid: key for key in keys}
        self.calls: list[str] = []

    def get(self, kid: str) -> VerificationKey:
        self.calls.append(kid)
        try:
            return self._keys[kid]
        except KeyError:
            raise UnknownKey("unknown kid") from None


@dataclass(frozen=True)
class Keys:
    """Our access keys (one per algorithm), our refresh key, and an attacker's keys."""

    rs256: PrivateKeyEntry
    es256: PrivateKeyEntry
    eddsa: PrivateKeyEntry
    refresh: PrivateKeyEntry
    attacker_rs256: PrivateKeyEntry
    attacker_es256: PrivateKeyEntry

    @property
    def access_entries(self) -> tuple[PrivateKeyEntry, ...]:
        return (self.rs256, self.es256, self.eddsa)

    def signer(self, entry: PrivateKeyEntry) -> LocalSigner:
        return LocalSigner(entry)


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys(
        rs256=generate_key("RS256"),
        es256=generate_key("ES256"),
        eddsa=generate_key("EdDSA"),
        refresh=generate_key("HS256"),
        attacker_rs256=generate_key("RS256"),
        attacker_es256=generate_key("ES256"),
    )


@pytest.fixture
def access_keys(keys: Keys) -> KeyLookup:
    """The access-token key set: public keys only, as a KeyRing built from the JWKS."""
    return KeyLookup(*(entry.verification_key() for entry in keys.access_entries))


@pytest.fixture
def refresh_keys(keys: Keys) -> KeyLookup:
    """The refresh-token key set: the HS256 secret only."""
    return KeyLookup(keys.refresh.verification_key())


@pytest.fixture
def all_keys(keys: Keys) -> KeyLookup:
    """A misconfiguration: one lookup holding access and refresh keys alike. Token kinds must
    still never cross, because the verify functions restrict the algorithms themselves."""
    entries = (*keys.access_entries, keys.refresh)
    return KeyLookup(*(entry.verification_key() for entry in entries))


# --- the local stacks of the HTTP attack suite ---------------------------------------------------

ALLOWED_ORIGIN = "https://app.example.com"
SEC_ADMIN = "sec-root"
SEC_ADMIN_PASSWORD = "sec-root-password-for-the-attack-suite"  # throwaway local stack only

# "sec": the template's defaults where they matter to an attacker (RS256, a 30 s grace window,
# sampling off so ordinary routes take the fast path), tight login limits, CORS for one origin,
# a 2 s key cache (emergency key revocation is bounded by it) and DEBUG logs for the hygiene
# check. "strict": ES256 (psychic signatures, EC key confusion), no grace window, every request
# checks its session, a low refresh limit, no CORS at all.
EDGE_SETTINGS: dict[str, dict[str, str]] = {
    "sec": {
        "SEED_USERS": f"{SEC_ADMIN}:{SEC_ADMIN_PASSWORD}:admin,user",
        "SESSION_CHECK_SAMPLE_RATE": "0",
        "LOGIN_RATE_LIMIT": "5/300",
        "LOGIN_IP_RATE_LIMIT": "12/300",
        "REFRESH_RATE_LIMIT": "100/60",
        "ALLOWED_ORIGINS": ALLOWED_ORIGIN,
        "JWKS_CACHE_TTL_SECONDS": "2",
        "JWKS_REFETCH_MIN_INTERVAL_SECONDS": "0",
        "POWERTOOLS_LOG_LEVEL": "DEBUG",
    },
    "strict": {
        "ACCESS_TOKEN_ALG": "ES256",
        "REFRESH_REUSE_GRACE_SECONDS": "0",
        "SESSION_CHECK_SAMPLE_RATE": "1",
        "REFRESH_RATE_LIMIT": "3/60",
        "LOGIN_RATE_LIMIT": "50/300",
        "LOGIN_IP_RATE_LIMIT": "200/300",
        "POWERTOOLS_LOG_LEVEL": "DEBUG",
    },
}


@pytest.fixture(scope="session")
def edges(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Edge]]:
    """Both stacks, started together; stopped with SIGTERM at the end of the session, and each
    must exit 0 without a traceback in its log (no attack crashed anything)."""
    stacks = {
        name: launch_stack(tmp_path_factory.mktemp(f"security-{name}"), **settings)
        for name, settings in EDGE_SETTINGS.items()
    }
    try:
        for stack in stacks.values():
            wait_until_ready(stack)
        yield {name: Edge(name, stack) for name, stack in stacks.items()}
    finally:
        failures = []
        for name, stack in stacks.items():
            code = stack.stop(signal.SIGTERM)
            logs = stack.logs()
            if code != 0 or "Traceback" in logs:
                failures.append(f"{name} stack: exit {code}\n{logs[-3000:]}")
        assert not failures, "\n".join(failures)


@pytest.fixture(scope="session")
def sec(edges: dict[str, Edge]) -> Edge:
    return edges["sec"]


@pytest.fixture(scope="session")
def strict(edges: dict[str, Edge]) -> Edge:
    return edges["strict"]


# --- the HTTP attack suite's arsenal (tests/security/test_http_attacks_*.py) --------------------


@pytest.fixture(scope="module")
def arsenals(edges: dict[str, Edge]) -> dict[str, Arsenal]:
    built = {}
    for name, edge in edges.items():
        victim = edge.new_account(prefix="victim")
        login = edge.login(victim)
        access = edge.key_set("access").active
        refresh = edge.key_set("refresh").active
        jwks = edge.send("GET", "/.well-known/jwks.json").body
        built[name] = Arsenal(edge, victim, login, access, refresh, jwks)
    return built


@pytest.fixture(params=EDGES)
def arsenal(request: pytest.FixtureRequest, arsenals: dict[str, Arsenal]) -> Arsenal:
    return arsenals[request.param]
