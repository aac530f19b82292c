"""Key rotation racing itself, on the local stack's embedded endpoint (moto's server with
Secrets Manager, SSM and KMS requests serialized, as AWS makes each request atomic).

The invariants, checked after every race:

1. **Exactly one rotation lands per starting version.** Every current version of a key secret
   was made from the version it replaced: the ``from_version`` its record names is the version
   AWSPREVIOUS now marks (the finish step and a revocation's commit are compare-and-swaps of
   AWSCURRENT). In KMS mode, exactly one operation reports a change and no KMS key is orphaned.
2. **The published JWKS is derived from the last commit.** Once the racers are done, the
   document holds exactly what the secret (or the aliases) say verifiers must know: no key that
   signs or still verifies unexpired tokens is missing, and nothing else is there.
3. **A revoked key never comes back**, in the secret or in the document, and the KMS alias never
   ends on a disabled key.
4. **Lifecycle stamps are never lost**: ``published_at`` and ``retired_at`` stay what the first
   publication that showed them recorded, even when a publication made from an older state
   lands last.

Each race is forced into its worst interleaving with barriers and gates placed on one racer's
AWS requests (botocore's before-call event), so it is deterministic, and each check is also run
against a deliberately non-atomic variant (a commit that is not a compare-and-swap, a
publication that does not settle, a stamp merge left out, KMS operations without the lock), and
fails there.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.clock import ManualClock
from tests.concurrency import run_at_once
from tokencore.config import Settings
from tokencore.errors import KeyRotationFailed, KeyUnavailable
from tokencore.keys import KeySet, KeyStatus, generate_key
from tokencore.keys.lifecycle import LifecyclePolicy
from tokencore.keys.secretsmanager import create_key_set_secret
from tokencore.ops import publishing as publishing_module
from tokencore.ops.kmsrotation import KmsRotation
from tokencore.ops.publishing import (
    PublishedKey,
    publish_keys,
    publish_public_jwks,
    read_published_keys,
)
from tokencore.ops.rotation import (
    AWSCURRENT,
    AWSPENDING,
    SecretsManagerRotation,
    derive_access_jwks,
    publish_access_jwks,
)

REGION = "us-east-1"
T0 = 1_800_000_000
CACHE = 300  # JWKS_CACHE_TTL_SECONDS: a next key this old may be promoted
WAIT = 30  # seconds a racer waits for another before the test fails (never reached when green)
_stacks = itertools.count(1)


def client(endpoint: str, service: str) -> Any:
    """A fresh client per racer, so a hook on one racer's requests never touches another's."""
    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard", "max_attempts": 1}, read_timeout=60),
    )


class Hook:
    """Runs ``action`` before one racer's requests of ``operation`` whose body ``matches``
    (the first ``times`` of them), between botocore's parameter validation and the wire."""

    def __init__(
        self,
        aws: Any,
        operation: str,
        action: Callable[[], object],
        *,
        matches: Callable[[dict[str, Any]], bool] = lambda _: True,
        times: int = 1,
    ) -> None:
        self._left = times
        self._action = action  # its result is dropped: a result would be taken as the response
        self._matches = matches
        self._event = f"before-call.*.{operation}"
        aws.meta.events.register(self._event, self._run)

    def _run(self, params: dict[str, Any], **_: Any) -> None:
        body = json.loads(params.get("body") or b"{}")
        if self._left > 0 and self._matches(body):
            self._left -= 1
            self._action()


def moves_current(body: dict[str, Any]) -> bool:
    return body.get("VersionStage") == AWSCURRENT and "MoveToVersionId" in body


def wait(event: threading.Event) -> None:
    assert event.wait(WAIT), "a racer never reached its point"


# --- Secrets Manager key sets ------------------------------------------------------------------


