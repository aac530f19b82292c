"""Rotating and revoking the key sets held in Secrets Manager.

Secrets Manager's rotation protocol calls one function four times with the same
``ClientRequestToken`` (the version being made): createSecret puts the pending set (the current
set rotated once by ``keys.lifecycle``), setSecret publishes its new access keys before they can
sign, testSecret signs and verifies a probe token with every key the way verifiers will, and
finishSecret moves AWSCURRENT with a compare-and-swap and publishes the final JWKS.
docs/keys.md ("The four steps") says what each step checks and refuses.

Every step is idempotent: a retry finds the work done and carries on, and until finishSecret
nothing a signer reads has changed. ``rotate`` runs the four steps in one go (``tokenctl
rotate-keys``, the local stack); ``revoke`` removes one key from its set and from the public
JWKS at once. Key material never reaches a message, a log line or a report: kids only.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from tokencore.awsclient import aws_errors, error_code
from tokencore.clock import SYSTEM_CLOCK, Clock
from tokencore.config import Settings
from tokencore.errors import KeyRotationFailed, KeyUnavailable, TokenCoreError
from tokencore.jose.algorithms import REFRESH_ALGORITHM, KeyPurpose
from tokencore.jose.codec import json_object
from tokencore.keys.keyring import KeyRing, StaticKeySource
from tokencore.keys.keyset import KeySet
from tokencore.keys.lifecycle import (
    ROTATION_SLACK_SECONDS,
    KeyTimes,
    LifecyclePolicy,
    NewKey,
    RotationPlan,
    new_key_factory,
    plan_revocation,
    plan_rotation,
)
from tokencore.keys.local import LocalSigner
from tokencore.keys.model import KeyStatus
from tokencore.ops.publishing import (
    Derivation,
    PublishedKey,
    publish_planned,
    publish_settled,
    read_published_keys,
)

AWSCURRENT: Final = "AWSCURRENT"
AWSPENDING: Final = "AWSPENDING"
STEPS: Final = {
    "createSecret": "create",
    "setSecret": "set",
    "testSecret": "test",
    "finishSecret": "finish",
    # The Secrets Manager guide also spells them this way.
    "create_secret": "create",
    "set_secret": "set",
    "test_secret": "test",
    "finish_secret": "finish",
}
PROBE_SUBJECT: Final = "tokencore-rotation-probe"
PROBE_TTL_SECONDS: Final = 60


@dataclass
class StepResult:
    """What a step did (kids and version ids only)."""

    step: str
    purpose: KeyPurpose
    version_id: str
    already_done: bool = False
    details: dict[str, Any] = field(default_factory=dict)


class SecretsManagerRotation:
    """The rotation protocol and revocation for the stack's two key secrets."""

    def __init__(
        self,
        settings: Settings,
        *,
        secretsmanager: Any,
        ssm: Any | None = None,
        clock: Clock = SYSTEM_CLOCK,
        new_key: Mapping[KeyPurpose, NewKey] | None = None,
    ) -> None:
        self.settings = settings
        self._secrets = secretsmanager
        self._ssm = ssm
        self._clock = clock
        self._new_key: dict[KeyPurpose, NewKey] = {
            "access": new_key_factory(settings.access_token_alg),
            "refresh": new_key_factory(REFRESH_ALGORITHM),
            **(new_key or {}),
        }

    # --- which secret -----------------------------------------------------------------------

    def secret_id(self, purpose: KeyPurpose) -> str:
        if purpose == "access":
            if self.settings.key_backend != "secretsmanager":
                raise KeyRotationFailed("KEY_BACKEND is kms: the access key is not in a secret")
            return self.settings.signing_keys_secret_id
        return self.settings.refresh_keys_secret_id

    def purpose_of(self, secret_id: str) -> KeyPurpose:
        """Which of the stack's key secrets ``secret_id`` (a name or an ARN) is."""
        described = self._call("describe the key secret", "describe_secret", SecretId=secret_id)
        names = {described.get("ARN"), described.get("Name"), secret_id}
        if self.settings.key_backend == "secretsmanager" and (
            self.settings.signing_keys_secret_id in names
        ):
            return "access"
        if self.settings.refresh_keys_secret_id in names:
            return "refresh"
        raise KeyRotationFailed("this secret is not one of the stack's key secrets")

    # --- the protocol -----------------------------------------------------------------------

    def run_step(self, step: str, secret_id: str, token: str, *, force: bool = False) -> StepResult:
        """One step of Secrets Manager's rotation protocol (the rotation function's body)."""
        name = STEPS.get(step)
        if name is None:
            raise KeyRotationFailed("unknown rotation step")
        if not isinstance(token, str) or not token:
            raise KeyRotationFailed("the rotation has no ClientRequestToken")
        purpose = self.purpose_of(secret_id)
        if name == "create":
            return self.create(secret_id, token, purpose, force=force)
        if name == "set":
            return self.set(secret_id, token, purpose)
        if name == "test":
            return self.test(secret_id, token, purpose)
        return self.finish(secret_id, token, purpose)

    def create(
        self, secret_id: str, token: str, purpose: KeyPurpose, *, force: bool = False
    ) -> StepResult:
        result = StepResult("createSecret", purpose, token)
        versions = self._versions(secret_id)
        stages = versions.get(token)
        if stages is not None and AWSCURRENT in stages:
            result.already_done = True
            return result
        if stages is not None and AWSPENDING not in stages:
            raise KeyRotationFailed("the rotation's version is neither pending nor current")
        current_id, current = self._current(secret_id, purpose)
        if stages is not None:
            existing = self._pending_text(secret_id, token)
            if existing is not None:  # a retry: the pending version is there already
                result.already_done = True
                result.details = _record(existing)
                return result
        now = self._now()
        plan = plan_rotation(
            current,
            now,
            LifecyclePolicy.for_purpose(self.settings, purpose),
            self._new_key[purpose],
            times=self._times(purpose),
            force=force,
        )
        record = {"started_at": now, "from_version": current_id, **_plan_record(plan)}
        document = {**plan.key_set.to_secret_document(), "rotation": record}
        self._put_pending("store the pending key set", secret_id, token, document)
        result.details = record
        return result

    def set(self, secret_id: str, token: str, purpose: KeyPurpose) -> StepResult:
        result = StepResult("setSecret", purpose, token)
        if self._check_pending(secret_id, token):
            result.already_done = True
            return result
        if purpose == "refresh":
            result.details = {"published": False}
            return result
        self._pending_set(secret_id, token, purpose)  # parses (createSecret's output)
        # The published document is derived from the secret: the current set and, while this
        # rotation is pending, its new keys, so verifiers know them before anything signs.
        recorded = self.publish_access_jwks()
        result.details = {"published": True, "kids": [entry.kid for entry in recorded]}
        return result

    def test(self, secret_id: str, token: str, purpose: KeyPurpose) -> StepResult:
        result = StepResult("testSecret", purpose, token)
        if self._check_pending(secret_id, token):
            result.already_done = True
            return result
        pending = self._pending_set(secret_id, token, purpose)
        if purpose == "access":
            published = {
                entry.kid: entry.key
                for entry in read_published_keys(
                    self._ssm_client(), self.settings.public_jwks_parameter
                )
            }
            missing = [entry.kid for entry in pending.entries if entry.kid not in published]
            if missing:
                raise KeyRotationFailed(
                    f"keys of the pending set are not in the published JWKS: {', '.join(missing)}"
                )
            lookup = KeyRing(StaticKeySource(published.values()), self._clock, 3600, 0)
        else:
            lookup = KeyRing(StaticKeySource(pending.verification_keys()), self._clock, 3600, 0)
        for entry in pending.entries:
            self._probe(purpose, entry, lookup)
        result.details = {"probed": [entry.kid for entry in pending.entries]}
        return result

    def finish(self, secret_id: str, token: str, purpose: KeyPurpose) -> StepResult:
        result = StepResult("finishSecret", purpose, token)
        versions = self._versions(secret_id)
        stages = versions.get(token)
        if stages is None:
            raise KeyRotationFailed("the rotation's version does not exist")
        current_id = _current_id(versions)
        if current_id == token:
            result.already_done = True
        else:
            if AWSPENDING not in stages:
                raise KeyRotationFailed("the rotation's version is not pending (abandoned?)")
            text = self._pending_text(secret_id, token)
            if text is None:
                raise KeyRotationFailed("the pending version has no key set")
            record = _record(text)
            started = record.get("started_at")
            stale = type(started) is int and self._now() - started > ROTATION_SLACK_SECONDS
            moved = record.get("from_version") not in (None, current_id)
            if stale or moved:
                self._abandon(secret_id, token)
                why = "is too old" if stale else "was made from a key set that has changed since"
                raise KeyRotationFailed(
                    f"the pending key set {why}; it was abandoned: rotate again"
                )
            self._pending_set(secret_id, token, purpose)  # still parses (testSecret's verdict)
            # The compare-and-swap: AWSCURRENT moves off the version this set was made from,
            # which fails if a concurrent rotation or revocation moved it first. Of any number of
            # rotations made from one version, exactly one lands.
            if not self._swap_current(secret_id, token, current_id):
                self._abandon(secret_id, token)
                raise KeyRotationFailed(
                    "another rotation or a revocation changed the key set first; this pending "
                    "key set was abandoned: rotate again"
                )
        if AWSPENDING in (self._versions(secret_id).get(token) or []):
            self._abandon(secret_id, token)  # the protocol's end state: AWSPENDING on no version
        if purpose == "access":
            self.publish_access_jwks()
            result.details = {"published": True}
        return result

    # --- in one go (tokenctl) ---------------------------------------------------------------

    def rotate(self, purpose: KeyPurpose, *, force: bool = False) -> dict[str, Any]:
        """Run the four steps now, as Secrets Manager would; returns what changed."""
        secret_id = self.secret_id(purpose)
        token, resumed = self._token_for_rotation(secret_id)
        if not resumed:
            # Nothing to do (the next key is too new, nothing to remove): no new version.
            _, current = self._current(secret_id, purpose)
            plan = plan_rotation(
                current,
                self._now(),
                LifecyclePolicy.for_purpose(self.settings, purpose),
                self._new_key[purpose],
                times=self._times(purpose),
                force=force,
            )
            if plan.promoted is None and plan.added_next is None and not plan.pruned:
                return self._report(purpose, None, False, current, _plan_record(plan))
        created = self.create(secret_id, token, purpose, force=force)
        self.set(secret_id, token, purpose)
        self.test(secret_id, token, purpose)
        self.finish(secret_id, token, purpose)
        _, current = self._current(secret_id, purpose)
        return self._report(purpose, token, resumed, current, created.details or {})

    def _report(
        self,
        purpose: KeyPurpose,
        token: str | None,
        resumed: bool,
        current: KeySet,
        record: Mapping[str, Any],
    ) -> dict[str, Any]:
        return {
            "key_set": purpose,
            "backend": "secretsmanager",
            "version_id": token,
            "changed": token is not None,
            "resumed": resumed,
            "promoted": record.get("promoted") is not None,
            "active_kid": current.active.kid,
            "alg": current.active.alg,
            "next_kids": _kids(current, KeyStatus.NEXT),
            "retired_kids": _kids(current, KeyStatus.RETIRED),
            "newly_retired_kid": record.get("retired"),
            "added_next_kid": record.get("added_next"),
            "pruned_kids": record.get("pruned") or [],
            "deferred_until": record.get("deferred_until"),
            "deferred_reason": record.get("deferred_reason"),
            "published": purpose == "access",
        }

    def _token_for_rotation(self, secret_id: str) -> tuple[str, bool]:
        """A new version id, or the one of a recent unfinished rotation to resume. A stale one
        (or one made from an older set) is abandoned first."""
        versions = self._versions(secret_id)
        current_id = _current_id(versions)
        resume: str | None = None
        for version_id, stages in versions.items():
            if AWSPENDING not in stages or version_id == current_id:
                continue
            text = self._pending_text(secret_id, version_id)
            if text is None:
                # Secrets Manager started this rotation (RotateSecret) and its function has not
                # stored a set (yet, or ever). Leave a recent one to the function.
                age = self._version_age(secret_id, version_id)
                if age is not None and age <= ROTATION_SLACK_SECONDS:
                    raise KeyRotationFailed(
                        f"a rotation started {int(age)} s ago is in progress; retry once it "
                        "has finished or failed"
                    )
                self._abandon(secret_id, version_id)
                continue
            record = _record(text)
            started = record.get("started_at")
            fresh = type(started) is int and self._now() - started <= ROTATION_SLACK_SECONDS
            if fresh and record.get("from_version") == current_id and resume is None:
                resume = version_id
            else:
                self._abandon(secret_id, version_id)
        if resume is not None:
            return resume, True
        return str(uuid.uuid4()), False

    # --- revocation -------------------------------------------------------------------------

    def find(self, kid: str) -> KeyPurpose | None:
        """Which secret's current set holds ``kid``, if any."""
        purposes: list[KeyPurpose] = ["refresh"]
        if self.settings.key_backend == "secretsmanager":
            purposes.insert(0, "access")
        for purpose in purposes:
            _, current = self._current(self.secret_id(purpose), purpose)
            if any(entry.kid == kid for entry in current.entries):
                return purpose
        return None

    def revoke(self, kid: str, purpose: KeyPurpose) -> dict[str, Any]:
        """Remove ``kid`` from its set now (and from the public JWKS first, for access keys).

        An unfinished rotation is abandoned first: finishing it would bring the key back. If a
        rotation finishes between our read and our write anyway, the loop sees the key again and
        removes it again."""
        secret_id = self.secret_id(purpose)
        report: dict[str, Any] | None = None
        for _ in range(3):
            versions = self._versions(secret_id)
            current_id = _current_id(versions)
            for version_id, stages in versions.items():
                if AWSPENDING in stages and version_id != current_id:
                    self._abandon(secret_id, version_id)
            _, current = self._current(secret_id, purpose)
            if not any(entry.kid == kid for entry in current.entries):
                if report is None:
                    return self._unpublish(kid, purpose, current)
                return report
            now = self._now()
            plan = plan_revocation(current, kid, now, self._new_key[purpose])
            if purpose == "access":  # verifiers stop trusting it before anything else changes
                publish_planned(
                    self._ssm_client(),
                    self.settings.public_jwks_parameter,
                    plan.key_set.verification_keys(),
                    now=self._clock.now,
                )
            document = {
                **plan.key_set.to_secret_document(),
                "revocation": {"kid": kid, "revoked_at": now, "from_version": current_id},
            }
            if not self._commit(secret_id, document, current_id):
                continue  # the current version moved meanwhile: read it again
            if purpose == "access":
                # Derived from the committed set: a publication made from an older set that
                # landed after the one above is replaced (ops.publishing.publish_settled).
                self.publish_access_jwks()
            report = {
                "key_set": purpose,
                "backend": "secretsmanager",
                "revoked_kid": kid,
                "revoked_status": plan.revoked_status.value,
                "active_kid": plan.active,
                "replacement_kid": plan.replacement,
                "replacement_was_published": plan.replacement_was_published,
                "added_next_kid": plan.added_next,
                "published": purpose == "access",
                "bound_seconds": self.settings.jwks_cache_ttl_seconds,
            }
        raise KeyRotationFailed("the key set kept changing while the key was being revoked")

    def _unpublish(self, kid: str, purpose: KeyPurpose, current: KeySet) -> dict[str, Any]:
        """A kid no set holds: LookupError, unless the published JWKS still lists it (a
        publication made from an older set, whose publisher died before replacing it): then
        the document is published again, derived from the set, and the kid is gone."""
        if purpose != "access" or kid not in {
            entry.kid
            for entry in read_published_keys(
                self._ssm_client(), self.settings.public_jwks_parameter
            )
        }:
            raise LookupError(kid)
        self.publish_access_jwks()
        return {
            "key_set": purpose,
            "backend": "secretsmanager",
            "revoked_kid": kid,
            "revoked_status": "published_only",
            "active_kid": current.active.kid,
            "replacement_kid": None,
            "replacement_was_published": False,
            "added_next_kid": None,
            "published": True,
            "bound_seconds": self.settings.jwks_cache_ttl_seconds,
        }

    # --- status -----------------------------------------------------------------------------

    def describe(self, purpose: KeyPurpose) -> dict[str, Any]:
        """The set's kids, statuses and lifecycle times (no key material)."""
        from tokencore.keys.lifecycle import promotable_at, prunable_at

        secret_id = self.secret_id(purpose)
        versions = self._versions(secret_id)
        _, current = self._current(secret_id, purpose)
        policy = LifecyclePolicy.for_purpose(self.settings, purpose)
        times = self._times(purpose)
        keys = []
        for entry in current.entries:
            known = (times or {}).get(entry.kid)
            keys.append(
                {
                    "kid": entry.kid,
                    "alg": entry.alg,
                    "status": entry.status.value,
                    "created_at": entry.created_at,
                    "retired_at": entry.retired_at,
                    "published_at": known.published_at if known else None,
                    "promotable_at": promotable_at(entry, policy, times)
                    if entry.status is KeyStatus.NEXT
                    else None,
                    "removable_at": prunable_at(entry, policy, times),
                }
            )
        current_id = _current_id(versions)
        pending = [v for v, s in versions.items() if AWSPENDING in s and v != current_id]
        return {
            "key_set": purpose,
            "backend": "secretsmanager",
            "keys": keys,
            "rotation_in_progress": bool(pending),
        }

    # --- helpers ----------------------------------------------------------------------------

    def _now(self) -> int:
        return int(self._clock.now())

    def _ssm_client(self) -> Any:
        if self._ssm is None:
            raise KeyRotationFailed("the access key set needs the SSM client to publish its JWKS")
        return self._ssm

    def _times(self, purpose: KeyPurpose) -> dict[str, KeyTimes] | None:
        if purpose != "access":
            return None
        published = read_published_keys(self._ssm_client(), self.settings.public_jwks_parameter)
        return {entry.kid: KeyTimes(entry.published_at, entry.retired_at) for entry in published}

    def _call(self, what: str, operation: str, **arguments: Any) -> Any:
        try:
            return getattr(self._secrets, operation)(**arguments)
        except aws_errors() as exc:
            raise KeyUnavailable(f"could not {what} ({error_code(exc)})") from exc

    def _put_pending(
        self, what: str, secret_id: str, token: str, document: Mapping[str, Any]
    ) -> None:
        """A new version of the secret, staged AWSPENDING (AWSCURRENT moves separately)."""
        self._call(
            what,
            "put_secret_value",
            SecretId=secret_id,
            ClientRequestToken=token,
            SecretString=json.dumps(document, separators=(",", ":")),
            VersionStages=[AWSPENDING],
        )

    def _versions(self, secret_id: str) -> dict[str, list[str]]:
        described = self._call("describe the key secret", "describe_secret", SecretId=secret_id)
        versions = described.get("VersionIdsToStages") or {}
        return {str(version): list(stages) for version, stages in versions.items()}

    def _current(self, secret_id: str, purpose: KeyPurpose) -> tuple[str, KeySet]:
        response = self._call(
            "read the current key set",
            "get_secret_value",
            SecretId=secret_id,
            VersionStage=AWSCURRENT,
        )
        text = response.get("SecretString")
        if not isinstance(text, str):
            raise KeyRotationFailed("the current key set has no SecretString")
        return str(response.get("VersionId")), KeySet.from_secret_document(text, purpose)

    def _pending_text(self, secret_id: str, token: str) -> str | None:
        """The pending version's value, or None when it has none yet (Secrets Manager creates
        the version without a value when a rotation starts)."""
        try:
            response = self._secrets.get_secret_value(
                SecretId=secret_id, VersionId=token, VersionStage=AWSPENDING
            )
        except aws_errors() as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return None
            raise KeyUnavailable(f"could not read the pending key set ({error_code(exc)})") from exc
        text = response.get("SecretString")
        return text if isinstance(text, str) else None

    def _pending_set(self, secret_id: str, token: str, purpose: KeyPurpose) -> KeySet:
        text = self._pending_text(secret_id, token)
        if text is None:
            raise KeyRotationFailed("the pending version has no key set (createSecret first)")
        return KeySet.from_secret_document(text, purpose)

    def _check_pending(self, secret_id: str, token: str) -> bool:
        """True if the version is already current (nothing to do); raises unless pending."""
        stages = self._versions(secret_id).get(token)
        if stages is None:
            raise KeyRotationFailed("the rotation's version does not exist")
        if AWSCURRENT in stages:
            return True
        if AWSPENDING not in stages:
            raise KeyRotationFailed("the rotation's version is not pending (abandoned?)")
        return False

    def _commit(
        self, secret_id: str, document: Mapping[str, Any], from_version: str | None
    ) -> bool:
        """Make ``document`` the current version if ``from_version`` still is (a compare and
        swap: AWSCURRENT is moved off ``from_version`` explicitly, which fails if a rotation
        moved it first). False if it lost that race; the caller reads again."""
        token = str(uuid.uuid4())
        self._put_pending("store the new key set", secret_id, token, document)
        try:
            swapped = self._swap_current(secret_id, token, from_version)
        finally:
            self._abandon(secret_id, token)
        return swapped

    def _swap_current(self, secret_id: str, to_version: str, from_version: str | None) -> bool:
        """Move AWSCURRENT from ``from_version`` to ``to_version``: one atomic compare-and-swap.
        False when AWSCURRENT is no longer on ``from_version`` (another commit won)."""
        try:
            self._secrets.update_secret_version_stage(
                SecretId=secret_id,
                VersionStage=AWSCURRENT,
                MoveToVersionId=to_version,
                RemoveFromVersionId=from_version,
            )
        except aws_errors() as exc:
            if error_code(exc) in ("InvalidParameterException", "InvalidRequestException"):
                # Lost, unless it is our own move, retried by botocore after a lost answer.
                return _current_id(self._versions(secret_id)) == to_version
            raise KeyUnavailable(f"could not store the new key set ({error_code(exc)})") from exc
        return True

    def _abandon(self, secret_id: str, version_id: str) -> None:
        """Take AWSPENDING off ``version_id``. Already off (a concurrent revocation or rotation
        stored its own pending version, which moves the label) counts as done."""
        try:
            self._secrets.update_secret_version_stage(
                SecretId=secret_id, VersionStage=AWSPENDING, RemoveFromVersionId=version_id
            )
        except aws_errors() as exc:
            if AWSPENDING not in (self._versions(secret_id).get(version_id) or []):
                return
            raise KeyUnavailable(
                f"could not abandon a pending key set ({error_code(exc)})"
            ) from exc

    # --- the published JWKS -----------------------------------------------------------------

    def publish_access_jwks(self) -> list[PublishedKey]:
        """Publish the public JWKS derived from the access secret as it is now (``ops.publishing``
        publish_settled): the current set, plus the new keys of a pending rotation made from
        it. Every publication of the live set goes through here (and KeySetup's)."""
        return publish_access_jwks(
            self._secrets,
            self._ssm_client(),
            self.secret_id("access"),
            self.settings.public_jwks_parameter,
            self._clock,
        )

    def _version_age(self, secret_id: str, version_id: str) -> float | None:
        try:
            listed = self._secrets.list_secret_version_ids(
                SecretId=secret_id, IncludeDeprecated=True
            )
        except aws_errors():
            return None
        for version in listed.get("Versions") or []:
            if version.get("VersionId") == version_id and version.get("CreatedDate"):
                created = version["CreatedDate"]
                stamp = created.timestamp() if hasattr(created, "timestamp") else float(created)
                return max(0.0, self._clock.now() - stamp)
        return None

    def _probe(self, purpose: KeyPurpose, entry: Any, lookup: KeyRing) -> None:
        """Sign a short-lived probe token with ``entry`` and verify it through ``lookup``."""
        from tokencore.tokens import (
            AccessClaims,
            RefreshClaims,
            VerifyOptions,
            mint_access_token,
            mint_refresh_token,
            new_token_id,
            verify_access_token,
            verify_refresh_token,
        )

        settings = self.settings
        now = self._clock.now()
        issued_at = int(now)
        signer = LocalSigner(entry)
        try:
            if purpose == "access":
                access = AccessClaims(
                    issuer=settings.token_issuer,
                    audience=settings.token_audience,
                    subject=PROBE_SUBJECT,
                    session_id=PROBE_SUBJECT,
                    token_id=new_token_id(),
                    issued_at=issued_at,
                    expires_at=issued_at + PROBE_TTL_SECONDS,
                )
                minted = mint_access_token(signer, access)
                verify_access_token(minted.token, lookup, VerifyOptions.for_access(settings), now)
            else:
                refresh = RefreshClaims(
                    issuer=settings.token_issuer,
                    audience=settings.token_issuer,
                    subject=PROBE_SUBJECT,
                    session_id=PROBE_SUBJECT,
                    token_id=new_token_id(),
                    generation=0,
                    issued_at=issued_at,
                    expires_at=issued_at + PROBE_TTL_SECONDS,
                )
                minted = mint_refresh_token(signer, refresh)
                verify_refresh_token(minted.token, lookup, VerifyOptions.for_refresh(settings), now)
        except TokenCoreError as exc:
            raise KeyRotationFailed(
                f"a probe token signed by {entry.kid} did not verify ({exc.code})"
            ) from exc


