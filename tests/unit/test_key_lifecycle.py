"""The key lifecycle as pure functions (keys.lifecycle): next -> active -> retired -> removed,
revocation, the numbers of the overlap, and the stamps the secret document and the published
JWKS carry. No AWS: the protocol around these is tested against moto in
tests/functional/test_rotation*.py."""

from __future__ import annotations

import dataclasses
import json

import pytest

from tokencore.config import Settings
from tokencore.errors import InvalidKeyMaterial
from tokencore.keys import KeySet, KeyStatus, PrivateKeyEntry, generate_key
from tokencore.keys.jwk import parse_private_jwk, private_jwk
from tokencore.keys.lifecycle import (
    ROTATION_SLACK_SECONDS,
    KeyTimes,
    LifecyclePolicy,
    NewKey,
    plan_revocation,
    plan_rotation,
    prunable_at,
)
from tokencore.ops.publishing import PublishedKey, parse_published, published_document

T0 = 1_800_000_000
SETTINGS = Settings()  # the defaults: access 900 s, leeway 30 s, key caches 300 s
ACCESS = LifecyclePolicy.for_purpose(SETTINGS, "access")
REFRESH = LifecyclePolicy.for_purpose(SETTINGS, "refresh")


@pytest.fixture
def pool() -> list[PrivateKeyEntry]:
    """Fresh ES256 keys for one test, handed out in order by ``factory``."""
    return [generate_key("ES256") for _ in range(16)]


def factory(pool: list[PrivateKeyEntry]) -> NewKey:
    def make(status: KeyStatus, now: int) -> PrivateKeyEntry:
        return dataclasses.replace(pool.pop(), status=status, created_at=now)

    return make


def key_set(*entries: PrivateKeyEntry) -> KeySet:
    return KeySet(entries, "access")


def status_of(keys: KeySet) -> dict[str, str]:
    return {entry.kid: entry.status.value for entry in keys.entries}


# --- the numbers ------------------------------------------------------------------------------


def test_the_overlap_numbers_with_the_default_settings() -> None:
    # A next key signs only once every verifier cache has expired since it was published.
    assert ACCESS.next_min_age_seconds == REFRESH.next_min_age_seconds == 300
    # A retired access key verifies for the token lifetime + leeway + the signers' cache.
    assert ACCESS.retired_keep_seconds == 900 + 30 + 300
    # A retired refresh key: refresh tokens live REFRESH_TOKEN_TTL_SECONDS (7 days).
    assert REFRESH.retired_keep_seconds == 604_800 + 30 + 300


def test_the_policy_follows_the_settings() -> None:
    settings = Settings.from_env(
        {
            "ACCESS_TOKEN_TTL_SECONDS": "60",
            "CLOCK_SKEW_LEEWAY_SECONDS": "5",
            "JWKS_CACHE_TTL_SECONDS": "2",
            "REFRESH_TOKEN_TTL_SECONDS": "3600",
            "SESSION_MAX_AGE_SECONDS": "7200",
        }
    )
    assert LifecyclePolicy.for_purpose(settings, "access") == LifecyclePolicy(2, 67)
    assert LifecyclePolicy.for_purpose(settings, "refresh") == LifecyclePolicy(2, 3607)


# --- rotation ---------------------------------------------------------------------------------


def test_a_rotation_promotes_next_retires_active_and_publishes_a_new_next(
    pool: list[PrivateKeyEntry],
) -> None:
    active = generate_key("ES256")
    following = dataclasses.replace(generate_key("ES256", "next"), created_at=T0)
    times = {active.kid: KeyTimes(T0), following.kid: KeyTimes(T0)}
    plan = plan_rotation(key_set(active, following), T0 + 300, ACCESS, factory(pool), times=times)
    assert plan.promoted == following.kid
    assert plan.retired == active.kid
    assert plan.added_next is not None
    assert plan.pruned == ()
    assert plan.deferred_until is None
    assert status_of(plan.key_set) == {
        following.kid: "active",
        plan.added_next: "next",
        active.kid: "retired",
    }
    retired = next(e for e in plan.key_set.entries if e.kid == active.kid)
    assert retired.retired_at == T0 + 300
    added = next(e for e in plan.key_set.entries if e.kid == plan.added_next)
    assert added.created_at == T0 + 300
    # Active first, then next, then retired, in the secret document too.
    assert [e.status for e in plan.key_set.entries] == [
        KeyStatus.ACTIVE,
        KeyStatus.NEXT,
        KeyStatus.RETIRED,
    ]


