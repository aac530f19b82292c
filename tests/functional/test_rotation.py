"""The rotation of the key sets in Secrets Manager (ops.rotation, functions/rotation) against
moto, step by step as Secrets Manager drives it (tests/functional/rotation_support.py starts the
rotation; moto cannot invoke the function), including failures in the middle and retries, the
test-only invocation Secrets Manager makes when a schedule is created, tokenctl's rotate-in-one-go
and emergency revocation. What verifiers and signers see while it happens is
test_rotation_runtime.py; the KMS backend is test_rotation_kms.py."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import ClientError

from functions.rotation import app
from tests.functional.conftest import fresh_aws
from tests.functional.rotation_support import (
    T0,
    KeyStack,
    make_key_stack,
    private_values,
)
from tokencore.errors import KeyRotationFailed, KeyUnavailable
from tokencore.keys import KeyRing, KeyStatus
from tokencore.keys.lifecycle import ROTATION_SLACK_SECONDS
from tokencore.keys.secretsmanager import SecretsManagerKeySource
from tokencore.ops.rotation import AWSCURRENT, AWSPENDING
from tokencore.runtime import Parts, Runtime, set_runtime
from tokencore.tokens import (
    RefreshClaims,
    VerifyOptions,
    mint_refresh_token,
    new_token_id,
    verify_refresh_token,
)

CACHE = 300  # JWKS_CACHE_TTL_SECONDS (the default): a next key waits this long
ACCESS_KEEP = 900 + 30 + 300  # token lifetime + leeway + the signers' cache


@pytest.fixture
def keys() -> Iterator[KeyStack]:
    with fresh_aws():
        stack = make_key_stack()
        # The function's container, with our clock and clients.
        set_runtime(Runtime(stack.settings, stack.clock, Parts(key_rotation=stack.rotation)))
        try:
            yield stack
        finally:
            set_runtime(None)


@dataclass(frozen=True)
class Context:
    function_name: str = "tokencore-key-rotation"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:rotation"
    aws_request_id: str = "8d4c2d0e-0000-4000-8000-000000000008"


def invoke(keys: KeyStack, step: str, purpose: str, token: str) -> None:
    """The rotation function, with the event Secrets Manager sends."""
    secret = keys.secrets.describe_secret(SecretId=keys.secret_id(purpose))  # type: ignore[arg-type]
    event = {"Step": step, "SecretId": secret["ARN"], "ClientRequestToken": token}
    app.lambda_handler(event, Context())  # type: ignore[arg-type]


def make_current(keys: KeyStack, document: dict[str, Any]) -> str:
    """A new current version of the access secret, made outside the rotation (labels moved
    explicitly: moto's PutSecretValue does not move AWSCURRENT off a version that
    UpdateSecretVersionStage made current)."""
    secret_id = keys.secret_id("access")
    current = next(v for v, s in keys.versions("access").items() if AWSCURRENT in s)
    version = keys.secrets.put_secret_value(
        SecretId=secret_id, SecretString=json.dumps(document), VersionStages=["edit"]
    )["VersionId"]
    keys.secrets.update_secret_version_stage(
        SecretId=secret_id,
        VersionStage=AWSCURRENT,
        MoveToVersionId=version,
        RemoveFromVersionId=current,
    )
    return str(version)


class Failing:
    """Makes one AWS operation fail (as throttling would) for the next ``times`` calls."""

    def __init__(self, client: Any, operation: str, times: int = 1) -> None:
        self.client, self.event, self.left = client, f"before-call.*.{operation}", times
        client.meta.events.register(self.event, self._fail)

    def _fail(self, **_: Any) -> None:
        if self.left > 0:
            self.left -= 1
            raise ClientError({"Error": {"Code": "ThrottlingException"}}, "call")

    def stop(self) -> None:
        self.client.meta.events.unregister(self.event, self._fail)


# --- the four steps -----------------------------------------------------------------------


def test_the_four_steps_promote_next_publish_first_and_retire_the_old_key(
    keys: KeyStack,
) -> None:
    before = keys.current("access")
    old_active = before.active.kid
    (old_next,) = [e.kid for e in before.entries if e.status is KeyStatus.NEXT]
    versions_before = keys.versions("access")
    keys.clock.advance(90 * 86_400)

    token = keys.start_rotation("access")
    invoke(keys, "createSecret", "access", token)
    # The pending set: the old next key active, the old active retired, a new next key.
    pending = keys.pending_document("access", token)
    statuses = {jwk["kid"]: jwk["status"] for jwk in pending["keys"]}
    (new_next,) = [kid for kid, status in statuses.items() if status == "next"]
    assert statuses == {old_next: "active", new_next: "next", old_active: "retired"}
    assert pending["rotation"]["from_version"] in versions_before
    # Nothing a signer or a verifier reads has changed yet.
    assert keys.current("access").active.kid == old_active
    assert keys.published_statuses() == {old_active: "active", old_next: "next"}

    invoke(keys, "setSecret", "access", token)
    # Every key of the pending set is published before the set becomes current, with the
    # statuses of now (the old active key still signs).
    assert keys.published_statuses() == {
        old_active: "active",
        old_next: "next",
        new_next: "next",
    }
    assert keys.current("access").active.kid == old_active

    invoke(keys, "testSecret", "access", token)
    assert keys.current("access").active.kid == old_active

    keys.clock.advance(3)
    invoke(keys, "finishSecret", "access", token)
    after = keys.versions("access")
    assert after[token] == [AWSCURRENT]
    assert [stages for stages in after.values() if AWSPENDING in stages] == []
    assert any("AWSPREVIOUS" in stages for stages in after.values())
    current = keys.current("access")
    assert current.active.kid == old_next
    published = {entry.kid: entry for entry in keys.published()}
    assert {kid: e.status.value for kid, e in published.items()} == {
        old_next: "active",
        new_next: "next",
        old_active: "retired",
    }
    # Retired from the publication after the set became current (never earlier).
    assert published[old_active].retired_at == T0 + 90 * 86_400 + 3
    assert published[new_next].published_at == T0 + 90 * 86_400


def test_a_key_is_published_a_whole_period_before_it_signs_and_removed_after_its_tokens(
    keys: KeyStack,
) -> None:
    """Rotation after rotation: next, then active, then retired, then gone; the published
    JWKS always holds every key the secret holds, and a key signs only after it has been
    published for at least the verifiers' cache TTL (here: a whole period)."""
    period = 90 * 86_400
    first = keys.current("access").active.kid
    seen: dict[str, list[str]] = {}
    became_active: dict[str, int] = {}
    for _ in range(4):
        current = keys.current("access")
        published = {entry.kid: entry for entry in keys.published()}
        for entry in current.entries:
            assert entry.kid in published  # nothing in the secret is unknown to verifiers
            seen.setdefault(entry.kid, []).append(entry.status.value)
            if entry.status is KeyStatus.ACTIVE and entry.kid not in became_active:
                became_active[entry.kid] = int(keys.clock.now())
                published_at = published[entry.kid].published_at
                assert published_at is not None
                if entry.kid != first:
                    assert keys.clock.now() - published_at >= period
        keys.clock.advance(period)
        keys.rotate("access")
    lives = [statuses for kid, statuses in seen.items() if kid != first]
    assert ["next", "active", "retired"] in lives
    assert seen[first] == ["active", "retired"]
    assert first not in {entry.kid for entry in keys.current("access").entries}  # pruned
    assert first not in keys.published_statuses()