@dataclass
class SecretStack:
    endpoint: str
    settings: Settings
    clock: ManualClock
    secrets: Any
    ssm: Any

    def rotation(
        self, cls: type[SecretsManagerRotation] = SecretsManagerRotation
    ) -> SecretsManagerRotation:
        """A racer: its own clients, the shared clock."""
        return cls(
            self.settings,
            secretsmanager=client(self.endpoint, "secretsmanager"),
            ssm=client(self.endpoint, "ssm"),
            clock=self.clock,
        )

    @property
    def secret_id(self) -> str:
        return self.settings.signing_keys_secret_id

    def versions(self) -> dict[str, list[str]]:
        described = self.secrets.describe_secret(SecretId=self.secret_id)
        return {k: list(v) for k, v in described["VersionIdsToStages"].items()}

    def version_with(self, stage: str) -> str | None:
        return next((v for v, s in self.versions().items() if stage in s), None)

    def document(self) -> dict[str, Any]:
        text = self.secrets.get_secret_value(SecretId=self.secret_id, VersionStage=AWSCURRENT)
        parsed: dict[str, Any] = json.loads(text["SecretString"])
        return parsed

    def current(self) -> KeySet:
        return KeySet.from_secret_document(self.document(), "access")

    def published(self) -> dict[str, PublishedKey]:
        keys = read_published_keys(self.ssm, self.settings.public_jwks_parameter)
        return {entry.kid: entry for entry in keys}

    def kid(self, status: KeyStatus) -> str:
        return next(e.kid for e in self.current().entries if e.status is status)

    def prepare_rotation(
        self,
        cls: type[SecretsManagerRotation] = SecretsManagerRotation,
        steps: tuple[str, ...] = ("createSecret", "setSecret", "testSecret"),
    ) -> tuple[SecretsManagerRotation, str]:
        """A rotation run through ``steps`` (by default up to its finish step): its racer and
        its version id."""
        racer = self.rotation(cls)
        token = str(uuid.uuid4())  # a ClientRequestToken: 32 to 64 characters
        for step in steps:
            racer.run_step(step, self.secret_id, token)
        return racer, token


@pytest.fixture
def stack(motoserver_endpoint: str) -> SecretStack:
    """The access secret and the public JWKS as KeySetup leaves them (an active and a next key,
    published at T0), the clock a whole cache TTL later: the next key may be promoted."""
    number = next(_stacks)
    settings = Settings.from_env(
        {
            "ACCESS_TOKEN_ALG": "ES256",
            "SIGNING_KEYS_SECRET_ID": f"tokencore/race-{number}/signing-keys",
            "REFRESH_KEYS_SECRET_ID": f"tokencore/race-{number}/refresh-keys",
            "PUBLIC_JWKS_PARAMETER": f"/tokencore/race-{number}/public-jwks",
            "TOKEN_ISSUER": "https://auth.example.com",
        }
    )
    secrets, ssm = client(motoserver_endpoint, "secretsmanager"), client(motoserver_endpoint, "ssm")
    for purpose, alg, name in (
        ("access", "ES256", settings.signing_keys_secret_id),
        ("refresh", "HS256", settings.refresh_keys_secret_id),
    ):
        key_set = KeySet(
            [
                dataclasses.replace(generate_key(alg), created_at=T0),
                dataclasses.replace(generate_key(alg, KeyStatus.NEXT), created_at=T0),
            ],
            purpose,  # type: ignore[arg-type]
        )
        create_key_set_secret(secrets, name, key_set)
        if purpose == "access":
            publish_public_jwks(ssm, settings.public_jwks_parameter, key_set, now=T0)
    return SecretStack(motoserver_endpoint, settings, ManualClock(T0 + CACHE), secrets, ssm)


def one_lineage_and_a_derived_document(
    stack: SecretStack, *, revoked: tuple[str, ...] = ()
) -> None:
    """Invariants 1-3 for the access secret and its published document."""
    current = stack.current()
    published = stack.published()
    for kid in revoked:
        assert kid not in {e.kid for e in current.entries}, "a revoked key is back in the set"
        assert kid not in published, "a revoked key is back in the published JWKS"
    document = stack.document()
    record = document.get("rotation") or document.get("revocation")
    if record is not None:
        assert record["from_version"] == stack.version_with("AWSPREVIOUS"), (
            "the current version replaced a version it was not made from"
        )
    assert [e.status for e in current.entries].count(KeyStatus.ACTIVE) == 1
    pending = [v for v, s in stack.versions().items() if AWSPENDING in s and AWSCURRENT not in s]
    assert pending == [], "a racer left a pending version behind"
    derived = derive_access_jwks(stack.secrets, stack.secret_id)
    assert {k.kid: k.status for k in derived.keys} == {
        kid: entry.status for kid, entry in published.items()
    }, "the published JWKS is not the one derived from the current key set"


