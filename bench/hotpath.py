"""Budgets 1 and 2: the authorizer's warm answer, against the floor and against peers.

1. First sight of an RS256 token (1a against the raw verify, 1b against ``jwt.decode``): the
   whole handler (an HTTP API event in, the simple response
   out, with its EMF metric line written) over tokens it has never seen, against bare
   ``jwt.decode`` of the same tokens with a preloaded key. Also: raw ``cryptography``
   verification (the floor), tokencore's verification alone, and joserfc, jwcrypto and
   python-jose decoding (each with its own claim checks for iss, aud and exp, as jwt.decode
   does).
2. The same token again on a warm container: the whole handler on a ``ClaimsCache`` hit (event
   parsing, binding, policy, response and metrics still run on every request) against
   ``jwt.decode``, and, for the record, the verification step alone.

For the record (no budget): the same first-sight comparison for ES256 and EdDSA keys.
"""

from __future__ import annotations

import contextlib
import io
import os
from typing import Any

from bench.common import (
    AUDIENCE,
    ISSUER,
    Budget,
    Contender,
    LambdaContext,
    authorizer_environment,
    in_process_authorizer,
    make_fixture,
    median_ratio,
    side_by_side,
    spread,
    table,
)

POOL = 1000


class _Sink(io.TextIOBase):
    """stdout for the handler's EMF lines: counted, then dropped."""

    def __init__(self) -> None:
        self.lines = 0

    def write(self, text: str) -> int:
        self.lines += text.count("\n")
        return len(text)


def run(quick: bool = False) -> tuple[list[str], list[Budget]]:
    fixture = make_fixture(pool=POOL)
    with in_process_authorizer(fixture) as aws_endpoint:
        return _run(quick, fixture, aws_endpoint)


def _run(quick: bool, fixture: Any, aws_endpoint: str) -> tuple[list[str], list[Budget]]:
    rounds, batch = (6, 100) if quick else (15, 250)
    tokens, events = fixture.tokens, fixture.events
    os.environ.update(authorizer_environment(fixture, aws_endpoint))

    from tokencore.config import reset_settings
    from tokencore.runtime import Runtime, set_runtime

    reset_settings()
    set_runtime(Runtime())
    from functions.authorizer import app

    context = LambdaContext()
    sink = _Sink()
    with contextlib.redirect_stdout(sink):
        first = app.lambda_handler(events[0], context)
    if first.get("isAuthorized") is not True:
        raise RuntimeError(f"the authorizer did not allow the benchmark token: {first}")
    authorizer = app._authorizer()
    cache = authorizer.claims_cache
    if cache is None:
        raise RuntimeError("the authorizer has no claims cache")

    position = [0]

    def cycling(batch_size: int) -> list[int]:
        start = position[0]
        position[0] = (start + batch_size) % POOL
        return [(start + i) % POOL for i in range(batch_size)]

    contenders = _peers(fixture, cycling)

    def handler_first_sight(batch_size: int) -> None:
        handler = app.lambda_handler
        with contextlib.redirect_stdout(sink):
            for i in cycling(batch_size):
                handler(events[i], context)

    contenders.append(Contender("authorizer handler", handler_first_sight, cache.clear))
    before = (cache.hits, cache.misses)
    first_sight = side_by_side(contenders, rounds=rounds, batch=batch)
    if cache.hits != before[0]:
        raise RuntimeError("a first-sight round hit the claims cache")

    # --- the same token again -------------------------------------------------------------
    token, event = tokens[0], events[0]
    import jwt

    public_key = fixture.public_key

    def decode_same(batch_size: int) -> None:
        decode = jwt.decode
        for _ in range(batch_size):
            decode(token, public_key, algorithms=["RS256"], audience=AUDIENCE, issuer=ISSUER)

    def cached_step(batch_size: int) -> None:
        verified = authorizer.verified_claims
        for _ in range(batch_size):
            verified(token)

    def handler_again(batch_size: int) -> None:
        handler = app.lambda_handler
        with contextlib.redirect_stdout(sink):
            for _ in range(batch_size):
                handler(event, context)

    authorizer.verified_claims(token)  # seen once: cached from here on
    hits_before = cache.hits
    again = side_by_side(
        [
            Contender("jwt.decode", decode_same),
            Contender("verification, token seen before", cached_step),
            Contender("authorizer handler, token seen before", handler_again),
        ],
        rounds=rounds,
        batch=batch * 4,
    )
    if cache.hits - hits_before < rounds * batch * 4:
        raise RuntimeError("the repeated token was not served from the claims cache")

    import statistics

    def us(samples: dict[str, list[float]], name: str) -> str:
        return f"{statistics.median(samples[name]):.1f}"

    rows_first = []
    for name, label in [
        ("cryptography verify", "raw `cryptography` RS256 verify (the floor)"),
        ("jwt.decode", "PyJWT `jwt.decode`, preloaded key"),
        ("joserfc", "joserfc `jwt.decode` + claims registry"),
        ("jwcrypto", "jwcrypto `JWT(check_claims=...)`"),
        ("python-jose", "python-jose `jwt.decode`"),
        ("tokencore verify", "tokencore `verify_access_token` alone"),
        ("authorizer handler", "**authorizer handler, event in → answer out**"),
    ]:
        rows_first.append(
            [
                label,
                us(first_sight, name),
                spread(first_sight[name]),
                f"{median_ratio(first_sight, name, 'jwt.decode'):.2f}x",
                f"{median_ratio(first_sight, name, 'cryptography verify'):.2f}x",
            ]
        )
    handler_vs = {
        peer: median_ratio(first_sight, "authorizer handler", peer)
        for peer in ("cryptography verify", "joserfc", "jwcrypto", "python-jose")
    }
    rows_again = [
        [
            label,
            us(again, name),
            spread(again[name]),
            f"{median_ratio(again, name, 'jwt.decode'):.2f}x",
        ]
        for name, label in [
            ("jwt.decode", "PyJWT `jwt.decode`, same token"),
            ("verification, token seen before", "**verification step, `ClaimsCache` hit**"),
            ("authorizer handler, token seen before", "authorizer handler, cache hit"),
        ]
    ]
    lines = [
        "### Hot path (warm container, RS256 2048-bit, an HTTP API event)",
        "",
        f"First sight: {POOL} distinct tokens, the claims cache cleared before each batch "
        f"(0 hits); {rounds} interleaved rounds of {batch} calls; µs per call (median, IQR).",
        "",
        table(["contender", "µs", "IQR", "ratio to jwt.decode", "ratio to raw verify"], rows_first),
        "",
        "The handler against each peer: "
        + ", ".join(f"{ratio:.2f}x {peer}" for peer, ratio in handler_vs.items())
        + ".",
        "",
        f"Seen before: one token, {rounds} rounds of {batch * 4} calls.",
        "",
        table(["contender", "µs", "IQR", "ratio to jwt.decode"], rows_again),
    ]
    budgets = [
        Budget(
            "1a",
            "authorizer fast path, first sight: whole handler ÷ raw `cryptography` verify",
            median_ratio(first_sight, "authorizer handler", "cryptography verify"),
            2.0,
        ),
        Budget(
            "1b",
            "authorizer fast path, first sight: whole handler ÷ `jwt.decode`",
            median_ratio(first_sight, "authorizer handler", "jwt.decode"),
            0.5,
        ),
        Budget(
            "2",
            "same token again: whole handler on a `ClaimsCache` hit ÷ `jwt.decode`",
            median_ratio(again, "authorizer handler, token seen before", "jwt.decode"),
            0.35,
            note="verification step alone on a hit: "
            f"{median_ratio(again, 'verification, token seen before', 'jwt.decode'):.2f}x",
        ),
    ]
    lines += ["", *_other_algorithms(rounds, batch, context, sink)]
    return lines, budgets