def test_a_next_key_published_less_than_the_cache_ttl_ago_waits(
    pool: list[PrivateKeyEntry],
) -> None:
    active, following = generate_key("ES256"), generate_key("ES256", "next")
    times = {active.kid: KeyTimes(T0), following.kid: KeyTimes(T0 + 100)}
    current = key_set(active, following)
    plan = plan_rotation(current, T0 + 399, ACCESS, factory(pool), times=times)
    assert plan.promoted is None
    assert plan.added_next is None  # the waiting next key stays the next key
    assert plan.deferred_until == T0 + 400
    assert status_of(plan.key_set) == status_of(current)
    # One second later it goes; --force does not wait.
    assert plan_rotation(current, T0 + 400, ACCESS, factory(pool), times=times).promoted
    forced = plan_rotation(current, T0 + 101, ACCESS, factory(pool), times=times, force=True)
    assert forced.promoted == following.kid


def test_a_next_key_missing_from_the_published_jwks_is_never_promoted(
    pool: list[PrivateKeyEntry],
) -> None:
    active, following = generate_key("ES256"), generate_key("ES256", "next")
    plan = plan_rotation(
        key_set(active, following), T0, ACCESS, factory(pool), times={active.kid: KeyTimes(T0)}
    )
    assert plan.promoted is None
    assert plan.deferred_reason == "the next key is not in the published JWKS yet"


def test_without_published_stamps_a_next_key_counts_as_published_long_ago(
    pool: list[PrivateKeyEntry],
) -> None:
    """A JWKS published before stamps existed: the key was there, since before we can tell."""
    active, following = generate_key("ES256"), generate_key("ES256", "next")
    times = {active.kid: KeyTimes(), following.kid: KeyTimes()}
    plan = plan_rotation(key_set(active, following), T0, ACCESS, factory(pool), times=times)
    assert plan.promoted == following.kid


def test_refresh_keys_count_from_their_own_created_at(pool: list[PrivateKeyEntry]) -> None:
    active = generate_key("HS256")
    following = dataclasses.replace(generate_key("HS256", "next"), created_at=T0)
    current = KeySet([active, following], "refresh")
    hs256 = _hs256_factory()
    assert plan_rotation(current, T0 + 299, REFRESH, hs256).deferred_until == T0 + 300
    plan = plan_rotation(current, T0 + 300, REFRESH, hs256)
    assert plan.promoted == following.kid
    assert plan.key_set.purpose == "refresh"
    assert all(entry.alg == "HS256" for entry in plan.key_set.entries)


def _hs256_factory() -> NewKey:
    def make(status: KeyStatus, now: int) -> PrivateKeyEntry:
        return dataclasses.replace(generate_key("HS256", status), created_at=now)

    return make


def test_the_first_rotation_of_a_set_without_next_only_adds_one(
    pool: list[PrivateKeyEntry],
) -> None:
    """A set made before next keys existed: nothing unseen is promoted; the next rotation
    promotes the key this one publishes."""
    active = generate_key("ES256")
    plan = plan_rotation(
        key_set(active), T0, ACCESS, factory(pool), times={active.kid: KeyTimes(T0)}
    )
    assert plan.promoted is None
    assert plan.key_set.active.kid == active.kid
    assert plan.added_next is not None
    assert status_of(plan.key_set)[plan.added_next] == "next"


