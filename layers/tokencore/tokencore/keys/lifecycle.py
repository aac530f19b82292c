"""The key lifecycle, as pure functions of a key set and the time: next -> active -> retired ->
removed, and emergency revocation. The I/O around them is ``ops.rotation`` (Secrets Manager)
and ``ops.kmsrotation`` (KMS); docs/keys.md ("The lifecycle", "The timeline") has the steps and
the numbers.

A rotation (``plan_rotation``) prunes retired keys whose last token has expired, promotes the
``next`` key only once every verifier cache has seen it (else defers, and says until when), and
adds a new ``next`` key: so a key is published one rotation period before it signs. Revocation
(``plan_revocation``) removes a key at once and never leaves a set without an active key.

Times are whole epoch seconds, taken from the published JWKS's stamps when there is one (access
keys: exact), else from the set's own stamps (refresh keys), which a rotation writes when it
starts, up to ``ROTATION_SLACK_SECONDS`` early: a retired refresh key is kept that much longer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from tokencore.errors import InvalidKeyMaterial
from tokencore.jose.algorithms import KeyPurpose
from tokencore.keys.jwk import PrivateKeyEntry
from tokencore.keys.keyset import KeySet
from tokencore.keys.model import KeyStatus

if TYPE_CHECKING:
    from tokencore.config import Settings

# The longest a rotation may take from its first step (which stamps the new set) to its last
# (which makes it current). Rotation steps run back to back, each bounded by the function's
# timeout; ops.rotation abandons a pending set older than this.
ROTATION_SLACK_SECONDS = 900

NewKey = Callable[[KeyStatus, int], PrivateKeyEntry]


@dataclass(frozen=True, slots=True)
class LifecyclePolicy:
    """How long keys wait before signing and keep verifying after (seconds).

    * ``next_min_age_seconds``: a next key is promoted only after verifiers have had this long to
      see it: ``JWKS_CACHE_TTL_SECONDS``, the longest any verifier trusts a cached key list.
    * ``retired_keep_seconds``: a retired key is removed only this long after it stopped being the
      active key: the longest lifetime of a token it signed (``ACCESS_TOKEN_TTL_SECONDS``, or for
      refresh tokens ``REFRESH_TOKEN_TTL_SECONDS``: each refresh mints a new one), plus
      ``CLOCK_SKEW_LEEWAY_SECONDS`` (verifiers accept that much past ``exp``), plus
      ``JWKS_CACHE_TTL_SECONDS`` (a warm signer re-reads its key set at most that often, so it
      may sign with the retired key that long after the rotation).
    """

    next_min_age_seconds: int
    retired_keep_seconds: int

    @classmethod
    def for_purpose(cls, settings: Settings, purpose: KeyPurpose) -> LifecyclePolicy:
        lifetime = (
            settings.access_token_ttl_seconds
            if purpose == "access"
            else settings.refresh_token_ttl_seconds
        )
        cache = settings.jwks_cache_ttl_seconds
        return cls(
            next_min_age_seconds=cache,
            retired_keep_seconds=lifetime + settings.clock_skew_leeway_seconds + cache,
        )


@dataclass(frozen=True, slots=True)
class KeyTimes:
    """What the published JWKS knows about one kid (access keys): when it was first published,
    and when a publication first showed it retired."""

    published_at: int | None = None
    retired_at: int | None = None


@dataclass(frozen=True, slots=True)
class RotationPlan:
    key_set: KeySet
    promoted: str | None  # the kid that became active
    retired: str | None  # the kid that stopped being active
    added_next: str | None
    pruned: tuple[str, ...]
    deferred_until: int | None  # promotion waits until then (the next key is too new)
    deferred_reason: str | None


@dataclass(frozen=True, slots=True)
class RevocationPlan:
    key_set: KeySet
    revoked: str
    revoked_status: KeyStatus
    active: str  # the active kid afterwards
    replacement: str | None  # the key that became active because the active key was revoked
    replacement_was_published: bool  # it was the next key (verifiers already know it)
    added_next: str | None


def published_since(
    entry: PrivateKeyEntry, times: Mapping[str, KeyTimes] | None
) -> tuple[int | None, bool]:
    """(since when verifiers can see ``entry``, whether it is visible at all).

    With a published JWKS (``times`` given), a kid that is not in it is not visible; one
    published before stamps existed counts as visible long ago. Without one (refresh keys,
    which verifiers read from the secret itself) a key counts as visible from its
    ``created_at``: a rotation makes its set current seconds later. (If that rotation stalled
    and another one follows within the cache TTL, verifiers meet the new kid as unknown and
    refetch once: the fallback every rotation has anyway.)"""
    if times is not None:
        known = times.get(entry.kid)
        if known is None:
            return None, False
        return known.published_at, True
    return entry.created_at, True


def retired_since(entry: PrivateKeyEntry, times: Mapping[str, KeyTimes] | None) -> int | None:
    """Since when ``entry`` has certainly not been the active key in any current set."""
    if times is not None:
        known = times.get(entry.kid)
        if known is not None and known.retired_at is not None:
            return known.retired_at
    if entry.retired_at is None:
        return None
    return entry.retired_at + ROTATION_SLACK_SECONDS


def prunable_at(
    entry: PrivateKeyEntry, policy: LifecyclePolicy, times: Mapping[str, KeyTimes] | None
) -> int | None:
    """When a retired key may be removed (None: not retired, or retired time unknown)."""
    since = retired_since(entry, times)
    if entry.status is not KeyStatus.RETIRED or since is None:
        return None
    return since + policy.retired_keep_seconds


def promotable_at(
    entry: PrivateKeyEntry, policy: LifecyclePolicy, times: Mapping[str, KeyTimes] | None
) -> int | None:
    """When a next key may be promoted (None: at once, its publication is old or unknown);
    raises nothing: an unpublished key is reported by ``plan_rotation``."""
    since, _ = published_since(entry, times)
    return None if since is None else since + policy.next_min_age_seconds


def _ordered(entries: list[PrivateKeyEntry]) -> list[PrivateKeyEntry]:
    order = {KeyStatus.ACTIVE: 0, KeyStatus.NEXT: 1, KeyStatus.RETIRED: 2}
    return sorted(entries, key=lambda entry: order[entry.status])


def plan_rotation(
    current: KeySet,
    now: int,
    policy: LifecyclePolicy,
    new_key: NewKey,
    *,
    times: Mapping[str, KeyTimes] | None = None,
    force: bool = False,
) -> RotationPlan:
    """The key set after one rotation at ``now`` (see the module doc). ``new_key(status, now)``
    makes the key to add; ``times`` is what the published JWKS knows (access keys only);
    ``force`` promotes a next key however recently it was published (verifiers then meet its kid
    as unknown and refetch once: safe, but it leans on their refetch rate limit)."""
    entries = [
        entry.retire(now)
        if entry.status is KeyStatus.RETIRED and entry.retired_at is None
        else entry
        for entry in current.entries
    ]
    pruned: list[str] = []
    kept: list[PrivateKeyEntry] = []
    for entry in entries:
        until = prunable_at(entry, policy, times)
        if until is not None and now >= until:
            pruned.append(entry.kid)
        else:
            kept.append(entry)
    entries = kept

    promoted = retired = None
    deferred_until: int | None = None
    deferred_reason: str | None = None
    candidates = [entry for entry in entries if entry.status is KeyStatus.NEXT]
    if candidates:
        candidate = candidates[0]
        since, visible = published_since(candidate, times)
        ready_at = None if since is None else since + policy.next_min_age_seconds
        if not force and not visible:
            deferred_reason = "the next key is not in the published JWKS yet"
        elif not force and ready_at is not None and now < ready_at:
            deferred_until = ready_at
            deferred_reason = "verifiers may not have seen the next key yet"
        else:
            promoted, retired = candidate.kid, current.active.kid
            entries = [
                replace(entry, status=KeyStatus.ACTIVE)
                if entry.kid == promoted
                else entry.retire(now)
                if entry.kid == retired
                else entry
                for entry in entries
            ]

    added_next = None
    if not any(entry.status is KeyStatus.NEXT for entry in entries):
        fresh = new_key(KeyStatus.NEXT, now)
        if fresh.kid in {entry.kid for entry in entries}:
            raise InvalidKeyMaterial("a generated key has the kid of a key in the set")
        entries.append(fresh)
        added_next = fresh.kid
    return RotationPlan(
        key_set=KeySet(_ordered(entries), current.purpose),
        promoted=promoted,
        retired=retired,
        added_next=added_next,
        pruned=tuple(pruned),
        deferred_until=deferred_until,
        deferred_reason=deferred_reason,
    )


def plan_revocation(current: KeySet, kid: str, now: int, new_key: NewKey) -> RevocationPlan:
    """The key set without ``kid`` (see the module doc). Raises LookupError if it has no such
    key."""
    revoked = next((entry for entry in current.entries if entry.kid == kid), None)
    if revoked is None:
        raise LookupError(kid)
    entries = [entry for entry in current.entries if entry.kid != kid]
    replacement = None
    replacement_was_published = False
    if revoked.status is KeyStatus.ACTIVE:
        candidate = next((entry for entry in entries if entry.status is KeyStatus.NEXT), None)
        if candidate is not None:
            replacement, replacement_was_published = candidate.kid, True
            entries = [
                replace(entry, status=KeyStatus.ACTIVE) if entry.kid == candidate.kid else entry
                for entry in entries
            ]
        else:
            fresh = new_key(KeyStatus.ACTIVE, now)
            replacement = fresh.kid
            entries.append(fresh)
    added_next = None
    if not any(entry.status is KeyStatus.NEXT for entry in entries):
        fresh = new_key(KeyStatus.NEXT, now)
        entries.append(fresh)
        added_next = fresh.kid
    key_set = KeySet(_ordered(entries), current.purpose)
    return RevocationPlan(
        key_set=key_set,
        revoked=kid,
        revoked_status=revoked.status,
        active=key_set.active.kid,
        replacement=replacement,
        replacement_was_published=replacement_was_published,
        added_next=added_next,
    )


def new_key_factory(alg: str) -> NewKey:
    """``new_key`` for ``plan_*``: a fresh ``alg`` key stamped ``created_at = now``."""
    from tokencore.keys.local import generate_key

    def make(status: KeyStatus, now: int) -> PrivateKeyEntry:
        return replace(generate_key(alg, status), created_at=now)

    return make