def outcome(action: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        try:
            return action()
        except (KeyRotationFailed, KeyUnavailable) as refused:
            return refused

    return run


def race(*actions: Callable[[], Any]) -> list[Any]:
    """Run each action in its own thread, released together; their outcomes, in order."""
    indexed = iter(enumerate(actions))
    lock = threading.Lock()

    def one() -> tuple[int, Any]:
        with lock:
            index, action = next(indexed)
        return index, outcome(action)()

    return [result for _, result in sorted(run_at_once(len(actions), one))]


class SwapWithoutCompare(SecretsManagerRotation):
    """Moves AWSCURRENT off whatever version holds it when the move is made (a read, then the
    move, retried until it sticks): a commit that checks, then writes."""

    def _swap_current(self, secret_id: str, to_version: str, from_version: str | None) -> bool:
        for _ in range(5):
            holder = next(
                (v for v, s in self._versions(secret_id).items() if AWSCURRENT in s), None
            )
            try:
                self._secrets.update_secret_version_stage(
                    SecretId=secret_id,
                    VersionStage=AWSCURRENT,
                    MoveToVersionId=to_version,
                    RemoveFromVersionId=holder,
                )
            except Exception:  # noqa: S112 - the next round reads the holder again
                continue
            return True
        return False


def finishes_racing(stack: SecretStack, cls: type[SecretsManagerRotation]) -> list[Any]:
    """tokenctl finishing a rotation while Secrets Manager runs another from the same version
    with the rotation function: both pass their checks, then both move AWSCURRENT at once."""
    operator, operator_token = stack.prepare_rotation(cls)
    scheduled = stack.rotation(cls)
    scheduled_token = str(uuid.uuid4())
    at_swap = threading.Barrier(2)
    operator_checked = threading.Event()

    def operator_at_swap() -> None:
        operator_checked.set()
        at_swap.wait(WAIT)

    Hook(operator._secrets, "UpdateSecretVersionStage", operator_at_swap, matches=moves_current)
    # The scheduled rotation stores its pending set only once the operator's finish has
    # checked that its own is still pending (the scheduled one takes the label from it).
    Hook(scheduled._secrets, "PutSecretValue", lambda: wait(operator_checked))
    Hook(
        scheduled._secrets,
        "UpdateSecretVersionStage",
        lambda: at_swap.wait(WAIT),
        matches=moves_current,
    )

    def scheduled_rotation() -> str:
        for step in ("createSecret", "setSecret", "testSecret", "finishSecret"):
            scheduled.run_step(step, stack.secret_id, scheduled_token)
        return scheduled_token

    def operator_finish() -> str:
        operator.run_step("finishSecret", stack.secret_id, operator_token)
        return operator_token

    return race(operator_finish, scheduled_rotation)


def test_two_rotations_from_one_version_land_exactly_once(stack: SecretStack) -> None:
    start = stack.version_with(AWSCURRENT)
    outcomes = finishes_racing(stack, SecretsManagerRotation)
    landed = [o for o in outcomes if isinstance(o, str)]
    assert len(landed) == 1, outcomes
    assert sum(isinstance(o, KeyRotationFailed) for o in outcomes) == 1
    assert stack.version_with(AWSCURRENT) == landed[0]
    assert stack.version_with("AWSPREVIOUS") == start
    one_lineage_and_a_derived_document(stack)


def test_two_operators_rotating_at_once_land_exactly_once(stack: SecretStack) -> None:
    """Two tokenctl rotate-keys, both planning from the same version: storing a pending version
    moves AWSPENDING, so one of them finds its own no longer pending or loses the swap."""
    start = stack.version_with(AWSCURRENT)
    first, second = stack.rotation(), stack.rotation()
    planned = threading.Barrier(2)
    for racer in (first, second):
        Hook(racer._secrets, "PutSecretValue", lambda: planned.wait(WAIT))
    outcomes = race(lambda: first.rotate("access"), lambda: second.rotate("access"))
    reports = [o for o in outcomes if isinstance(o, dict)]
    assert len(reports) == 1, outcomes
    assert reports[0]["promoted"] is True
    assert isinstance(next(o for o in outcomes if not isinstance(o, dict)), KeyRotationFailed)
    assert stack.version_with(AWSCURRENT) == reports[0]["version_id"]
    assert stack.version_with("AWSPREVIOUS") == start
    one_lineage_and_a_derived_document(stack)


def test_the_lineage_check_catches_a_commit_that_is_not_a_compare_and_swap(
    stack: SecretStack,
) -> None:
    outcomes = finishes_racing(stack, SwapWithoutCompare)
    assert all(isinstance(o, str) for o in outcomes), outcomes  # both landed
    with pytest.raises(AssertionError, match="not made from"):
        one_lineage_and_a_derived_document(stack)


def revocation_racing_a_finish(
    stack: SecretStack, cls: type[SecretsManagerRotation], *, finish_last: bool
) -> str:
    """tokenctl revoke-key of the next key (the one the rotation promotes) while a rotation
    finishes; the revoked kid. Both pass their checks first; then they move AWSCURRENT at once,
    or (``finish_last``) the finish moves it only once the revocation has returned (it removes
    the key again if a rotation landed before its last look: this is the one order that
    defeats it)."""
    rotating, token = stack.prepare_rotation(cls)
    revoking = stack.rotation(cls)
    victim = stack.kid(KeyStatus.NEXT)
    at_swap = threading.Barrier(2)
    finish_checked, revoked = threading.Event(), threading.Event()

    def finish_at_swap() -> None:
        finish_checked.set()
        if finish_last:
            wait(revoked)
        else:
            at_swap.wait(WAIT)

    Hook(rotating._secrets, "UpdateSecretVersionStage", finish_at_swap, matches=moves_current)
    # The revocation starts (abandoning pending rotations first) once the finish has checked
    # that its version is still pending.
    Hook(revoking._secrets, "DescribeSecret", lambda: wait(finish_checked))
    if not finish_last:
        Hook(
            revoking._secrets,
            "UpdateSecretVersionStage",
            lambda: at_swap.wait(WAIT),
            matches=moves_current,
        )

    def revoke() -> Any:
        try:
            return revoking.revoke(victim, "access")
        finally:
            revoked.set()

    race(lambda: rotating.run_step("finishSecret", stack.secret_id, token), revoke)
    return victim


@pytest.mark.parametrize("finish_last", [False, True], ids=["at_once", "finish_last"])
def test_a_revocation_racing_a_rotation_is_never_undone(
    stack: SecretStack, finish_last: bool
) -> None:
    victim = revocation_racing_a_finish(stack, SecretsManagerRotation, finish_last=finish_last)
    one_lineage_and_a_derived_document(stack, revoked=(victim,))


def test_the_revocation_check_catches_a_commit_that_is_not_a_compare_and_swap(
    stack: SecretStack,
) -> None:
    victim = revocation_racing_a_finish(stack, SwapWithoutCompare, finish_last=True)
    with pytest.raises(AssertionError, match="revoked key is back in the set"):
        one_lineage_and_a_derived_document(stack, revoked=(victim,))


def revocations_racing(
    stack: SecretStack, cls: type[SecretsManagerRotation], *, second_last: bool
) -> tuple[str, str]:
    """Two tokenctl revoke-key at once, of two different keys (after one rotation: the retired
    and the next key). Both commit from the same version at once, or (``second_last``) the
    second commits only once the first has returned (each removes its key again if another
    commit landed before its last look: this is the one order that defeats it)."""
    stack.rotation().rotate("access")
    retired, following = stack.kid(KeyStatus.RETIRED), stack.kid(KeyStatus.NEXT)
    first, second = stack.rotation(cls), stack.rotation(cls)
    at_swap = threading.Barrier(2)
    first_planned, first_done = threading.Event(), threading.Event()

    def second_at_swap() -> None:
        if second_last:
            wait(first_done)
        else:
            at_swap.wait(WAIT)

    if second_last:  # the second plans from the version the first starts from
        Hook(first._secrets, "PutSecretValue", lambda: wait(first_planned))
        Hook(second._secrets, "PutSecretValue", first_planned.set)
    else:
        Hook(
            first._secrets,
            "UpdateSecretVersionStage",
            lambda: at_swap.wait(WAIT),
            matches=moves_current,
        )
    Hook(second._secrets, "UpdateSecretVersionStage", second_at_swap, matches=moves_current)

    def revoke_first() -> Any:
        try:
            return first.revoke(retired, "access")
        finally:
            first_done.set()

    outcomes = race(revoke_first, lambda: second.revoke(following, "access"))
    assert all(isinstance(o, dict) for o in outcomes), outcomes
    return retired, following


@pytest.mark.parametrize("second_last", [False, True], ids=["at_once", "second_last"])
def test_two_revocations_at_once_both_stick(stack: SecretStack, second_last: bool) -> None:
    revoked = revocations_racing(stack, SecretsManagerRotation, second_last=second_last)
    one_lineage_and_a_derived_document(stack, revoked=revoked)


def test_the_double_revocation_check_catches_a_commit_that_is_not_a_compare_and_swap(
    stack: SecretStack,
) -> None:
    revoked = revocations_racing(stack, SwapWithoutCompare, second_last=True)
    with pytest.raises(AssertionError, match="revoked key is back in the set"):
        one_lineage_and_a_derived_document(stack, revoked=revoked)


# --- a publication made from an older state, landing last --------------------------------------

Publisher = Callable[[SecretStack, Any, Any], Any]


def settled_publisher(stack: SecretStack, secrets: Any, ssm: Any) -> Any:
    """KeySetup's publication: derived from the secret, settled (ops.rotation)."""
    return publish_access_jwks(
        secrets, ssm, stack.secret_id, stack.settings.public_jwks_parameter, stack.clock
    )


def one_shot_publisher(stack: SecretStack, secrets: Any, ssm: Any) -> Any:
    """The publication as it was: derive, read the previous document for its stamps, write."""
    keys = derive_access_jwks(secrets, stack.secret_id).keys
    name = stack.settings.public_jwks_parameter
    return publish_keys(ssm, name, keys, stack.clock.now(), previous=read_published_keys(ssm, name))


def stale_publication(
    stack: SecretStack, publisher: Publisher, meanwhile: Callable[[], Any]
) -> None:
    """The publisher derives its document, then (its PutParameter held) ``meanwhile`` runs to
    completion and the clock moves on; then the stale document is written."""
    secrets, ssm = client(stack.endpoint, "secretsmanager"), client(stack.endpoint, "ssm")
    derived, done = threading.Event(), threading.Event()

    def hold() -> None:
        derived.set()
        wait(done)

    Hook(ssm, "PutParameter", hold)

    def other() -> None:
        wait(derived)
        try:
            meanwhile()
        finally:
            stack.clock.advance(100)
            done.set()

    race(lambda: publisher(stack, secrets, ssm), other)


def revocation_outrunning_a_publication(stack: SecretStack, publisher: Publisher) -> str:
    """A deployment's KeySetup publishing while a rotation is pending (created, its new key not
    yet published), a revocation of the next key running to completion between the
    publisher's derivation and its write. The revoked kid."""
    stack.prepare_rotation(steps=("createSecret",))
    victim = stack.kid(KeyStatus.NEXT)
    stale_publication(stack, publisher, lambda: stack.rotation().revoke(victim, "access"))
    return victim


def test_a_publication_made_before_a_revocation_never_brings_the_key_back(
    stack: SecretStack,
) -> None:
    victim = revocation_outrunning_a_publication(stack, settled_publisher)
    one_lineage_and_a_derived_document(stack, revoked=(victim,))


def test_the_revoked_key_check_catches_a_publication_that_does_not_settle(
    stack: SecretStack,
) -> None:
    victim = revocation_outrunning_a_publication(stack, one_shot_publisher)
    with pytest.raises(AssertionError, match="revoked key is back in the published JWKS"):
        one_lineage_and_a_derived_document(stack, revoked=(victim,))
    # What a publisher that died right after such a write leaves: revoking again repairs it.
    report = stack.rotation().revoke(victim, "access")
    assert report["revoked_status"] == "published_only"
    one_lineage_and_a_derived_document(stack, revoked=(victim,))
    with pytest.raises(LookupError):
        stack.rotation().revoke(victim, "access")


def stamps_after_a_rotation_raced_by_a_stale_publication(
    stack: SecretStack, publisher: Publisher
) -> tuple[dict[str, PublishedKey], dict[str, PublishedKey]]:
    """A rotation created, then a publisher deriving from it (its new next key included, the
    old active key still active), held while the rotation publishes, tests and finishes and the
    clock moves on. The stamps the rotation's own publications recorded, and the final ones."""
    rotating, token = stack.prepare_rotation(steps=("createSecret",))
    recorded: dict[str, PublishedKey] = {}

    def finish() -> None:
        for step in ("setSecret", "testSecret", "finishSecret"):
            rotating.run_step(step, stack.secret_id, token)
        recorded.update(stack.published())

    stale_publication(stack, publisher, finish)
    return recorded, stack.published()


def stamps_never_lost(recorded: dict[str, PublishedKey], final: dict[str, PublishedKey]) -> None:
    assert set(final) == set(recorded)
    for kid, entry in recorded.items():
        assert final[kid].status is entry.status
        assert final[kid].published_at == entry.published_at, f"{kid}: published_at moved"
        assert final[kid].retired_at == entry.retired_at, f"{kid}: retired_at moved"


def test_a_stale_publication_never_loses_a_lifecycle_stamp(stack: SecretStack) -> None:
    recorded, final = stamps_after_a_rotation_raced_by_a_stale_publication(stack, settled_publisher)
    assert any(entry.retired_at is not None for entry in recorded.values())  # the old active
    stamps_never_lost(recorded, final)
    one_lineage_and_a_derived_document(stack)


def test_the_stamp_check_catches_a_publication_that_does_not_settle(stack: SecretStack) -> None:
    recorded, final = stamps_after_a_rotation_raced_by_a_stale_publication(
        stack, one_shot_publisher
    )
    with pytest.raises(AssertionError):
        stamps_never_lost(recorded, final)


def test_the_stamp_check_catches_a_settled_publication_without_the_merge(
    stack: SecretStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Settling alone re-derives from the latest document, which the stale one overwrote: the
    retirement it recorded would be stamped again, later."""
    monkeypatch.setattr(
        publishing_module, "merge_stamps", lambda latest, _overwritten: list(latest)
    )
    recorded, final = stamps_after_a_rotation_raced_by_a_stale_publication(stack, settled_publisher)
    with pytest.raises(AssertionError, match="retired_at moved"):
        stamps_never_lost(recorded, final)


# --- KMS ---------------------------------------------------------------------------------------


@dataclass
class KmsStack:
    endpoint: str
    settings: Settings
    clock: ManualClock
    kms: Any
    ssm: Any
    alias: str

    def rotation(self, cls: type[KmsRotation] = KmsRotation) -> KmsRotation:
        return cls(
            kms=client(self.endpoint, "kms"),
            ssm=client(self.endpoint, "ssm"),
            signing_key_id=self.alias,
            parameter_name=self.settings.public_jwks_parameter,
            alg="ES256",
            policy=LifecyclePolicy.for_purpose(self.settings, "access"),
            clock=self.clock,
        )

    def target(self, alias: str) -> dict[str, Any]:
        metadata: dict[str, Any] = self.kms.describe_key(KeyId=alias)["KeyMetadata"]
        return metadata

    def keys(self) -> set[str]:
        listed = self.kms.list_keys()["Keys"]
        return {key["KeyArn"] for key in listed}

    def published(self) -> dict[str, PublishedKey]:
        keys = read_published_keys(self.ssm, self.settings.public_jwks_parameter)
        return {entry.kid: entry for entry in keys}


@pytest.fixture
def kms_stack(motoserver_endpoint: str) -> KmsStack:
    """A signing key behind the alias, published, and a next key published a cache TTL ago."""
    number = next(_stacks)
    alias = f"alias/tokencore-race-{number}-access-token-signing"
    settings = Settings.from_env(
        {
            "KEY_BACKEND": "kms",
            "KMS_SIGNING_KEY_ID": alias,
            "ACCESS_TOKEN_ALG": "ES256",
            "PUBLIC_JWKS_PARAMETER": f"/tokencore/kms-race-{number}/public-jwks",
        }
    )
    kms, ssm = client(motoserver_endpoint, "kms"), client(motoserver_endpoint, "ssm")
    key = kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec="ECC_NIST_P256")["KeyMetadata"]
    kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
    built = KmsStack(motoserver_endpoint, settings, ManualClock(T0), kms, ssm, alias)
    built.rotation().rotate()  # publishes a next key
    built.clock.advance(CACHE)
    return built


def kms_state_is_consistent(stack: KmsStack, *, revoked: tuple[str, ...] = ()) -> None:
    """Invariants 2 and 3 in KMS mode: the alias signs with an enabled key the document lists
    as active, the next alias's key is listed as next, and revoked keys are nowhere."""
    rotation = stack.rotation()
    state = rotation.state()
    assert stack.target(stack.alias)["Enabled"], "the alias signs with a disabled key"
    published = stack.published()
    assert published[state.active.key.kid].status is KeyStatus.ACTIVE
    if state.next is not None:
        assert published[state.next.key.kid].status is KeyStatus.NEXT
    for kid in revoked:
        assert kid not in published, "a revoked key is published"
        assert kid != state.active.key.kid, "the alias signs with a revoked key"


class WithoutTheLock(KmsRotation):
    """KMS operations without ``<alias>-lock``; every racer reads the state before any acts."""

    barrier: threading.Barrier

    def _exclusive(self) -> Any:
        from contextlib import nullcontext

        return nullcontext()

    def state(self) -> Any:
        read = super().state()
        self.barrier.wait(WAIT)
        return read


def kms_racers(stack: KmsStack, cls: type[KmsRotation], count: int) -> list[KmsRotation]:
    racers = [stack.rotation(cls) for _ in range(count)]
    barrier = threading.Barrier(count)
    for racer in racers:
        if isinstance(racer, WithoutTheLock):
            racer.barrier = barrier
        else:  # both ask for the lock at the same moment
            Hook(
                racer._kms,
                "CreateAlias",
                lambda: barrier.wait(WAIT),
                matches=lambda body: str(body.get("AliasName", "")).endswith("-lock"),
            )
    return racers


def rotations_racing(stack: KmsStack, cls: type[KmsRotation]) -> tuple[list[Any], set[str]]:
    before = stack.keys()
    first, second = kms_racers(stack, cls, 2)
    outcomes = race(first.rotate, second.rotate)
    return outcomes, stack.keys() - before


def exactly_one_kms_rotation(stack: KmsStack, outcomes: list[Any], created: set[str]) -> None:
    reports = [o for o in outcomes if isinstance(o, dict)]
    assert len(reports) == 1, f"{len(reports)} rotations reported"
    assert reports[0]["promoted"] is True
    assert created == {stack.target(f"{stack.alias}-next")["Arn"]}, "a KMS key was orphaned"
    kms_state_is_consistent(stack)


def test_two_kms_rotations_at_once_promote_exactly_once(kms_stack: KmsStack) -> None:
    outcomes, created = rotations_racing(kms_stack, KmsRotation)
    exactly_one_kms_rotation(kms_stack, outcomes, created)
    refused = next(o for o in outcomes if not isinstance(o, dict))
    assert isinstance(refused, KeyRotationFailed)
    assert "-lock" in refused.message
    with pytest.raises(Exception, match="NotFoundException"):
        kms_stack.kms.describe_key(KeyId=f"{kms_stack.alias}-lock")  # released


def test_the_kms_rotation_check_catches_operations_without_the_lock(kms_stack: KmsStack) -> None:
    outcomes, created = rotations_racing(kms_stack, WithoutTheLock)
    with pytest.raises(AssertionError):
        exactly_one_kms_rotation(kms_stack, outcomes, created)
    assert len(created) == 2


def revocation_racing_a_kms_rotation(
    stack: KmsStack, cls: type[KmsRotation]
) -> tuple[str, list[Any]]:
    """tokenctl revoke-key of the next key while tokenctl rotate-keys promotes it: the revoked
    kid and the two outcomes (rotation, revocation)."""
    before = stack.rotation().state()
    assert before.next is not None
    kid = before.next.key.kid
    rotating, revoking = kms_racers(stack, cls, 2)
    return kid, race(rotating.rotate, lambda: revoking.revoke(kid))


def test_a_kms_revocation_racing_a_rotation_never_leaves_a_revoked_key_signing(
    kms_stack: KmsStack,
) -> None:
    kid, (rotated, revoked) = revocation_racing_a_kms_rotation(kms_stack, KmsRotation)
    assert [isinstance(o, dict) for o in (rotated, revoked)].count(True) == 1  # one got the lock
    if isinstance(revoked, KeyRotationFailed):
        kms_state_is_consistent(kms_stack)  # the rotation promoted the key ...
        kms_stack.rotation().revoke(kid)  # ... and the operator's retry revokes it, active
    kms_state_is_consistent(kms_stack, revoked=(kid,))


def test_the_kms_revocation_check_catches_operations_without_the_lock(
    kms_stack: KmsStack,
) -> None:
    kid, outcomes = revocation_racing_a_kms_rotation(kms_stack, WithoutTheLock)
    assert all(isinstance(o, dict) for o in outcomes)  # both acted on the same state
    with pytest.raises(AssertionError, match=r"disabled key|revoked key"):
        kms_state_is_consistent(kms_stack, revoked=(kid,))
