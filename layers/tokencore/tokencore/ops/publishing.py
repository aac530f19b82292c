"""Publishing the public access-token JWKS to its SSM parameter (``keys.ssm`` reads it).

Whoever rotates the access key set publishes its public half, with stamps (``published_at``,
``retired_at``, ``kms_key_id``) that record when verifiers could first see a key and when it
stopped signing. PutParameter has no condition, so two publishers can race; ``publish_settled``
makes that harmless: the document is derived from the source of truth, and a publisher checks
after its write that nobody wrote in between and the source has not moved, else publishes again.
docs/keys.md walks through the stamps and the race; tests/contract/test_key_races.py proves it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from tokencore.awsclient import aws_errors, error_code
from tokencore.errors import InvalidKeyMaterial, KeyUnavailable
from tokencore.keys.jwk import parse_json_document, parse_jwks
from tokencore.keys.jwks import jwks_document, sort_by_status
from tokencore.keys.keyset import KeySet
from tokencore.keys.model import KeyStatus, VerificationKey

_WHAT: Final = "public JWKS parameter"
_MAX_STAMP: Final = 2**40
# Rounds of publish-then-check before giving up (each round is a concurrent publication or
# commit that landed during the previous one: more than a few means something is looping).
PUBLISH_ATTEMPTS: Final = 8


def publish_public_jwks(
    ssm_client: Any, parameter_name: str, key_set: KeySet, now: float | None = None
) -> list[PublishedKey]:
    """Write the public half of ``key_set`` to ``parameter_name`` (String, overwritten), keeping
    the stamps of keys already published (see the module doc). For a set nobody else publishes
    (a new stack, tests): a publisher of the stack's live set derives it with
    ``publish_settled`` (ops.rotation, ops.kmsrotation)."""
    if key_set.purpose != "access":
        # A refresh set holds HMAC secrets; jwks_document would drop them anyway.
        raise InvalidKeyMaterial("only the access key set has a public JWKS")
    return publish_planned(
        ssm_client,
        parameter_name,
        key_set.verification_keys(),
        now=(lambda: time.time()) if now is None else (lambda: now),
    )


def publish_planned(
    ssm_client: Any,
    parameter_name: str,
    keys: Sequence[VerificationKey],
    *,
    now: Callable[[], float],
) -> list[PublishedKey]:
    """Publish exactly ``keys``: a state about to be committed (a revocation publishes the set
    without the key before it writes the set), or one nobody else publishes. Stamps are carried
    as ``publish_settled`` carries them, lost updates included; there is no source to check, so
    the committer publishes again, derived, once it has committed."""
    fixed = list(keys)
    return publish_settled(
        ssm_client, parameter_name, lambda _: Derivation(fixed, source=None), now=now
    )


@dataclass(frozen=True, slots=True)
class PublishedKey:
    """A key as the parameter holds it: the public key and its publication stamps."""

    key: VerificationKey
    published_at: int | None = None
    retired_at: int | None = None
    kms_key_id: str | None = None

    @property
    def kid(self) -> str:
        return self.key.kid

    @property
    def status(self) -> KeyStatus:
        return self.key.status


def _stamp(jwk: Mapping[str, Any], name: str) -> int | None:
    value = jwk.get(name)
    return value if type(value) is int and 0 <= value < _MAX_STAMP else None


def parse_published(text: str) -> list[PublishedKey]:
    """The keys of a published document with their stamps. The keys are parsed by the
    verifiers' strict parser; a stamp that is not a sane epoch is read as absent (which only
    makes the lifecycle more careful: a key looks freshly published and freshly retired)."""
    document = parse_json_document(text, _WHAT)
    keys = {key.kid: key for key in parse_jwks(document)}
    found: list[PublishedKey] = []
    for jwk in document["keys"]:
        kms_key_id = jwk.get("kms_key_id")
        found.append(
            PublishedKey(
                keys[jwk["kid"]],
                published_at=_stamp(jwk, "published_at"),
                retired_at=_stamp(jwk, "retired_at"),
                kms_key_id=kms_key_id if isinstance(kms_key_id, str) and kms_key_id else None,
            )
        )
    return found


def read_published_keys(ssm_client: Any, parameter_name: str) -> list[PublishedKey]:
    """The published keys; ``[]`` when the parameter is missing or still the template's empty
    placeholder. Raises KeyUnavailable on a read failure, InvalidKeyMaterial on a bad document."""
    try:
        response = ssm_client.get_parameter(Name=parameter_name)
    except aws_errors() as exc:
        if error_code(exc) == "ParameterNotFound":
            return []
        raise KeyUnavailable(f"could not read the {_WHAT} ({error_code(exc)})") from exc
    value = (response.get("Parameter") or {}).get("Value")
    if not isinstance(value, str):
        raise InvalidKeyMaterial(f"{_WHAT} has no value")
    document = parse_json_document(value, _WHAT)
    if document.get("keys") == []:
        return []
    return parse_published(value)


@dataclass(frozen=True, slots=True)
class PublishedState:
    """The parameter as one GetParameter found it."""

    keys: list[PublishedKey]
    version: int  # 0: the parameter does not exist yet
    text: str | None


def read_published_state(
    ssm_client: Any, parameter_name: str, version: int | None = None
) -> PublishedState:
    """The parameter (or one ``version`` of it) with its version number. A document that does
    not parse reads as no keys (its publisher stamps every key anew: the careful direction, and
    the write repairs it); a failed read raises KeyUnavailable, so nobody publishes blind."""
    name = parameter_name if version is None else f"{parameter_name}:{version}"
    try:
        response = ssm_client.get_parameter(Name=name)
    except aws_errors() as exc:
        if error_code(exc) == "ParameterNotFound" and version is None:
            return PublishedState([], 0, None)
        raise KeyUnavailable(f"could not read the {_WHAT} ({error_code(exc)})") from exc
    parameter = response.get("Parameter") or {}
    value, number = parameter.get("Value"), parameter.get("Version")
    if type(number) is not int or number < 1:
        raise KeyUnavailable(f"{_WHAT} has no version number")
    if not isinstance(value, str):
        return PublishedState([], number, None)
    try:
        document = parse_json_document(value, _WHAT)
        keys = [] if document.get("keys") == [] else parse_published(value)
    except InvalidKeyMaterial:
        keys = []
    return PublishedState(keys, number, value)


def merge_stamps(
    latest: Sequence[PublishedKey], overwritten: Sequence[Sequence[PublishedKey]]
) -> list[PublishedKey]:
    """The stamps to carry after a lost update: the latest document's keys, corrected by the
    documents a publisher overwrote without having read them.

    * A kid missing from any of them reappeared: verifiers may have cached the document that
      lacked it, so it carries no ``published_at`` (it is stamped anew); otherwise the latest
      of its stamps (never earlier than any publisher believed).
    * ``retired_at``: the earliest stamp any of them recorded. Every retired status is derived
      from a committed state, so the key had stopped signing by then; the overwriting document
      may have shown it active only because it was made from an older state.
    * A kid only the overwritten documents have is not carried: they were removed (pruned,
      revoked) by whoever wrote the latest document, or will be re-derived by the caller.
    """
    result: list[PublishedKey] = []
    for entry in latest:
        copies = [next((e for e in doc if e.kid == entry.kid), None) for doc in overwritten]
        seen = [entry, *(copy for copy in copies if copy is not None)]
        published_at: int | None = None
        if all(copy is not None for copy in copies):
            stamps = [e.published_at for e in seen if e.published_at is not None]
            published_at = max(stamps) if stamps else None
        retirements = [
            e.retired_at for e in seen if e.status is KeyStatus.RETIRED and e.retired_at is not None
        ]
        retired_at = min(retirements) if retirements else None
        key = entry.key
        if retired_at is not None and key.status is not KeyStatus.RETIRED:
            key = replace(key, status=KeyStatus.RETIRED)
        result.append(
            PublishedKey(
                key,
                published_at=published_at,
                retired_at=retired_at,
                kms_key_id=entry.kms_key_id
                or next((c.kms_key_id for c in copies if c and c.kms_key_id), None),
            )
        )
    return result


@dataclass(frozen=True, slots=True)
class Derivation:
    """What to publish, and what it was derived from (compared with ``source_now()``)."""

    keys: Sequence[VerificationKey]
    source: object
    kms_key_ids: Mapping[str, str] | None = None


def publish_settled(
    ssm_client: Any,
    parameter_name: str,
    derive: Callable[[list[PublishedKey]], Derivation],
    *,
    now: Callable[[], float],
    source_now: Callable[[], object] | None = None,
    attempts: int = PUBLISH_ATTEMPTS,
) -> list[PublishedKey]:
    """Publish ``derive(stamps already published)`` until the document written is the one
    after the version read and the source it was derived from is still current (see the
    module doc). Returns what the last document recorded. Nothing is written when the document
    would not change. KeyUnavailable when it does not settle within ``attempts`` rounds."""
    base = read_published_state(ssm_client, parameter_name)
    carried = base.keys
    for _ in range(attempts):
        derived = derive(carried)
        document, recorded = published_document(
            sort_by_status(derived.keys),
            now(),
            previous=carried,
            kms_key_ids=derived.kms_key_ids,
        )
        text = _checked_text(document)
        written = base.version if text == base.text else _put(ssm_client, parameter_name, text)
        continuous = written <= base.version + 1
        if continuous and (source_now is None or source_now() == derived.source):
            return recorded
        latest = read_published_state(ssm_client, parameter_name)
        if continuous:
            carried = latest.keys
        else:
            overwritten = [
                read_published_state(ssm_client, parameter_name, version).keys
                for version in range(base.version + 1, written)
            ]
            carried = merge_stamps(latest.keys, overwritten)
        base = latest
    raise KeyUnavailable(f"the {_WHAT} kept changing while it was being published; retry")


def read_published_keys_or_none(ssm_client: Any, parameter_name: str) -> list[PublishedKey]:
    """``read_published_keys``, or ``[]`` if the document cannot be read or parsed: publishing
    then stamps every key as published and retired now, the careful direction."""
    try:
        return read_published_keys(ssm_client, parameter_name)
    except KeyUnavailable:
        return []


def published_document(
    keys: Sequence[VerificationKey],
    now: float,
    *,
    previous: Sequence[PublishedKey] = (),
    kms_key_ids: Mapping[str, str] | None = None,
) -> tuple[dict[str, list[dict[str, Any]]], list[PublishedKey]]:
    """The document to publish for ``keys`` and what it records, stamps carried over from
    ``previous`` by kid: ``published_at`` from the kid's first publication, ``retired_at``
    from the first publication that showed it retired."""
    stamp_now = int(now)
    before = {entry.kid: entry for entry in previous}
    entries: list[dict[str, Any]] = []
    recorded: list[PublishedKey] = []
    base = jwks_document(keys)  # public members only; refuses symmetric keys and twins
    by_kid = {key.kid: key for key in keys}
    for jwk in base["keys"]:
        key = by_kid[jwk["kid"]]
        old = before.get(key.kid)
        published_at = old.published_at if old and old.published_at is not None else stamp_now
        retired_at = None
        if key.status is KeyStatus.RETIRED:
            was_retired = old is not None and old.status is KeyStatus.RETIRED
            kept = old.retired_at if old is not None and was_retired else None
            retired_at = kept if kept is not None else stamp_now
        kms_key_id = (kms_key_ids or {}).get(key.kid) or (old.kms_key_id if old else None)
        entry: dict[str, Any] = {**jwk, "status": key.status.value, "published_at": published_at}
        if retired_at is not None:
            entry["retired_at"] = retired_at
        if kms_key_id:
            entry["kms_key_id"] = kms_key_id
        entries.append(entry)
        recorded.append(PublishedKey(key, published_at, retired_at, kms_key_id))
    return {"keys": entries}, recorded


def publish_keys(
    ssm_client: Any,
    parameter_name: str,
    keys: Sequence[VerificationKey],
    now: float,
    *,
    previous: Sequence[PublishedKey] = (),
    kms_key_ids: Mapping[str, str] | None = None,
) -> list[PublishedKey]:
    """Publish ``keys`` (public only; active, then next, then retired) with their stamps, after
    parsing the document back with the verifiers' strict parser. Returns what was recorded."""
    document, recorded = published_document(
        sort_by_status(keys), now, previous=previous, kms_key_ids=kms_key_ids
    )
    _put(ssm_client, parameter_name, _checked_text(document))
    return recorded


def _checked_text(document: Mapping[str, Any]) -> str:
    # public_jwk wrote the key members, so nothing private is here; the verifiers' strict
    # parser reads it back, so a bad rotation fails at the publisher, not in every verifier.
    parse_jwks(document)
    return json.dumps(document, separators=(",", ":"))


def _put(ssm_client: Any, parameter_name: str, text: str) -> int:
    """PutParameter; the version it created."""
    try:
        response = ssm_client.put_parameter(
            Name=parameter_name, Value=text, Type="String", Overwrite=True
        )
    except aws_errors() as exc:
        raise KeyUnavailable(f"could not publish the {_WHAT} ({error_code(exc)})") from exc
    version = response.get("Version") if isinstance(response, dict) else None
    if type(version) is not int:
        raise KeyUnavailable(f"the {_WHAT} was written but its version is unknown")
    return version
