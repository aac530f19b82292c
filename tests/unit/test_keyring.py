"""KeyRing and the pure key sources (tokencore.keys.keyring); the package's import rules."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.clock import ManualClock
from tokencore.errors import (
    ConfigError,
    InvalidKeyMaterial,
    KeyUnavailable,
    TokenCoreError,
    UnknownKey,
)
from tokencore.keys import (
    JwksDocumentSource,
    KeyRing,
    KeyStatus,
    StaticKeySource,
    VerificationKey,
    generate_key,
    jwks_document,
)

TTL = 300
INTERVAL = 10


class CountingSource:
    """A KeySource whose keys and failures the test controls, counting every load."""

    def __init__(self, keys: list[VerificationKey]) -> None:
        self.keys = list(keys)
        self.calls = 0
        self.failure: KeyUnavailable | None = None
        self._lock = threading.Lock()

    def load_verification_keys(self) -> list[VerificationKey]:
        with self._lock:
            self.calls += 1
        if self.failure is not None:
            raise self.failure
        return list(self.keys)


@pytest.fixture(scope="module")
def keys() -> list[VerificationKey]:
    return [
        generate_key("EdDSA").verification_key(),
        generate_key("EdDSA", KeyStatus.RETIRED).verification_key(),
        generate_key("EdDSA", KeyStatus.NEXT).verification_key(),
    ]


def _ring(
    source: CountingSource, clock: ManualClock, initial: list[VerificationKey] | None = None
) -> KeyRing:
    return KeyRing(source, clock, TTL, INTERVAL, initial=initial)


def test_keys_are_loaded_once_and_served_from_the_cache(
    keys: list[VerificationKey], clock: ManualClock
) -> None:
    source = CountingSource(keys)
    ring = _ring(source, clock)
    for _ in range(50):
        for key in keys:
            assert ring.get(key.kid) is key
        clock.advance(1)
    assert source.calls == 1


def test_initial_keys_need_no_source_call(keys: list[VerificationKey], clock: ManualClock) -> None:
    source = CountingSource(keys)
    ring = _ring(source, clock, initial=keys[:2])
    for key in keys[:2]:
        assert ring.get(key.kid) is key
    listed = ring.keys()
    assert [key.kid for key in listed] == [keys[0].kid, keys[1].kid]
    clock.advance(TTL - 1)
    assert ring.get(keys[0].kid) is keys[0]
    assert source.calls == 0
    # An unknown kid (here one the source has) goes to the source at once.
    assert ring.get(keys[2].kid) is keys[2]
    assert source.calls == 1


def test_a_key_dropped_from_the_source_stops_working_within_the_ttl(
    keys: list[VerificationKey], clock: ManualClock
) -> None:
    source = CountingSource(keys)
    ring = _ring(source, clock)
    assert ring.get(keys[1].kid) is keys[1]
    source.keys = [keys[0]]  # emergency revocation of keys[1] (and keys[2])
    clock.advance(TTL - 0.5)
    assert ring.get(keys[1].kid) is keys[1]  # still cached: the TTL is the bound
    clock.advance(0.5)
    with pytest.raises(UnknownKey):
        ring.get(keys[1].kid)
    assert source.calls == 2
    assert ring.get(keys[0].kid) is keys[0]
    remaining = ring.keys()
    assert [key.kid for key in remaining] == [keys[0].kid]


def test_an_unknown_kid_refetches_once_then_is_rate_limited(
    keys: list[VerificationKey], clock: ManualClock
) -> None:
    source = CountingSource(keys)
    ring = _ring(source, clock, initial=keys)
    for i in range(100):  # a flood of random kids
        with pytest.raises(UnknownKey):
            ring.get(f"random-{i}")
    assert source.calls == 1
    clock.advance(INTERVAL - 0.1)
    with pytest.raises(UnknownKey):
        ring.get("random-again")
    assert source.calls == 1
    clock.advance(0.1)
    with pytest.raises(UnknownKey):
        ring.get("random-again")
    assert source.calls == 2


def test_a_new_key_is_found_by_the_refetch(keys: list[VerificationKey], clock: ManualClock) -> None:
    source = CountingSource(keys[:1])
    ring = _ring(source, clock, initial=keys[:1])
    rotated = keys[2]
    source.keys = [keys[0], rotated]  # the issuer published a new key
    assert ring.get(rotated.kid) is rotated
    assert source.calls == 1


def test_malformed_kids_are_unknown_without_a_refetch(
    keys: list[VerificationKey], clock: ManualClock
) -> None:
    source = CountingSource(keys)
    ring = _ring(source, clock)
    for kid in ("", "../../etc/passwd", "a/b", "x" * 129, "a\nb", None, 42):
        with pytest.raises(UnknownKey):
            ring.get(kid)  # type: ignore[arg-type]
    assert source.calls == 0


def test_expired_cache_and_failing_source_fail_closed(
    keys: list[VerificationKey], clock: ManualClock
) -> None:
    source = CountingSource(keys)
    ring = _ring(source, clock)
    assert ring.get(keys[0].kid) is keys[0]
    source.failure = KeyUnavailable("throttled")
    clock.advance(TTL)
    with pytest.raises(KeyUnavailable) as caught:
        ring.get(keys[0].kid)  # no stale serving
    assert not isinstance(caught.value, UnknownKey)
    assert source.calls == 2
    # Waiting out the interval: no new source call, still unavailable (not "unknown").
    for kid in (keys[0].kid, "random"):
        with pytest.raises(KeyUnavailable):
            ring.get(kid)
    with pytest.raises(KeyUnavailable):
        ring.keys()
    assert source.calls == 2
    clock.advance(INTERVAL)
    source.failure = None
    assert ring.get(keys[0].kid) is keys[0]
    assert source.calls == 3


def test_a_key_fault_says_when_this_container_will_try_again(
    keys: list[VerificationKey], clock: ManualClock
) -> None:
    """Retry-After (the fault's retry_after_seconds) is the wait until the next source call,
    not a blind second: a client retrying sooner would meet the same refusal."""
    source = CountingSource(keys)
    source.failure = KeyUnavailable("throttled")
    ring = _ring(source, clock)
    with pytest.raises(KeyUnavailable) as caught:
        ring.get(keys[0].kid)
    assert caught.value.retry_after_seconds == INTERVAL
    clock.advance(3.5)
    with pytest.raises(KeyUnavailable) as caught:
        ring.get(keys[0].kid)
    assert caught.value.retry_after_seconds == 7  # 6.5 s left, rounded up
    clock.advance(6.4)
    with pytest.raises(KeyUnavailable) as caught:
        ring.keys()
    assert caught.value.retry_after_seconds == 1  # never less than a second
    assert source.calls == 1
    clock.advance(0.1)
    source.failure = None
    assert ring.get(keys[0].kid) is keys[0]


def test_keys_that_failed_to_refresh_stay_dropped_if_the_clock_steps_back(
    keys: list[VerificationKey], clock: ManualClock
) -> None:
    source = CountingSource(keys)
    ring = _ring(source, clock)
    ring.get(keys[0].kid)
    source.failure = KeyUnavailable("throttled")
    clock.advance(TTL)
    with pytest.raises(KeyUnavailable):
        ring.get(keys[0].kid)
    clock.advance(-60)  # the wall clock steps back (NTP): the old cache must not revive
    with pytest.raises(KeyUnavailable):
        ring.get(keys[0].kid)


def test_a_failed_refetch_for_an_unknown_kid_keeps_fresh_keys(
    keys: list[VerificationKey], clock: ManualClock
) -> None:
    source = CountingSource(keys)
    ring = _ring(source, clock, initial=keys[:1])
    source.failure = KeyUnavailable("access denied")
    with pytest.raises(KeyUnavailable):
        ring.get(keys[1].kid)
    assert ring.get(keys[0].kid) is keys[0]  # fresh cached keys still verify
    with pytest.raises(KeyUnavailable):  # we could not tell; a client should retry
        ring.get(keys[1].kid)
    assert source.calls == 1


def test_a_source_returning_an_invalid_list_is_a_fault(
    keys: list[VerificationKey], clock: ManualClock
) -> None:
    source = CountingSource([keys[0], keys[0]])
    ring = _ring(source, clock)
    with pytest.raises(InvalidKeyMaterial, match="more than once"):
        ring.get(keys[0].kid)
    source.failure = InvalidKeyMaterial("secret is not valid JSON")
    clock.advance(INTERVAL)
    with pytest.raises(InvalidKeyMaterial, match="not valid JSON"):
        ring.get(keys[0].kid)


def test_keys_refetches_when_expired_and_sorts_by_status(
    keys: list[VerificationKey], clock: ManualClock
) -> None:
    source = CountingSource(keys)
    ring = _ring(source, clock)
    listed = ring.keys()
    statuses = [key.status for key in listed]
    assert statuses == [KeyStatus.ACTIVE, KeyStatus.NEXT, KeyStatus.RETIRED]
    ring.keys()
    assert source.calls == 1
    clock.advance(TTL)
    ring.keys()
    assert source.calls == 2


def test_twenty_threads_asking_for_an_unknown_kid_cause_one_source_call(
    keys: list[VerificationKey], clock: ManualClock
) -> None:
    source = CountingSource(keys)
    ring = _ring(source, clock, initial=keys)
    barrier = threading.Barrier(20)
    outcomes: list[type[BaseException] | None] = []
    outcomes_lock = threading.Lock()

    def ask() -> None:
        barrier.wait()
        try:
            ring.get("unknown-kid")
            outcome: type[BaseException] | None = None
        except TokenCoreError as exc:
            outcome = type(exc)
        with outcomes_lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=ask) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes == [UnknownKey] * 20
    assert source.calls == 1


def test_twenty_threads_on_an_expired_cache_cause_one_source_call(
    keys: list[VerificationKey], clock: ManualClock
) -> None:
    source = CountingSource(keys)
    ring = _ring(source, clock, initial=keys)
    clock.advance(TTL)
    barrier = threading.Barrier(20)
    found: list[VerificationKey] = []

    def ask() -> None:
        barrier.wait()
        found.append(ring.get(keys[0].kid))

    threads = [threading.Thread(target=ask) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert found == [keys[0]] * 20
    assert source.calls == 1


def test_settings_are_checked(keys: list[VerificationKey], clock: ManualClock) -> None:
    source = CountingSource(keys)
    with pytest.raises(ConfigError):
        KeyRing(source, clock, 0, INTERVAL)
    with pytest.raises(ConfigError):
        KeyRing(source, clock, TTL, -1)
    with pytest.raises(InvalidKeyMaterial):
        KeyRing(source, clock, TTL, INTERVAL, initial=[keys[0], keys[0]])


def test_zero_interval_refetches_on_every_unknown_kid(
    keys: list[VerificationKey], clock: ManualClock
) -> None:
    source = CountingSource(keys)
    ring = KeyRing(source, clock, TTL, 0, initial=keys)
    for _ in range(3):
        with pytest.raises(UnknownKey):
            ring.get("unknown")
    assert source.calls == 3


# --- Pure sources -----------------------------------------------------------------------------


def test_static_key_source(keys: list[VerificationKey]) -> None:
    source = StaticKeySource(keys)
    assert source.load_verification_keys() == keys
    with pytest.raises(InvalidKeyMaterial):
        StaticKeySource([keys[0], keys[0]])


def test_jwks_document_source_from_json_text(
    keys: list[VerificationKey], clock: ManualClock
) -> None:
    text = json.dumps(jwks_document(keys))
    source = JwksDocumentSource(text)
    loaded = source.load_verification_keys()
    assert [key.kid for key in loaded] == [keys[0].kid, keys[2].kid, keys[1].kid]
    ring = KeyRing(source, clock, TTL, INTERVAL)
    assert ring.get(keys[1].kid).key == keys[1].key


def test_jwks_document_source_from_a_file_rereads_it(
    keys: list[VerificationKey], tmp_path: Path
) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks_document(keys[:1])))
    source = JwksDocumentSource(f" {path} ")
    assert [key.kid for key in source.load_verification_keys()] == [keys[0].kid]
    path.write_text(json.dumps(jwks_document(keys[1:])))
    assert [key.kid for key in source.load_verification_keys()] == [keys[2].kid, keys[1].kid]


def test_jwks_document_source_failures(tmp_path: Path) -> None:
    missing = JwksDocumentSource(str(tmp_path / "missing.json"))
    with pytest.raises(KeyUnavailable) as caught:
        missing.load_verification_keys()
    assert not isinstance(caught.value, InvalidKeyMaterial)
    assert "missing.json" not in caught.value.message
    with pytest.raises(InvalidKeyMaterial):
        JwksDocumentSource('{"keys": [}').load_verification_keys()
    with pytest.raises(InvalidKeyMaterial):
        JwksDocumentSource('{"keys": []}').load_verification_keys()
    with pytest.raises(ConfigError):
        JwksDocumentSource("  ")


# --- Package rules ----------------------------------------------------------------------------


def test_importing_the_keys_package_imports_neither_boto3_nor_pyjwt() -> None:
    """The authorizer's fast path imports tokencore.keys: no boto3 there, and keys/ never uses
    PyJWT. Even the AWS backend modules import boto3 only when they create a client."""
    code = (
        "import sys\n"
        "import tokencore.keys as keys\n"
        "import tokencore.keys.keyring, tokencore.keys.jwks, tokencore.keys.keyset\n"
        "assert keys.KmsSigner and keys.SecretsManagerKeySource and keys.create_key_set_secret\n"
        "assert keys.SsmJwksSource\n"
        "import tokencore.keys.kms, tokencore.keys.secretsmanager, tokencore.keys.ssm\n"
        "import tokencore.ops.publishing as publishing\n"
        "assert publishing.publish_public_jwks\n"
        "roots = {'boto3', 'botocore', 'jwt'}\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in roots)\n"
        "print(loaded)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


# --- refresh ahead (rule 4) ---------------------------------------------------------------------

AHEAD = 60


class QueuedJobs:
    """A background runner the test drives: jobs wait until ``run_all``."""

    def __init__(self) -> None:
        self.jobs: list[Callable[[], None]] = []

    def __call__(self, job: Callable[[], None]) -> None:
        self.jobs.append(job)

    def run_all(self) -> int:
        jobs, self.jobs = self.jobs, []
        for job in jobs:
            job()
        return len(jobs)


def _ahead_ring(source: CountingSource, clock: ManualClock, runner: QueuedJobs) -> KeyRing:
    return KeyRing(source, clock, TTL, INTERVAL, refresh_ahead_seconds=AHEAD, background=runner)


def test_a_key_served_near_expiry_queues_one_background_refetch_and_answers_at_once(
    keys: list[VerificationKey], clock: ManualClock
) -> None:
    source, runner = CountingSource(keys), QueuedJobs()
    ring = _ahead_ring(source, clock, runner)
    assert ring.get(keys[0].kid) is keys[0]
    clock.advance(TTL - AHEAD - 1)
    assert ring.get(keys[0].kid) is keys[0]
    assert runner.jobs == []  # not in the window yet
    clock.advance(1)
    for _ in range(100):  # answered from the snapshot, one refetch queued however many ask
        assert ring.get(keys[0].kid) is keys[0]
    assert ring.keys()
    assert source.calls == 1
    assert runner.run_all() == 1
    assert source.calls == 2
    # The new snapshot counts its TTL from the refetch: no request ever waited for the source.
    clock.advance(AHEAD + 1)
    assert ring.get(keys[0].kid) is keys[0]
    assert source.calls == 2
    assert runner.jobs == []


def test_refresh_ahead_keeps_the_revocation_bound(
    keys: list[VerificationKey], clock: ManualClock
) -> None:
    """A key removed at the source stops verifying within the TTL even if the background
    refetch never ran (a container that got no CPU), and at once when it did."""
    source, runner = CountingSource(keys), QueuedJobs()
    ring = _ahead_ring(source, clock, runner)
    assert ring.get(keys[1].kid) is keys[1]
    source.keys = [keys[0]]  # keys[1] revoked
    clock.advance(TTL - AHEAD)
    assert ring.get(keys[1].kid) is keys[1]  # queued, not run
    clock.advance(AHEAD)  # expired: the request path refetches, as rule 3 says
    with pytest.raises(UnknownKey):
        ring.get(keys[1].kid)
    assert runner.run_all() == 1  # the stale job finds a newer snapshot and does nothing
    assert source.calls == 2


def test_a_background_refetch_drops_a_revoked_key_before_expiry(
    keys: list[VerificationKey], clock: ManualClock
) -> None:
    source, runner = CountingSource(keys), QueuedJobs()
    ring = _ahead_ring(source, clock, runner)
    assert ring.get(keys[1].kid) is keys[1]
    source.keys = [keys[0]]
    clock.advance(TTL - AHEAD)
    ring.get(keys[0].kid)
    runner.run_all()
    with pytest.raises(UnknownKey):
        ring.get(keys[1].kid)


def test_a_failed_background_refetch_changes_nothing_and_is_retried_later(
    keys: list[VerificationKey], clock: ManualClock
) -> None:
    source, runner = CountingSource(keys), QueuedJobs()
    ring = _ahead_ring(source, clock, runner)
    ring.get(keys[0].kid)
    clock.advance(TTL - AHEAD)
    source.failure = KeyUnavailable("source down")
    ring.get(keys[0].kid)
    runner.run_all()
    assert source.calls == 2
    assert ring.get(keys[0].kid) is keys[0]  # still fresh: served, and no new job yet
    assert runner.jobs == []
    clock.advance(INTERVAL)  # the rate limit has passed: the next request queues another
    source.failure = None
    assert ring.get(keys[0].kid) is keys[0]
    assert runner.run_all() == 1
    assert source.calls == 3
    clock.advance(TTL - AHEAD - 1)  # counted from the successful refetch
    assert ring.get(keys[0].kid) is keys[0]
    assert source.calls == 3


def test_a_runner_that_cannot_start_falls_back_to_the_expiry_refetch(
    keys: list[VerificationKey], clock: ManualClock
) -> None:
    source = CountingSource(keys)

    def no_threads(job: Callable[[], None]) -> None:
        raise RuntimeError("can't start new thread")

    ring = KeyRing(source, clock, TTL, INTERVAL, refresh_ahead_seconds=AHEAD, background=no_threads)
    ring.get(keys[0].kid)
    clock.advance(TTL - 1)
    assert ring.get(keys[0].kid) is keys[0]
    clock.advance(1)
    assert ring.get(keys[0].kid) is keys[0]
    assert source.calls == 2


def test_the_default_runner_refetches_in_a_thread(
    keys: list[VerificationKey], clock: ManualClock
) -> None:
    class SignallingSource(CountingSource):
        def __init__(self, keys: list[VerificationKey]) -> None:
            super().__init__(keys)
            self.loaded = threading.Event()

        def load_verification_keys(self) -> list[VerificationKey]:
            loaded = super().load_verification_keys()
            if self.calls == 2:
                self.loaded.set()
            return loaded

    source = SignallingSource(keys)
    ring = KeyRing(source, clock, TTL, INTERVAL, refresh_ahead_seconds=AHEAD)
    ring.get(keys[0].kid)
    clock.advance(TTL - AHEAD)
    assert ring.get(keys[0].kid) is keys[0]
    assert source.loaded.wait(60)  # a hang bound, not a speed assertion