def test_a_retired_key_is_removed_only_once_its_tokens_have_expired(keys: KeyStack) -> None:
    keys.clock.advance(CACHE)
    old = keys.current("access").active.kid
    keys.rotate("access")
    retired_at = next(e.retired_at for e in keys.published() if e.kid == old)
    assert retired_at is not None

    # The next rotation, just before the overlap ends, must keep it (and --force promotion).
    keys.clock.set(retired_at + ACCESS_KEEP - 1)
    keys.rotation.rotate("access", force=True)
    assert old in keys.published_statuses()
    assert old in {entry.kid for entry in keys.current("access").entries}

    keys.clock.set(retired_at + ACCESS_KEEP)
    report = keys.rotation.rotate("access", force=True)
    assert old in report["pruned_kids"]
    assert old not in keys.published_statuses()
    assert old not in {entry.kid for entry in keys.current("access").entries}


def test_a_next_key_younger_than_the_cache_ttl_is_not_promoted(keys: KeyStack) -> None:
    keys.clock.advance(CACHE)
    keys.rotate("access")  # promotes KeySetup's next key, publishes a new one at this time
    promoted = keys.current("access").active.kid

    # Secrets Manager runs another rotation at once: it completes, but does not promote.
    keys.clock.advance(CACHE - 1)
    token = keys.rotate("access")
    assert keys.current("access").active.kid == promoted
    record = json.loads(
        keys.secrets.get_secret_value(SecretId=keys.secret_id("access"), VersionId=token)[
            "SecretString"
        ]
    )["rotation"]
    assert record["promoted"] is None
    assert record["deferred_until"] == T0 + 2 * CACHE
    assert "not have seen" in record["deferred_reason"]

    # tokenctl rotate-keys says so, and writes nothing.
    versions = keys.versions("access")
    report = keys.rotation.rotate("access")
    assert report["changed"] is False
    assert report["promoted"] is False
    assert report["deferred_until"] == T0 + 2 * CACHE
    assert keys.versions("access") == versions

    keys.clock.advance(1)
    assert keys.rotation.rotate("access")["promoted"] is True