def _other_algorithms(rounds: int, batch: int, context: Any, sink: io.TextIOBase) -> list[str]:
    """ES256 and EdDSA: the whole handler on first sight against the raw verify and
    ``jwt.decode`` of the same tokens, each in its own container (a Runtime per key)."""
    rows = [_one_algorithm(alg, rounds, batch, context, sink) for alg in ("ES256", "EdDSA")]
    return [
        "Other access-token algorithms, first sight (no budget; same rounds, µs per call):",
        "",
        table(
            [
                "alg",
                "raw verify µs",
                "`jwt.decode` µs",
                "handler µs",
                "handler ÷ raw",
                "handler ÷ `jwt.decode`",
            ],
            rows,
        ),
    ]


def _one_algorithm(
    alg: str, rounds: int, batch: int, context: Any, sink: io.TextIOBase
) -> list[str]:
    import statistics

    import jwt
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    from tokencore.config import reset_settings
    from tokencore.jose.codec import b64url_decode
    from tokencore.runtime import Runtime, set_runtime

    fixture = make_fixture(pool=POOL, alg=alg)
    os.environ["PUBLIC_JWKS"] = fixture.jwks_json
    os.environ["ACCESS_TOKEN_ALG"] = alg
    reset_settings()
    set_runtime(Runtime())
    from functions.authorizer import app

    tokens, events, public_key = fixture.tokens, fixture.events, fixture.public_key
    split = []
    for token in tokens:
        head, payload, signature = token.split(".")
        raw = b64url_decode(signature)
        if alg == "ES256":  # JOSE's r || s, as cryptography's DER
            half = len(raw) // 2
            raw = encode_dss_signature(
                int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
            )
        split.append((f"{head}.{payload}".encode("ascii"), raw))
    position = [0]

    def cycling(batch_size: int) -> list[int]:
        start = position[0]
        position[0] = (start + batch_size) % POOL
        return [(start + i) % POOL for i in range(batch_size)]

    extra = (ec.ECDSA(hashes.SHA256()),) if alg == "ES256" else ()

    def floor(batch_size: int) -> None:
        for i in cycling(batch_size):
            data, signature = split[i]
            public_key.verify(signature, data, *extra)

    def decode(batch_size: int) -> None:
        for i in cycling(batch_size):
            jwt.decode(tokens[i], public_key, algorithms=[alg], audience=AUDIENCE, issuer=ISSUER)

    def handler(batch_size: int) -> None:
        run = app.lambda_handler
        with contextlib.redirect_stdout(sink):
            for i in cycling(batch_size):
                run(events[i], context)

    cache = app._authorizer().claims_cache
    with contextlib.redirect_stdout(sink):
        if app.lambda_handler(events[0], context).get("isAuthorized") is not True:
            raise RuntimeError(f"the authorizer did not allow the {alg} benchmark token")
    floor(3)
    decode(3)
    samples = side_by_side(
        [
            Contender("raw", floor),
            Contender("jwt.decode", decode),
            Contender("handler", handler, cache.clear if cache is not None else None),
        ],
        rounds=rounds,
        batch=batch,
    )
    return [
        alg,
        f"{statistics.median(samples['raw']):.1f}",
        f"{statistics.median(samples['jwt.decode']):.1f}",
        f"{statistics.median(samples['handler']):.1f}",
        f"{median_ratio(samples, 'handler', 'raw'):.2f}x",
        f"{median_ratio(samples, 'handler', 'jwt.decode'):.2f}x",
    ]


