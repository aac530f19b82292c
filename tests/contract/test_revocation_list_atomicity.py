"""The revocation list's invariant: a revoked session is listed, and a listed session is
revoked. The store writes both in one transaction (sessions/dynamodb.py); this test shows the
invariant check catches a store that writes them as two separate writes, whichever order, when
the second write fails after the first landed (a fault between them, deterministic) or the
revocation is refused after the entry was written.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.clock import ManualClock
from tokencore.awsclient import ConditionFailed
from tokencore.errors import SessionNotFound, StoreUnavailable
from tokencore.revocations import REVOKED_PREFIX, entries_of
from tokencore.sessions import DynamoDBSessionStore
from tokencore.sessions.base import STATUS_REVOKED, Revocation, WriteOutcome

from .conftest import Backend, FaultInjector, service_error

on_moto = pytest.mark.parametrize("dynamodb_backend", ["moto"], indirect=True)


class RevocationThenEntry(DynamoDBSessionStore):
    """Deliberately broken: the session's conditional update, then its list entry, as two
    writes. A failure between them leaves a revoked session unlisted."""

    def _write_revocation(self, revocation: Revocation) -> WriteOutcome:
        update, listing = self.revocation_actions(revocation)
        try:
            self._request("update_item", update["Update"])
        except ConditionFailed:
            return WriteOutcome(False, self._read(revocation.session_id))
        self._request("update_item", listing["Update"])
        return WriteOutcome(True, None)


class EntryThenRevocation(DynamoDBSessionStore):
    """Deliberately broken: the list entry first, then the session's conditional update. A
    refused or failed update leaves a session listed that was never revoked (another user's
    session, through DELETE /auth/sessions/{id}: a way to deny someone else's tokens)."""

    def _write_revocation(self, revocation: Revocation) -> WriteOutcome:
        update, listing = self.revocation_actions(revocation)
        self._request("update_item", listing["Update"])
        try:
            self._request("update_item", update["Update"])
        except ConditionFailed:
            return WriteOutcome(False, self._read(revocation.session_id))
        return WriteOutcome(True, None)


STORES: dict[str, type[DynamoDBSessionStore]] = {
    "one_transaction": DynamoDBSessionStore,
    "revocation_then_entry": RevocationThenEntry,
    "entry_then_revocation": EntryThenRevocation,
}


def mismatches(backend: Backend) -> tuple[set[str], set[str]]:
    """The invariant, read around the store: (revoked but not listed, listed but not revoked),
    both empty when it holds."""
    assert backend.client is not None
    items: list[dict[str, Any]] = []
    args: dict[str, Any] = {"TableName": backend.table_name, "ConsistentRead": True}
    while True:
        page = backend.client.scan(**args)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            break
        args["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    revoked = {
        item["pk"]["S"].removeprefix("SESSION#")
        for item in items
        if item["pk"]["S"].startswith("SESSION#") and item["status"]["S"] == STATUS_REVOKED
    }
    listed: set[str] = set()
    for item in items:
        if item["pk"]["S"].startswith(REVOKED_PREFIX):
            listed |= entries_of(item)
    return revoked - listed, listed - revoked


def scenario(store: DynamoDBSessionStore, faults: FaultInjector) -> tuple[str, str]:
    """A logout, another user's session refused, then a revocation whose second write fails
    (for the one-transaction store: the one write fails, and nothing changes)."""
    mine, other, third = (store.create_session(user) for user in ("u-1", "u-2", "u-1"))
    assert store.revoke(mine.session_id) is True
    with pytest.raises(SessionNotFound):
        store.revoke(other.session_id, user_id="u-1")
    if isinstance(store, RevocationThenEntry | EntryThenRevocation):
        faults.fail(service_error("InternalServerError"), "UpdateItem", skip=1)
    else:
        faults.fail(service_error("InternalServerError"), "TransactWriteItems")
    with pytest.raises(StoreUnavailable):
        store.revoke(third.session_id)
    faults.clear()
    return other.session_id, third.session_id


@on_moto
@pytest.mark.parametrize("variant", list(STORES))
def test_the_invariant_holds_only_when_the_entry_is_written_with_the_revocation(
    variant: str, dynamodb_backend: Backend, faults: FaultInjector, clock: ManualClock
) -> None:
    assert dynamodb_backend.table_name is not None
    store = STORES[variant](
        dynamodb_backend.table_name,
        dynamodb_backend.settings,
        clock,
        boto3_client=dynamodb_backend.client,
    )
    other, third = scenario(store, faults)
    expected: dict[str, tuple[set[str], set[str]]] = {
        "one_transaction": (set(), set()),  # the invariant holds
        "revocation_then_entry": ({third}, set()),  # revoked, its tokens still pass
        "entry_then_revocation": (set(), {other, third}),  # listed, never revoked
    }
    assert mismatches(dynamodb_backend) == expected[variant]