def test_the_refresh_set_rotates_the_same_way_and_old_refresh_tokens_keep_working(
    keys: KeyStack,
) -> None:
    settings = keys.settings
    old = keys.current("refresh")
    signer = old.signer()
    claims = RefreshClaims(
        issuer=settings.token_issuer,
        audience=settings.token_issuer,
        subject="user-1",
        session_id="session-1",
        token_id=new_token_id(),
        generation=3,
        issued_at=int(keys.clock.now()),
        expires_at=int(keys.clock.now() + settings.refresh_token_ttl_seconds),
    )
    token = mint_refresh_token(signer, claims).token
    published_before = keys.ssm.get_parameter(Name=settings.public_jwks_parameter)
    keys.clock.advance(CACHE)

    keys.rotate("refresh")

    current = keys.current("refresh")
    assert current.active.kid != old.active.kid
    assert {e.kid: e.status for e in current.entries}[old.active.kid] is KeyStatus.RETIRED
    # A refresh token signed by the previous key still verifies against the set (until it is
    # rotated itself: each refresh mints a new one with the new key).
    ring = KeyRing(
        SecretsManagerKeySource(settings.refresh_keys_secret_id, "refresh"), keys.clock, 300, 10
    )
    claims = verify_refresh_token(
        token, ring, VerifyOptions.for_refresh(settings), keys.clock.now()
    )
    assert claims.generation == 3
    # Refresh keys are never published.
    after = keys.ssm.get_parameter(Name=settings.public_jwks_parameter)
    assert after["Parameter"]["Value"] == published_before["Parameter"]["Value"]
    assert all(not kid.startswith("rt-") for kid in keys.published_statuses())


# --- failures in the middle, and retries -----------------------------------------------------


def test_a_failed_set_step_changes_nothing_and_a_retry_completes(keys: KeyStack) -> None:
    keys.clock.advance(CACHE)
    before = keys.current("access").active.kid
    published = keys.published_statuses()
    token = keys.start_rotation("access")
    invoke(keys, "createSecret", "access", token)

    failing = Failing(keys.ssm, "PutParameter")
    with pytest.raises(KeyUnavailable, match="ThrottlingException"):
        invoke(keys, "setSecret", "access", token)
    failing.stop()
    assert keys.current("access").active.kid == before
    assert keys.published_statuses() == published
    # testSecret refuses a set whose keys verifiers do not know yet.
    with pytest.raises(KeyRotationFailed, match="not in the published JWKS"):
        invoke(keys, "testSecret", "access", token)

    # Secrets Manager retries the rotation with the same token: each step carries on.
    for step in ("createSecret", "setSecret", "testSecret", "finishSecret"):
        invoke(keys, step, "access", token)
    assert keys.versions("access")[token] == [AWSCURRENT]
    assert keys.current("access").active.kid != before


def test_a_failure_inside_finish_is_completed_by_the_retry(keys: KeyStack) -> None:
    keys.clock.advance(CACHE)
    token = keys.start_rotation("access")
    for step in ("createSecret", "setSecret", "testSecret"):
        invoke(keys, step, "access", token)
    # AWSCURRENT moves, then removing AWSPENDING fails: the set is current already.
    calls: list[str] = []

    def second_call_fails(**kwargs: Any) -> None:
        calls.append("call")
        if len(calls) == 2:
            error = {"Error": {"Code": "InternalServiceError"}}
            raise ClientError(error, "UpdateSecretVersionStage")

    event = "before-call.secrets-manager.UpdateSecretVersionStage"
    keys.secrets.meta.events.register(event, second_call_fails)
    with pytest.raises(KeyUnavailable, match="InternalServiceError"):
        invoke(keys, "finishSecret", "access", token)
    keys.secrets.meta.events.unregister(event, second_call_fails)
    assert keys.versions("access")[token] == [AWSCURRENT, AWSPENDING]
    # The JWKS still shows the old statuses (every key is in it, so verifiers are fine).
    old_active = next(e.kid for e in keys.published() if e.status is KeyStatus.ACTIVE)
    assert keys.current("access").active.kid != old_active

    invoke(keys, "finishSecret", "access", token)
    assert keys.versions("access")[token] == [AWSCURRENT]
    assert keys.published_statuses()[old_active] == "retired"
    assert keys.published_statuses()[keys.current("access").active.kid] == "active"