def publish_access_jwks(
    secrets: Any, ssm: Any, secret_id: str, parameter_name: str, clock: Clock = SYSTEM_CLOCK
) -> list[PublishedKey]:
    """Publish the access secret's public JWKS, derived from the secret (GetSecretValue only:
    KeySetup has no other permission on it), until it settles (``publishing.publish_settled``)."""
    return publish_settled(
        ssm,
        parameter_name,
        lambda _: derive_access_jwks(secrets, secret_id),
        now=clock.now,
        source_now=lambda: _access_versions(secrets, secret_id),
    )


def derive_access_jwks(secrets: Any, secret_id: str) -> Derivation:
    """What verifiers must know now: every key of the current access set (statuses as they
    are) and the keys a pending rotation made from it adds (next keys, published before the
    rotation can make them sign). Its source: (current version id, pending version id)."""
    current_id, current_text, pending_id, pending_text = _access_stages(secrets, secret_id)
    if current_text is None:
        raise KeyRotationFailed("the current key set has no SecretString")
    keys = KeySet.from_secret_document(current_text, "access").verification_keys()
    if pending_text is not None:
        known = {key.kid for key in keys}
        pending = KeySet.from_secret_document(pending_text, "access")
        keys += [key for key in pending.verification_keys() if key.kid not in known]
    return Derivation(keys, source=(current_id, pending_id))