def _peers(fixture: Any, cycling: Any) -> list[Contender]:
    """The floor and the libraries, each over the same tokens as the handler."""
    import base64

    import jwt
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from jose import jwt as jose_jwt  # type: ignore[import-untyped]
    from jose.backends import RSAKey as JoseRSAKey  # type: ignore[import-untyped]
    from joserfc import jwt as joserfc_jwt
    from joserfc.jwk import RSAKey as JoserfcRSAKey
    from jwcrypto import jwk as jwcrypto_jwk  # type: ignore[import-untyped]
    from jwcrypto import jwt as jwcrypto_jwt

    from tokencore.tokens import VerifyOptions, verify_access_token

    tokens = fixture.tokens
    public_key = fixture.public_key
    split = []
    for token in tokens:
        head, payload, signature = token.split(".")
        split.append(
            (
                f"{head}.{payload}".encode("ascii"),
                base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)),
            )
        )
    pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()

    def raw(batch_size: int) -> None:
        for i in cycling(batch_size):
            signing_input, signature = split[i]
            public_key.verify(signature, signing_input, pkcs1, sha256)

    def pyjwt(batch_size: int) -> None:
        decode = jwt.decode
        for i in cycling(batch_size):
            decode(tokens[i], public_key, algorithms=["RS256"], audience=AUDIENCE, issuer=ISSUER)

    joserfc_key = JoserfcRSAKey.import_key(fixture.public_jwk)
    registry = joserfc_jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": ISSUER},
        aud={"essential": True, "value": AUDIENCE},
        exp={"essential": True},
    )

    def joserfc(batch_size: int) -> None:
        for i in cycling(batch_size):
            decoded = joserfc_jwt.decode(tokens[i], joserfc_key, algorithms=["RS256"])
            registry.validate(decoded.claims)

    jwcrypto_key = jwcrypto_jwk.JWK(**fixture.public_jwk)
    checks = {"iss": ISSUER, "aud": AUDIENCE, "exp": None}

    def jwcrypto(batch_size: int) -> None:
        for i in cycling(batch_size):
            jwcrypto_jwt.JWT(jwt=tokens[i], key=jwcrypto_key, algs=["RS256"], check_claims=checks)

    jose_key = JoseRSAKey(fixture.public_jwk, "RS256")

    def python_jose(batch_size: int) -> None:
        for i in cycling(batch_size):
            jose_jwt.decode(
                tokens[i], jose_key, algorithms=["RS256"], audience=AUDIENCE, issuer=ISSUER
            )

    from tokencore.runtime import get_runtime

    runtime = get_runtime()
    keys, options = runtime.access_keys, VerifyOptions.for_access(runtime.settings)

    def tokencore_verify(batch_size: int) -> None:
        now = runtime.clock.now
        for i in cycling(batch_size):
            verify_access_token(tokens[i], keys, options, now())

    # Every peer must accept the tokens before it is timed.
    for contender in (raw, pyjwt, joserfc, jwcrypto, python_jose, tokencore_verify):
        contender(3)
    return [
        Contender("cryptography verify", raw),
        Contender("jwt.decode", pyjwt),
        Contender("joserfc", joserfc),
        Contender("jwcrypto", jwcrypto),
        Contender("python-jose", python_jose),
        Contender("tokencore verify", tokencore_verify),
    ]