def test_create_is_idempotent(keys: KeyStack) -> None:
    keys.clock.advance(CACHE)
    token = keys.start_rotation("access")
    invoke(keys, "createSecret", "access", token)
    first = keys.pending_document("access", token)
    keys.clock.advance(5)
    invoke(keys, "createSecret", "access", token)
    assert keys.pending_document("access", token) == first
    assert len(keys.versions("access")) == 2  # the current version and this one


def test_a_stale_pending_set_is_abandoned_by_finish(keys: KeyStack) -> None:
    keys.clock.advance(CACHE)
    before = keys.current("access").active.kid
    token = keys.start_rotation("access")
    for step in ("createSecret", "setSecret", "testSecret"):
        invoke(keys, step, "access", token)
    keys.clock.advance(ROTATION_SLACK_SECONDS + 1)
    with pytest.raises(KeyRotationFailed, match="too old; it was abandoned"):
        invoke(keys, "finishSecret", "access", token)
    assert keys.current("access").active.kid == before
    assert AWSPENDING not in keys.versions("access")[token]
    # A new rotation starts afresh.
    keys.rotate("access")
    assert keys.current("access").active.kid != before


def test_the_test_only_invocation_of_a_new_schedule_passes_and_changes_nothing(
    keys: KeyStack,
) -> None:
    """RotateImmediatelyOnUpdate: false. Secrets Manager copies the current value into an
    AWSPENDING version and runs testSecret alone, then removes it."""
    before = keys.current("access").to_secret_document()
    published = keys.published_statuses()
    token = keys.start_rotation("access", immediately=False)
    invoke(keys, "testSecret", "access", token)
    token_refresh = keys.start_rotation("refresh", immediately=False)
    invoke(keys, "testSecret", "refresh", token_refresh)
    assert keys.current("access").to_secret_document() == before
    assert keys.published_statuses() == published


def test_steps_refuse_what_is_not_a_rotation_of_our_secrets(keys: KeyStack) -> None:
    other = keys.secrets.create_secret(Name="someone-else", SecretString="{}")["ARN"]
    with pytest.raises(KeyRotationFailed, match="not one of the stack's key secrets"):
        keys.rotation.run_step("createSecret", other, "a" * 36)
    access = keys.secret_id("access")
    with pytest.raises(KeyRotationFailed, match="unknown rotation step"):
        keys.rotation.run_step("dropSecret", access, "a" * 36)
    with pytest.raises(KeyRotationFailed, match="does not exist"):
        keys.rotation.run_step("setSecret", access, "b" * 36)
    current = next(v for v, s in keys.versions("access").items() if AWSCURRENT in s)
    # Steps for a version that is already current are done already.
    keys.rotation.run_step("setSecret", access, current)
    keys.rotation.run_step("finishSecret", access, current)
    with pytest.raises(ValueError, match="no Step"):
        app.lambda_handler({"SecretId": access, "ClientRequestToken": "x"}, Context())  # type: ignore[arg-type]


def test_both_step_spellings_are_accepted(keys: KeyStack) -> None:
    keys.clock.advance(CACHE)
    token = keys.start_rotation("refresh")
    for step in ("create_secret", "set_secret", "test_secret", "finish_secret"):
        invoke(keys, step, "refresh", token)
    assert keys.versions("refresh")[token] == [AWSCURRENT]


# --- tokenctl rotate-keys: the same protocol in one go ---------------------------------------


def test_rotate_resumes_a_recent_unfinished_rotation(keys: KeyStack) -> None:
    keys.clock.advance(CACHE)
    token = keys.start_rotation("access")
    invoke(keys, "createSecret", "access", token)
    planned = keys.pending_document("access", token)["rotation"]

    report = keys.rotation.rotate("access")

    assert report["resumed"] is True
    assert report["version_id"] == token
    assert report["added_next_kid"] == planned["added_next"]
    assert keys.versions("access")[token] == [AWSCURRENT]


def test_rotate_abandons_a_stale_or_outdated_rotation(keys: KeyStack) -> None:
    keys.clock.advance(CACHE)
    token = keys.start_rotation("access")
    invoke(keys, "createSecret", "access", token)
    keys.clock.advance(ROTATION_SLACK_SECONDS + 1)
    report = keys.rotation.rotate("access")
    assert report["resumed"] is False
    assert report["version_id"] != token
    assert AWSPENDING not in keys.versions("access")[token]