def test_a_key_lives_next_then_active_then_retired_then_gone(pool: list[PrivateKeyEntry]) -> None:
    """Rotation after rotation, a period apart, with the published stamps a rotation would
    leave: each key is next for a period, active for a period, retired until its tokens have
    expired, and removed by the first rotation after that."""
    period = 90 * 86_400
    make = factory(pool)
    first = dataclasses.replace(generate_key("ES256"), created_at=T0)
    current = key_set(first, make(KeyStatus.NEXT, T0))
    published = {entry.kid: KeyTimes(T0) for entry in current.entries}
    history: dict[str, list[str]] = {}
    now = T0
    for _ in range(5):
        for entry in current.entries:
            history.setdefault(entry.kid, []).append(entry.status.value)
        now += period
        plan = plan_rotation(current, now, ACCESS, make, times=published)
        current = plan.key_set
        for entry in current.entries:  # the publications of setSecret and finishSecret
            old = published.get(entry.kid, KeyTimes(now))
            retired = old.retired_at or (now if entry.status is KeyStatus.RETIRED else None)
            published[entry.kid] = KeyTimes(old.published_at, retired)
    # Published (next) one period before it signs, active for one period, retired for one
    # (a period is far longer than its tokens live), then gone; the last ones are mid-life.
    lifecycle = ["next", "active", "retired"]
    assert history[first.kid] == ["active", "retired"]
    complete = [kid for kid, statuses in history.items() if statuses == lifecycle]
    assert len(complete) == 3
    for kid, statuses in history.items():
        if kid != first.kid:
            assert statuses == lifecycle[: len(statuses)], statuses
    assert len(current.entries) == 3  # steady state: active, next, one retired


def test_a_retired_key_stays_until_its_last_token_has_expired(pool: list[PrivateKeyEntry]) -> None:
    active, following = generate_key("ES256"), generate_key("ES256", "next")
    retired = generate_key("ES256").retire(T0)
    keep = ACCESS.retired_keep_seconds
    times = {
        active.kid: KeyTimes(T0),
        following.kid: KeyTimes(T0),
        retired.kid: KeyTimes(T0, T0 + 10),  # the JWKS showed it retired 10 s after
    }
    current = key_set(active, following, retired)
    assert prunable_at(retired, ACCESS, times) == T0 + 10 + keep
    kept = plan_rotation(current, T0 + 10 + keep - 1, ACCESS, factory(pool), times=times)
    assert retired.kid in status_of(kept.key_set)
    assert kept.pruned == ()
    gone = plan_rotation(current, T0 + 10 + keep, ACCESS, factory(pool), times=times)
    assert gone.pruned == (retired.kid,)
    assert retired.kid not in status_of(gone.key_set)


def test_without_a_publication_stamp_the_secrets_stamp_plus_the_slack_counts() -> None:
    retired = generate_key("HS256").retire(T0)
    assert prunable_at(retired, REFRESH, None) == (
        T0 + ROTATION_SLACK_SECONDS + REFRESH.retired_keep_seconds
    )


def test_a_retired_key_without_a_stamp_is_stamped_now_and_kept(
    pool: list[PrivateKeyEntry],
) -> None:
    """A version-1 document written before stamps: the key is kept one more rotation."""
    active = generate_key("ES256")
    following = generate_key("ES256", "next")
    old = generate_key("ES256", "retired")
    assert old.retired_at is None
    plan = plan_rotation(key_set(active, following, old), T0, ACCESS, factory(pool))
    assert plan.pruned == ()
    stamped = next(e for e in plan.key_set.entries if e.kid == old.kid)
    assert stamped.retired_at == T0


# --- revocation -------------------------------------------------------------------------------


def test_revoking_the_active_key_promotes_the_published_next_key(
    pool: list[PrivateKeyEntry],
) -> None:
    active, following = generate_key("ES256"), generate_key("ES256", "next")
    retired = generate_key("ES256").retire(T0)
    plan = plan_revocation(key_set(active, following, retired), active.kid, T0, factory(pool))
    assert plan.revoked == active.kid
    assert plan.revoked_status is KeyStatus.ACTIVE
    assert plan.active == plan.replacement == following.kid
    assert plan.replacement_was_published
    assert plan.added_next is not None
    assert active.kid not in status_of(plan.key_set)
    assert status_of(plan.key_set)[retired.kid] == "retired"


def test_revoking_the_only_key_makes_a_fresh_active_key(pool: list[PrivateKeyEntry]) -> None:
    active = generate_key("ES256")
    plan = plan_revocation(key_set(active), active.kid, T0, factory(pool))
    assert plan.replacement is not None
    assert not plan.replacement_was_published  # verifiers meet it as unknown and refetch
    assert plan.active == plan.replacement != active.kid
    assert sorted(status_of(plan.key_set).values()) == ["active", "next"]


