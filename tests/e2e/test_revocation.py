"""Revocation everywhere within seconds (issue 20), in the local stack with several authorizer
containers: after each kind of revocation, an access token used on an ordinary route (``GET
/me``, no session read: SESSION_CHECK_SAMPLE_RATE=0) is denied within
REVOCATION_PROPAGATION_SECONDS plus one request per container, and never passes once every
container's copy has reached its stale bound (3 periods: each then refetches before answering).

Time is the stack's clock, advanced by the test, never waited for. Past the propagation bound
the first request a container gets starts its refresh and answers from its old copy; the next
one waits for that refresh (tokencore.revocations, rule 2), so at most one request per container
passes, whatever the machine's speed (asserted, and reported with ``REVOCATION_E2E_REPORT``: a
JSON line per kind).
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.e2e.client import Client
from tests.e2e.conftest import RunningStack, launch_stack
from tests.e2e.conftest import wait_until_ready as wait_for_stack
from tokencore.config import Settings
from tokencore.revocations import REVOKED_PREFIX
from tokencore.sessions.base import STATUS_ACTIVE
from tokencore.store.table import (
    SESSION_PREFIX,
    SESSION_SORT,
    USER_INDEX_PARTITION_KEY,
    USER_INDEX_SORT_KEY,
)

pytestmark = pytest.mark.e2e

CONTAINERS = 3
PROPAGATION = 5
PASSWORD = "revocation-e2e-password"
ADMIN = "rev-admin"
KINDS = ("logout", "delete_one", "revoke_all", "admin_revoke", "disable", "reuse")
USER_WIDE_KINDS = ("revoke_all", "admin_revoke", "disable")
MAX_PROBES = 60  # a hang bound: a container that never refreshes ends the loop


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    users = ";".join(
        [f"{ADMIN}:{PASSWORD}:admin,user"]
        + [f"rev-{k}:{PASSWORD}:user" for k in KINDS]
        + [f"rev-hidden-{k}:{PASSWORD}:user" for k in USER_WIDE_KINDS]
    )
    running = launch_stack(
        tmp_path_factory.mktemp("revocation"),
        DEV_FUNCTION_CONCURRENCY=str(CONTAINERS),
        SESSION_CHECK_SAMPLE_RATE="0",
        REVOCATION_PROPAGATION_SECONDS=str(PROPAGATION),
        REFRESH_REUSE_GRACE_SECONDS="0",
        LOGIN_RATE_LIMIT="1000/300",
        LOGIN_IP_RATE_LIMIT="1000/300",
        REFRESH_RATE_LIMIT="1000/60",
        SEED_USERS=users,
    )
    try:
        wait_for_stack(running)
        yield running
    finally:
        if running.process.poll() is None:
            running.stop(signal.SIGTERM)


def _login(stack: RunningStack, username: str) -> tuple[Client, dict[str, str]]:
    client = stack.client()
    answer = client.login(username, PASSWORD)
    assert answer.status == 200, answer.body
    grant: dict[str, str] = answer.json()
    return client, grant


def _revoke(
    stack: RunningStack,
    kind: str,
    client: Client,
    grant: dict[str, str],
    username: str | None = None,
) -> None:
    username = username or f"rev-{kind}"
    actions: dict[str, Callable[[], int]] = {
        "logout": lambda: client.logout().status,
        "delete_one": lambda: _from_another_session(
            stack, username, "DELETE", f"/auth/sessions/{grant['session_id']}"
        ),
        "revoke_all": lambda: _from_another_session(
            stack, username, "POST", "/auth/sessions/revoke-all"
        ),
        "admin_revoke": lambda: _as_admin(stack, client, grant),
        "disable": lambda: _ctl(stack, "disable-user", username),
        "reuse": lambda: _replay(client),
    }
    assert actions[kind]() in (200, 204, 401), kind


def _from_another_session(stack: RunningStack, username: str, method: str, path: str) -> int:
    other, other_grant = _login(stack, username)
    return other.request(method, path, bearer=other_grant["access_token"]).status


def _as_admin(stack: RunningStack, client: Client, grant: dict[str, str]) -> int:
    user_id = client.request("GET", "/me", bearer=grant["access_token"]).json()["user_id"]
    admin, admin_grant = _login(stack, ADMIN)
    path = f"/admin/users/{user_id}/revoke"
    return admin.request("POST", path, bearer=admin_grant["access_token"]).status


def _ctl(stack: RunningStack, *args: str) -> int:
    result = stack.ctl(*args)
    assert result.returncode == 0, result.stderr[-2000:]
    return 204


def _replay(client: Client) -> int:
    before = client.copy()  # holds the refresh token about to be rotated
    assert client.refresh().status == 200
    replay = before.refresh()  # reuse: the whole session is revoked
    assert replay.status == 401
    return replay.status


@pytest.mark.parametrize("kind", KINDS)
def test_a_revoked_token_is_denied_on_an_ordinary_route_within_the_bound(
    kind: str, stack: RunningStack
) -> None:
    client, grant = _login(stack, f"rev-{kind}")
    token = grant["access_token"]
    for _ in range(CONTAINERS * 3):  # every container has fetched its copy and allows
        assert client.request("GET", "/me", bearer=token).status == 200
    holder = client.copy()  # whoever kept the token and its fingerprint cookie
    _revoke(stack, kind, client, grant)
    revoked_at = stack.clock()

    stack.advance_clock(PROPAGATION)
    statuses = []
    for _ in range(MAX_PROBES):
        statuses.append(holder.request("GET", "/me", bearer=token).status)
        if statuses[-CONTAINERS:] == [403] * CONTAINERS:
            break
    passed_after_bound = statuses.count(200)
    assert passed_after_bound <= CONTAINERS, statuses  # one request per container at most

    # The stale bound: every container refetches before it answers again, so nothing passes.
    stack.advance_clock(2 * PROPAGATION)
    after = [holder.request("GET", "/me", bearer=token).status for _ in range(CONTAINERS * 3)]
    assert after == [403] * len(after), after
    _report(kind, revoked_at, stack.clock(), statuses, passed_after_bound)


def _report(kind: str, revoked_at: float, now: float, statuses: list[int], passed: int) -> None:
    target = os.environ.get("REVOCATION_E2E_REPORT")
    if not target:
        return
    line = {
        "kind": kind,
        "requests_allowed_after_bound": passed,
        "requests_until_denied_everywhere": len(statuses),
        "stack_seconds": round(now - revoked_at, 3),
    }
    with Path(target).open("a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")


@pytest.mark.parametrize("kind", USER_WIDE_KINDS)
def test_a_session_the_index_pass_misses_is_denied_by_the_user_entry(
    kind: str, stack: RunningStack
) -> None:
    username = f"rev-hidden-{kind}"
    client, grant = _login(stack, username)
    token = grant["access_token"]
    for _ in range(CONTAINERS * 3):
        assert client.request("GET", "/me", bearer=token).status == 200
    user_id = client.request("GET", "/me", bearer=token).json()["user_id"]
    holder = client.copy()
    # The user entry denies iat < floor(not before): the revocation comes a second later.
    stack.advance_clock(2)
    table = _table(stack)
    key = {"pk": {"S": SESSION_PREFIX + grant["session_id"]}, "sk": {"S": SESSION_SORT}}
    table.update_item(
        TableName=_table_name(stack),
        Key=key,
        UpdateExpression="REMOVE #pk1, #sk1",
        ExpressionAttributeNames={"#pk1": USER_INDEX_PARTITION_KEY, "#sk1": USER_INDEX_SORT_KEY},
    )
    _revoke(stack, kind, client, grant, username=username)
    item = table.get_item(TableName=_table_name(stack), Key=key, ConsistentRead=True)["Item"]
    assert item["status"]["S"] == STATUS_ACTIVE  # the index pass did not find it: no s_ entry

    stack.advance_clock(3 * PROPAGATION)  # the stale bound: every container refetches first
    after = [holder.request("GET", "/me", bearer=token).status for _ in range(CONTAINERS * 3)]
    assert after == [403] * len(after), after
    # What denied it: the user's entry, not one for the session (the pass never found it).
    listed = table.scan(TableName=_table_name(stack), **_list_items())["Items"]
    assert not any(f"s_{grant['session_id']}" in item for item in listed)
    assert any(f"u_{user_id}" in item for item in listed)


def _list_items() -> dict[str, Any]:
    return {
        "FilterExpression": "begins_with(#pk, :revoked)",
        "ExpressionAttributeNames": {"#pk": "pk"},
        "ExpressionAttributeValues": {":revoked": {"S": REVOKED_PREFIX}},
        "ConsistentRead": True,
    }


def _table_name(stack: RunningStack) -> str:
    return stack.env.get("SESSIONS_TABLE_NAME") or Settings().sessions_table_name


def _table(stack: RunningStack) -> Any:
    """The stack's own DynamoDB (its embedded endpoint), to do what the index's lag does."""
    return boto3.client(
        "dynamodb",
        endpoint_url=f"http://127.0.0.1:{stack.env['AWS_PORT']}",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # the local stack's fake credentials
    )
