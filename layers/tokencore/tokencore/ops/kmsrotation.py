"""Rotating and revoking the access-token signing key in KMS mode (``tokenctl rotate-keys`` and
``revoke-key`` with ``KEY_BACKEND=kms``; KeySetup republishes with it on every deployment).

A KMS private key never leaves KMS, so a rotation is a new KMS key and a moved alias: the
functions sign through ``KMS_SIGNING_KEY_ID`` (an alias), ``<alias>-next`` names the next key,
and retired keys live on only as public keys in the published JWKS. The lifecycle is
``keys.lifecycle``'s; verifiers never call KMS. KMS has no conditional alias update, so every
rotation and revocation holds the lock alias ``<alias>-lock`` (CreateAlias refuses a name that
exists: exactly one racing operation gets it) and a second one is refused at once. KeySetup
takes no lock: it only publishes, and every publication is derived and settles. docs/keys.md
("Runbook: KMS keys", "Two operations at once") has the steps and the runbook.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from tokencore.awsclient import aws_errors, error_code
from tokencore.clock import SYSTEM_CLOCK, Clock
from tokencore.errors import InvalidKeyMaterial, KeyRotationFailed, KeyUnavailable
from tokencore.keys.kms import KmsPublicKey, describe_public_key, kms_algorithm
from tokencore.keys.lifecycle import LifecyclePolicy
from tokencore.keys.model import KeyStatus, VerificationKey
from tokencore.ops.publishing import (
    Derivation,
    PublishedKey,
    publish_settled,
    read_published_keys,
)

if TYPE_CHECKING:
    from tokencore.config import Settings

NEXT_SUFFIX: Final = "-next"
LOCK_SUFFIX: Final = "-lock"
KEY_DESCRIPTION: Final = "tokencore access-token signing key (created by tokenctl)"


def alias_name(key_id: str) -> str | None:
    """``alias/name`` for an alias name or alias ARN; None for a key id or key ARN."""
    if key_id.startswith("alias/"):
        return key_id
    if key_id.startswith("arn:") and ":alias/" in key_id:
        return "alias/" + key_id.split(":alias/", 1)[1]
    return None


@dataclass(frozen=True, slots=True)
class KmsState:
    active: KmsPublicKey
    next: KmsPublicKey | None
    published: list[PublishedKey]


class KmsRotation:
    def __init__(
        self,
        *,
        kms: Any,
        ssm: Any,
        signing_key_id: str,
        parameter_name: str,
        alg: str,
        policy: LifecyclePolicy,
        verify_key_ids: Sequence[str] = (),
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._kms = kms
        self._ssm = ssm
        self._signing_key_id = signing_key_id
        self._alias = alias_name(signing_key_id)
        self._parameter = parameter_name
        self._alg = alg
        self._policy = policy
        self._verify_key_ids = tuple(key_id for key_id in verify_key_ids if key_id)
        self._clock = clock

    @classmethod
    def from_settings(
        cls, settings: Settings, *, kms: Any, ssm: Any, clock: Clock = SYSTEM_CLOCK
    ) -> KmsRotation:
        return cls(
            kms=kms,
            ssm=ssm,
            signing_key_id=settings.kms_signing_key_id,
            parameter_name=settings.public_jwks_parameter,
            alg=settings.access_token_alg,
            policy=LifecyclePolicy.for_purpose(settings, "access"),
            verify_key_ids=settings.kms_verify_key_ids,
            clock=clock,
        )

    @property
    def next_alias(self) -> str | None:
        return None if self._alias is None else self._alias + NEXT_SUFFIX

    # --- reading ----------------------------------------------------------------------------

    def state(self) -> KmsState:
        active, following = self._aliased()
        return KmsState(active, following, read_published_keys(self._ssm, self._parameter))

    def _aliased(self) -> tuple[KmsPublicKey, KmsPublicKey | None]:
        """The signing key and the next key, as the aliases name them now."""
        active = describe_public_key(
            self._kms, self._signing_key_id, status=KeyStatus.ACTIVE, label="KMS signing key"
        )
        following = None
        if self.next_alias is not None:
            try:
                following = describe_public_key(
                    self._kms, self.next_alias, status=KeyStatus.NEXT, label="next KMS key"
                )
            except KeyUnavailable as exc:
                if "NotFoundException" not in exc.message:
                    raise
        return active, following

    def _alias_targets(self) -> tuple[str, str | None]:
        """The source a publication is derived from: the two aliases' key ARNs."""
        active, following = self._aliased()
        return active.arn, following.arn if following is not None else None

    # --- publishing -------------------------------------------------------------------------

    def _derive(
        self,
        active: KmsPublicKey,
        following: KmsPublicKey | None,
        previous: Sequence[PublishedKey],
        *,
        drop: Iterable[str] = (),
        retiring: KmsPublicKey | None = None,
        pruned: list[PublishedKey] | None = None,
    ) -> Derivation:
        """Active + next + ``retiring`` + the retired keys still needed and KMS_VERIFY_KEY_IDS
        (never dropped while listed); the keys ``previous`` held that expired go to
        ``pruned``."""
        now = int(self._clock.now())
        dropped = set(drop)
        keys: list[VerificationKey] = [_with_status(active.key, KeyStatus.ACTIVE)]
        arns = {active.key.kid: active.arn}
        if following is not None and following.key.kid != active.key.kid:
            keys.append(_with_status(following.key, KeyStatus.NEXT))
            arns[following.key.kid] = following.arn
        if retiring is not None and retiring.key.kid not in {key.kid for key in keys}:
            keys.append(_with_status(retiring.key, KeyStatus.RETIRED))
            arns[retiring.key.kid] = retiring.arn
        listed = {key.kid for key in keys}
        for index, key_id in enumerate(self._verify_key_ids, start=1):
            older = describe_public_key(
                self._kms, key_id, status=KeyStatus.RETIRED, label=f"KMS verify key {index}"
            )
            if older.key.kid not in listed and older.key.kid not in dropped:
                keys.append(older.key)
                arns[older.key.kid] = older.arn
                listed.add(older.key.kid)
        for entry in previous:
            if entry.kid in listed or entry.kid in dropped:
                continue
            if entry.status is KeyStatus.NEXT:
                continue  # a next key that never became active signed nothing: drop it
            expired = (
                entry.status is KeyStatus.RETIRED
                and entry.retired_at is not None
                and now >= entry.retired_at + self._policy.retired_keep_seconds
            )
            if expired:
                if pruned is not None:
                    pruned.append(entry)
                continue
            # Retired, or active until now (the alias moved elsewhere): keep it, retired.
            keys.append(_with_status(entry.key, KeyStatus.RETIRED))
            listed.add(entry.kid)
        return Derivation(
            keys, source=(active.arn, following.arn if following else None), kms_key_ids=arns
        )

    def _publish_planned(
        self,
        active: KmsPublicKey,
        following: KmsPublicKey | None,
        *,
        drop: Iterable[str] = (),
        retiring: KmsPublicKey | None = None,
    ) -> list[PublishedKey]:
        """Publish a state the aliases are about to reach (before they move, so verifiers know
        a key before it signs); returns the expired keys it dropped."""
        pruned: list[PublishedKey] = []

        def derive(previous: list[PublishedKey]) -> Derivation:
            pruned.clear()
            return self._derive(
                active, following, previous, drop=drop, retiring=retiring, pruned=pruned
            )

        publish_settled(self._ssm, self._parameter, derive, now=self._clock.now)
        return pruned

    def _publish_aliased(self, *, drop: Iterable[str] = ()) -> list[PublishedKey]:
        """Publish the state the aliases name now, until it settles (``ops.publishing``)."""

        def derive(previous: list[PublishedKey]) -> Derivation:
            active, following = self._aliased()
            return self._derive(active, following, previous, drop=drop)

        return publish_settled(
            self._ssm,
            self._parameter,
            derive,
            now=self._clock.now,
            source_now=self._alias_targets,
        )

    def publish(self) -> list[PublishedKey]:
        """Publish the keys as they are (KeySetup, on every deployment): the alias's key, the
        next key, the retired keys still needed and KMS_VERIFY_KEY_IDS."""
        active, _ = self._aliased()
        if active.key.alg != self._alg:
            raise InvalidKeyMaterial(
                f"the KMS signing key is a {active.key.alg} key, but the access-token "
                f"algorithm is {self._alg}"
            )
        return self._publish_aliased()

    # --- the lock ---------------------------------------------------------------------------

    @property
    def lock_alias(self) -> str | None:
        return None if self._alias is None else self._alias + LOCK_SUFFIX

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold ``<alias>-lock`` (see the module doc); without an alias there is nothing to
        serialize against (a key given by ARN is rotated by redeploying)."""
        lock = self.lock_alias
        if lock is None:
            yield
            return
        target = self._call("read the KMS signing key", "get_public_key", KeyId=self._alias)
        try:
            self._kms.create_alias(AliasName=lock, TargetKeyId=str(target["KeyId"]))
        except aws_errors() as exc:
            if error_code(exc) == "AlreadyExistsException":
                raise KeyRotationFailed(
                    f"another key operation (rotate-keys or revoke-key) holds {lock}: retry once "
                    "it has finished. If none is running (one was interrupted), delete that "
                    "alias first"
                ) from exc
            raise KeyUnavailable(
                f"could not take the key-operation lock ({error_code(exc)})"
            ) from exc
        try:
            yield
        finally:
            self._call("release the key-operation lock", "delete_alias", AliasName=lock)

    # --- rotation ---------------------------------------------------------------------------

    def rotate(self, *, force: bool = False) -> dict[str, Any]:
        alias, next_alias = self._require_alias()
        with self._exclusive():
            return self._rotate(alias, next_alias, force=force)

    def _rotate(self, alias: str, next_alias: str, *, force: bool) -> dict[str, Any]:
        state = self.state()
        now = int(self._clock.now())
        published = {entry.kid: entry for entry in state.published}
        report: dict[str, Any] = {
            "key_set": "access",
            "backend": "kms",
            "promoted": False,
            "newly_retired_kid": None,
            "added_next_kid": None,
            "deferred_until": None,
            "deferred_reason": None,
            "published": True,
        }
        if state.next is None:
            created = self._create_key()
            pruned = self._publish_planned(state.active, created)
            self._point(next_alias, created.arn, exists=False)
            report.update(
                active_kid=state.active.key.kid,
                added_next_kid=created.key.kid,
                deferred_reason="there was no next key: this one is promoted by the next "
                "rotation, once verifiers have had it for JWKS_CACHE_TTL_SECONDS",
            )
        else:
            seen = published.get(state.next.key.kid)
            ready_at = (
                None
                if seen is None or seen.published_at is None
                else seen.published_at + self._policy.next_min_age_seconds
            )
            if not force and (seen is None or (ready_at is not None and now < ready_at)):
                pruned = self._publish_planned(state.active, state.next)
                report.update(
                    active_kid=state.active.key.kid,
                    deferred_until=ready_at,
                    deferred_reason="verifiers may not have seen the next key yet",
                )
            else:
                created = self._create_key()
                pruned = self._publish_planned(state.next, created, retiring=state.active)
                self._point(alias, state.next.arn, exists=True)
                self._point(next_alias, created.arn, exists=True)
                report.update(
                    promoted=True,
                    active_kid=state.next.key.kid,
                    newly_retired_kid=state.active.key.kid,
                    added_next_kid=created.key.kid,
                )
        # Derived from the aliases as they now are: replaces a publication made meanwhile from
        # the state before (KeySetup during a deployment).
        self._publish_aliased()
        report["pruned_kids"] = [entry.kid for entry in pruned]
        report["pruned_kms_key_ids"] = [entry.kms_key_id for entry in pruned if entry.kms_key_id]
        report["retired_kids"] = [
            entry.kid
            for entry in read_published_keys(self._ssm, self._parameter)
            if entry.status is KeyStatus.RETIRED
        ]
        report["alg"] = self._alg
        return report

    def revoke(self, kid: str) -> dict[str, Any]:
        with self._exclusive():
            report = self._revoke(kid)
            # Derived from the aliases as they now are, without the key: replaces a publication
            # made meanwhile from the state before (KeySetup during a deployment).
            self._publish_aliased(drop=[kid])
            return report

    def _revoke(self, kid: str) -> dict[str, Any]:
        state = self.state()
        report: dict[str, Any] = {
            "key_set": "access",
            "backend": "kms",
            "revoked_kid": kid,
            "replacement_kid": None,
            "replacement_was_published": False,
            "added_next_kid": None,
            "published": True,
        }
        if kid == state.active.key.kid:
            alias, next_alias = self._require_alias()
            if state.next is not None:
                replacement, report["replacement_was_published"] = state.next, True
            else:
                replacement = self._create_key()
            following = self._create_key()
            self._publish_planned(replacement, following, drop=[kid])
            self._point(alias, replacement.arn, exists=True)
            self._point(next_alias, following.arn, exists=state.next is not None)
            self._disable(state.active.arn)
            report.update(
                revoked_status="active",
                active_kid=replacement.key.kid,
                replacement_kid=replacement.key.kid,
                added_next_kid=following.key.kid,
                disabled_kms_key_id=state.active.arn,
            )
        elif state.next is not None and kid == state.next.key.kid:
            _, next_alias = self._require_alias()
            self._publish_planned(state.active, None, drop=[kid])
            self._delete_alias(next_alias)
            self._disable(state.next.arn)
            report.update(
                revoked_status="next",
                active_kid=state.active.key.kid,
                disabled_kms_key_id=state.next.arn,
            )
        else:
            entry = next((e for e in state.published if e.kid == kid), None)
            if entry is None:
                raise LookupError(kid)
            self._publish_planned(state.active, state.next, drop=[kid])
            if entry.kms_key_id:
                self._disable(entry.kms_key_id)
            report.update(
                revoked_status=entry.status.value,
                active_kid=state.active.key.kid,
                disabled_kms_key_id=entry.kms_key_id,
            )
        return report

    def describe(self) -> dict[str, Any]:
        state = self.state()
        keys = []
        for entry in state.published:
            removable = (
                entry.retired_at + self._policy.retired_keep_seconds
                if entry.status is KeyStatus.RETIRED and entry.retired_at is not None
                else None
            )
            promotable = (
                entry.published_at + self._policy.next_min_age_seconds
                if entry.status is KeyStatus.NEXT and entry.published_at is not None
                else None
            )
            keys.append(
                {
                    "kid": entry.kid,
                    "alg": entry.key.alg,
                    "status": entry.status.value,
                    "kms_key_id": entry.kms_key_id,
                    "published_at": entry.published_at,
                    "retired_at": entry.retired_at,
                    "promotable_at": promotable,
                    "removable_at": removable,
                }
            )
        return {
            "key_set": "access",
            "backend": "kms",
            "signing_key": state.active.key.kid,
            "next_key": state.next.key.kid if state.next else None,
            "keys": keys,
        }

    # --- KMS calls --------------------------------------------------------------------------

    def _require_alias(self) -> tuple[str, str]:
        if self._alias is None or self.next_alias is None:
            raise KeyRotationFailed(
                "KMS_SIGNING_KEY_ID names a key, not an alias: rotate by redeploying with "
                "KmsSigningKeyId=<new key> and KmsVerifyKeyIds=<old key> (docs/keys.md), or "
                "sign through an alias"
            )
        return self._alias, self.next_alias

    def _call(self, what: str, operation: str, **arguments: Any) -> Any:
        try:
            return getattr(self._kms, operation)(**arguments)
        except aws_errors() as exc:
            raise KeyUnavailable(f"could not {what} ({error_code(exc)})") from exc

    def _create_key(self) -> KmsPublicKey:
        # The key spec a new key gets: the first of its algorithm's (RSA_2048 for RS256).
        algorithm = kms_algorithm(self._alg)
        if algorithm is None:
            raise KeyRotationFailed(f"KMS cannot sign {self._alg}")
        spec = algorithm.kms_key_specs[0]
        created = self._call(
            "create a KMS key",
            "create_key",
            KeyUsage="SIGN_VERIFY",
            KeySpec=spec,
            Description=KEY_DESCRIPTION,
            Tags=[{"TagKey": "tokencore:purpose", "TagValue": "access-token-signing"}],
        )
        arn = str(created["KeyMetadata"]["Arn"])
        return describe_public_key(
            self._kms, arn, expected_alg=self._alg, status=KeyStatus.NEXT, label="new KMS key"
        )

    def _point(self, alias: str, key_arn: str, *, exists: bool) -> None:
        name = alias_name(alias) or alias
        if exists:
            try:
                self._kms.update_alias(AliasName=name, TargetKeyId=key_arn)
            except aws_errors() as exc:
                if error_code(exc) != "NotFoundException":
                    raise KeyUnavailable(f"could not move a KMS alias ({error_code(exc)})") from exc
            else:
                return
        self._call("create a KMS alias", "create_alias", AliasName=name, TargetKeyId=key_arn)

    def _delete_alias(self, alias: str) -> None:
        self._call("delete a KMS alias", "delete_alias", AliasName=alias_name(alias) or alias)

    def _disable(self, key_arn: str) -> None:
        self._call("disable the revoked KMS key", "disable_key", KeyId=key_arn)


def _with_status(key: VerificationKey, status: KeyStatus) -> VerificationKey:
    return VerificationKey(kid=key.kid, alg=key.alg, key=key.key, status=status)