@pytest.mark.parametrize("status", ["next", "retired"])
def test_revoking_another_key_leaves_the_active_key(
    pool: list[PrivateKeyEntry], status: str
) -> None:
    active, following = generate_key("ES256"), generate_key("ES256", "next")
    retired = generate_key("ES256").retire(T0)
    victim = following if status == "next" else retired
    plan = plan_revocation(key_set(active, following, retired), victim.kid, T0, factory(pool))
    assert plan.active == active.kid
    assert plan.replacement is None
    assert victim.kid not in status_of(plan.key_set)
    assert list(status_of(plan.key_set).values()).count("next") == 1


def test_revoking_an_unknown_kid_is_a_lookup_error(pool: list[PrivateKeyEntry]) -> None:
    with pytest.raises(LookupError):
        plan_revocation(key_set(generate_key("ES256")), "no-such-kid", T0, factory(pool))


# --- the stamps in the secret document and the published JWKS --------------------------------


def test_stamps_round_trip_through_the_secret_document() -> None:
    entry = dataclasses.replace(generate_key("ES256").retire(T0 + 5), created_at=T0)
    document = private_jwk(entry)
    assert document["created_at"] == T0
    assert document["retired_at"] == T0 + 5
    parsed = parse_private_jwk(json.loads(json.dumps(document)))
    assert (parsed.created_at, parsed.retired_at, parsed.status) == (
        T0,
        T0 + 5,
        KeyStatus.RETIRED,
    )
    # Without stamps (a version-1 document from before): no members, still valid.
    plain = private_jwk(generate_key("ES256"))
    assert "created_at" not in plain
    assert "retired_at" not in plain
    restored = KeySet.from_secret_document(json.dumps({"version": 1, "keys": [plain]}), "access")
    assert restored.active.created_at is None


@pytest.mark.parametrize("value", [True, -1, 1.5, "1800000000", 2**41])
def test_a_bad_stamp_is_refused(value: object) -> None:
    document = {**private_jwk(generate_key("ES256")), "created_at": value}
    with pytest.raises(InvalidKeyMaterial, match="created_at"):
        parse_private_jwk(document)
    with pytest.raises(InvalidKeyMaterial):
        dataclasses.replace(generate_key("ES256"), retired_at=value)  # type: ignore[arg-type]


def test_publishing_keeps_stamps_and_stamps_a_retirement_once() -> None:
    first, second = generate_key("ES256"), generate_key("ES256", "next")
    keys = [first.verification_key(), second.verification_key()]
    document, recorded = published_document(keys, T0)
    assert [(r.published_at, r.retired_at) for r in recorded] == [(T0, None), (T0, None)]
    assert [entry["status"] for entry in document["keys"]] == ["active", "next"]

    # Later: first retired, second active, a third published; stamps carried over by kid.
    third = generate_key("ES256", "next")
    later = [
        dataclasses.replace(first.verification_key(), status=KeyStatus.RETIRED),
        dataclasses.replace(second.verification_key(), status=KeyStatus.ACTIVE),
        third.verification_key(),
    ]
    document, recorded = published_document(later, T0 + 50, previous=recorded)
    stamps = {r.kid: (r.published_at, r.retired_at) for r in recorded}
    assert stamps == {
        first.kid: (T0, T0 + 50),
        second.kid: (T0, None),
        third.kid: (T0 + 50, None),
    }
    # Publishing the same again moves nothing: the retirement keeps its first stamp.
    _, again = published_document(later, T0 + 99, previous=recorded)
    assert {r.kid: (r.published_at, r.retired_at) for r in again} == stamps

    # The document parses back (the verifiers' strict parser) with its stamps.
    parsed = parse_published(json.dumps(document))
    assert {p.kid: (p.published_at, p.retired_at) for p in parsed} == stamps
    for jwk in document["keys"]:
        assert not {"d", "k", "p", "q"} & set(jwk)


def test_a_published_stamp_that_is_not_an_epoch_reads_as_absent() -> None:
    key = generate_key("ES256")
    document, _ = published_document([key.verification_key()], T0)
    document["keys"][0]["published_at"] = "yesterday"
    (parsed,) = parse_published(json.dumps(document))
    assert parsed == PublishedKey(parsed.key, None, None, None)