def _access_versions(secrets: Any, secret_id: str) -> tuple[str | None, str | None]:
    """``derive_access_jwks``'s source as it is now (two reads, nothing parsed)."""
    current_id, _, pending_id, _ = _access_stages(secrets, secret_id)
    return current_id, pending_id


def _access_stages(
    secrets: Any, secret_id: str
) -> tuple[str | None, str | None, str | None, str | None]:
    """(current id, its value, pending id, its value). The pending version counts only while
    it is a rotation made from the current one (one made from an older set will be abandoned,
    never finished)."""
    current_id, current_text = _read_stage(secrets, secret_id, AWSCURRENT)
    pending_id, pending_text = _read_stage(secrets, secret_id, AWSPENDING)
    if (
        pending_id == current_id
        or pending_text is None
        or _record(pending_text).get("from_version") != current_id
    ):
        return current_id, current_text, None, None
    return current_id, current_text, pending_id, pending_text


def _read_stage(secrets: Any, secret_id: str, stage: str) -> tuple[str | None, str | None]:
    """(version id, SecretString) of the version holding ``stage``; (None, None) if none does,
    and (id, None) for a version without a value (a rotation Secrets Manager has just begun)."""
    try:
        response = secrets.get_secret_value(SecretId=secret_id, VersionStage=stage)
    except aws_errors() as exc:
        if error_code(exc) == "ResourceNotFoundException" and stage != AWSCURRENT:
            return None, None
        raise KeyUnavailable(f"could not read the access key set ({error_code(exc)})") from exc
    version = response.get("VersionId")
    text = response.get("SecretString")
    return (
        str(version) if version is not None else None,
        text if isinstance(text, str) else None,
    )


def _current_id(versions: Mapping[str, list[str]]) -> str | None:
    return next((v for v, stages in versions.items() if AWSCURRENT in stages), None)


def _record(text: str) -> dict[str, Any]:
    """The ``rotation`` record of a stored document ({} if there is none)."""
    try:
        document = json_object(text, ValueError)
    except ValueError:
        return {}
    record = document.get("rotation")
    return record if isinstance(record, dict) else {}


def _plan_record(plan: RotationPlan) -> dict[str, Any]:
    return {
        "promoted": plan.promoted,
        "retired": plan.retired,
        "added_next": plan.added_next,
        "pruned": list(plan.pruned),
        "deferred_until": plan.deferred_until,
        "deferred_reason": plan.deferred_reason,
    }


def _kids(key_set: KeySet, status: KeyStatus) -> list[str]:
    return [entry.kid for entry in key_set.entries if entry.status is status]