def test_rotate_waits_for_a_rotation_secrets_manager_has_just_started(keys: KeyStack) -> None:
    token = keys.start_rotation("access")  # no value yet: the function is running it
    # The version's CreatedDate is moto's wall clock: the rotation's clock starts right there,
    # however long creating it took.
    (created,) = [
        version["CreatedDate"].timestamp()
        for version in keys.secrets.list_secret_version_ids(
            SecretId=keys.secret_id("access"), IncludeDeprecated=True
        )["Versions"]
        if version["VersionId"] == token
    ]
    keys.clock.set(created)
    with pytest.raises(KeyRotationFailed, match="in progress"):
        keys.rotation.rotate("access")
    assert keys.versions("access")[token] == [AWSPENDING]
    # One that never got a value and is older than a rotation can take is abandoned.
    keys.clock.advance(ROTATION_SLACK_SECONDS + 1)
    report = keys.rotation.rotate("access", force=True)
    assert report["version_id"] != token
    assert AWSPENDING not in keys.versions("access")[token]


# --- revocation ---------------------------------------------------------------------------


def test_revoking_the_active_access_key_removes_it_everywhere_at_once(keys: KeyStack) -> None:
    before = keys.current("access")
    victim = before.active.kid
    (following,) = [e.kid for e in before.entries if e.status is KeyStatus.NEXT]
    assert keys.rotation.find(victim) == "access"

    report = keys.rotation.revoke(victim, "access")

    assert report["revoked_kid"] == victim
    assert report["revoked_status"] == "active"
    assert report["active_kid"] == report["replacement_kid"] == following
    assert report["replacement_was_published"] is True
    assert report["bound_seconds"] == CACHE
    current = keys.current("access")
    assert current.active.kid == following
    assert victim not in {e.kid for e in current.entries}
    assert report["added_next_kid"] in {e.kid for e in current.entries}
    published = keys.published_statuses()
    assert victim not in published
    assert published[following] == "active"
    assert published[report["added_next_kid"]] == "next"
    assert keys.rotation.find(victim) is None
    with pytest.raises(LookupError):
        keys.rotation.revoke(victim, "access")


def test_revoking_a_refresh_key(keys: KeyStack) -> None:
    victim = keys.current("refresh").active.kid
    assert keys.rotation.find(victim) == "refresh"
    published = keys.published_statuses()
    report = keys.rotation.revoke(victim, "refresh")
    assert report["published"] is False
    assert victim not in {e.kid for e in keys.current("refresh").entries}
    assert keys.published_statuses() == published


def test_a_revocation_during_a_rotation_abandons_it_so_the_key_cannot_come_back(
    keys: KeyStack,
) -> None:
    keys.clock.advance(CACHE)
    victim = keys.current("access").active.kid
    token = keys.start_rotation("access")
    for step in ("createSecret", "setSecret", "testSecret"):
        invoke(keys, step, "access", token)
    assert victim in {jwk["kid"] for jwk in keys.pending_document("access", token)["keys"]}

    keys.rotation.revoke(victim, "access")

    with pytest.raises(KeyRotationFailed, match="not pending"):
        invoke(keys, "finishSecret", "access", token)
    assert victim not in {e.kid for e in keys.current("access").entries}
    assert victim not in keys.published_statuses()


def test_a_pending_set_made_from_an_older_version_is_never_finished(keys: KeyStack) -> None:
    """If the current version changed after createSecret (a revocation, an edit), finishing
    would bring back what changed: the pending version is abandoned instead."""
    keys.clock.advance(CACHE)
    token = keys.start_rotation("access")
    for step in ("createSecret", "setSecret", "testSecret"):
        invoke(keys, step, "access", token)
    make_current(keys, keys.current("access").to_secret_document())  # someone's edit
    with pytest.raises(KeyRotationFailed, match="has changed since"):
        invoke(keys, "finishSecret", "access", token)
    assert AWSPENDING not in keys.versions("access")[token]


# --- nothing secret leaks ---------------------------------------------------------------------


def test_no_key_material_reaches_reports_or_logs(
    keys: KeyStack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    keys.clock.advance(CACHE)
    reports: list[Any] = []
    token = keys.start_rotation("refresh")
    for step in ("createSecret", "setSecret", "testSecret", "finishSecret"):
        invoke(keys, step, "refresh", token)
    reports.append(keys.rotation.rotate("access"))
    reports.append(keys.rotation.revoke(keys.current("refresh").active.kid, "refresh"))
    reports.append(keys.rotation.describe("access"))
    secrets = private_values(keys.current("access"), keys.current("refresh"))
    assert secrets
    exposed = json.dumps(reports) + caplog.text
    for value in secrets:
        assert value not in exposed
    assert "rotation step done" in caplog.text
