"""The template's DynamoDB grants: each function's actions on the item kinds it owns only
(``dynamodb:LeadingKeys``), pinned here, and checked against what the functions really do; plus
the route throttles and the switch for the execute-api endpoint.
"""

from __future__ import annotations

import fnmatch
from typing import Any

import pytest
from botocore.client import BaseClient

from tests.functional.conftest import Stack, load_event
from tests.functional.test_call_counts import Containers, _authorize, _login, _logout, _refresh
from tests.functional.test_http_edge import invoke
from tests.functional.test_template import actions_of, load_template, statements

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

# function -> DynamoDB action -> the partition-key patterns it may touch. A new item kind or a
# new access needs a line here, and a reason in the template.
EXPECTED_LEADING_KEYS: dict[str, dict[str, set[str]]] = {
    "IssuerFunction": {
        "dynamodb:GetItem": {"USERNAME#*", "USER#*"},
        "dynamodb:PutItem": {"SESSION#*"},
        # REVOKED#: the revocation list's entry, in the same transaction as each revocation
        # (here: the session cap's eviction).
        "dynamodb:UpdateItem": {"SESSION#*", "USER#*", "USERNAME#*", "RATE#*", "REVOKED#*"},
        "dynamodb:Query": {"USER#*"},
    },
    "RefresherFunction": {
        "dynamodb:GetItem": {"SESSION#*", "USER#*"},
        "dynamodb:UpdateItem": {"SESSION#*", "RATE#*", "REVOKED#*"},  # reuse revokes
    },
    "RevokerFunction": {
        "dynamodb:GetItem": {"SESSION#*", "USER#*"},
        "dynamodb:UpdateItem": {"SESSION#*", "USER#*", "USERNAME#*", "REVOKED#*"},
        "dynamodb:Query": {"USER#*"},
    },
    # the session check, and the revocation list (tokencore.revocations)
    "AuthorizerFunction": {"dynamodb:BatchGetItem": {"SESSION#*", "USER#*", "REVOKED#*"}},
}


def _grants(function: str) -> dict[str, set[str]]:
    """DynamoDB action -> LeadingKeys patterns, from the template (every statement must carry
    the condition: one without it would allow every item)."""
    resources = load_template()["Resources"]
    grants: dict[str, set[str]] = {}
    for statement in statements(resources[function]):
        actions = [a for a in actions_of(statement) if a.startswith("dynamodb:")]
        if not actions:
            continue
        condition = statement.get("Condition", {}).get("ForAllValues:StringLike", {})
        patterns = condition.get("dynamodb:LeadingKeys")
        assert patterns, (function, statement.get("Sid"), "no dynamodb:LeadingKeys condition")
        for action in actions:
            grants.setdefault(action, set()).update(patterns)
    return grants


@pytest.mark.parametrize("function", sorted(EXPECTED_LEADING_KEYS))
def test_each_functions_dynamodb_actions_are_limited_to_its_item_kinds(function: str) -> None:
    assert _grants(function) == EXPECTED_LEADING_KEYS[function]


def test_no_other_function_touches_the_table() -> None:
    resources = load_template()["Resources"]
    for name, resource in resources.items():
        if resource.get("Type") != "AWS::Serverless::Function" or name in EXPECTED_LEADING_KEYS:
            continue
        for statement in statements(resource):
            assert not any(a.startswith("dynamodb:") for a in actions_of(statement)), name


# --- what the functions really touch ------------------------------------------------------------

_OPERATION_ACTION = {
    "GetItem": "dynamodb:GetItem",
    "PutItem": "dynamodb:PutItem",
    "UpdateItem": "dynamodb:UpdateItem",
    "Query": "dynamodb:Query",
    "BatchGetItem": "dynamodb:BatchGetItem",
}


def _leading_keys(operation: str, params: dict[str, Any]) -> list[tuple[str, str]]:
    """(IAM action, partition key value) of every item a DynamoDB call touches (IAM checks a
    transaction's items one by one, as the action each one is)."""
    if operation == "TransactWriteItems":
        found = []
        for item in params["TransactItems"]:
            ((kind, body),) = item.items()
            action = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem"}.get(
                kind, kind
            )
            key = body.get("Key") or body.get("Item")
            found.append((f"dynamodb:{action}", key["pk"]["S"]))
        return found
    if operation == "BatchGetItem":
        return [
            ("dynamodb:BatchGetItem", key["pk"]["S"])
            for table in params["RequestItems"].values()
            for key in table["Keys"]
        ]
    if operation == "Query":
        values = params["ExpressionAttributeValues"]
        return [("dynamodb:Query", str(values[":gsi1pk"]["S"]))]
    item_key: Any = params.get("Key") or params.get("Item")
    return [(_OPERATION_ACTION.get(operation, f"dynamodb:{operation}"), item_key["pk"]["S"])]


class Recorder:
    def __init__(self) -> None:
        self.function = ""
        self.touched: list[tuple[str, str, str]] = []


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recording = Recorder()
    original = BaseClient._make_api_call

    def spy(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        if client.meta.service_model.service_name == "dynamodb" and recording.function:
            for action, key in _leading_keys(operation, params):
                recording.touched.append((recording.function, action, key))
        return original(client, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", spy)
    return recording


def test_every_item_the_functions_touch_is_one_their_policy_allows(
    stack: Stack, recorder: Recorder
) -> None:
    containers = Containers(stack)
    recorder.function = "IssuerFunction"
    login = _login(containers)
    other = _login(containers)
    recorder.function = "AuthorizerFunction"
    _authorize(containers, login, "http-sensitive-route")
    recorder.function = "RefresherFunction"
    refreshed = _refresh(containers, login)
    recorder.function = "RevokerFunction"
    _logout(containers, refreshed)
    containers.use("revoker")
    caller = stack.runtime.auth.verify_access(other.json()["access_token"])
    placeholders = {
        "user_id": caller.subject,
        "session_id": caller.session_id,
        "token_id": caller.token_id,
        "expires_at": str(caller.expires_at),
    }
    for event in ("revoker/sessions-list.json", "revoker/revoke-all.json"):
        result = invoke("revoker", load_event(event, **placeholders))
        assert result.status in (200, 204), (event, result.body)
    recorder.function = ""
    kinds = {(function, action) for function, action, _ in recorder.touched}
    assert {f for f, _ in kinds} == set(EXPECTED_LEADING_KEYS), kinds
    for function, action, key in recorder.touched:
        allowed = _grants(function).get(action, set())
        assert any(fnmatch.fnmatchcase(key, pattern) for pattern in allowed), (
            function,
            action,
            key.split("#", 1)[0],
        )


# --- throttles and the execute-api endpoint ------------------------------------------------------


def test_login_and_refresh_have_a_route_throttle_of_their_own() -> None:
    template = load_template()
    api = template["Resources"]["HttpApi"]["Properties"]
    routes = api["RouteSettings"]
    for route in ("POST /auth/login", "POST /auth/refresh"):
        assert routes[route] == {
            "ThrottlingRateLimit": {"Ref": "AuthThrottlingRateLimit"},
            "ThrottlingBurstLimit": {"Ref": "AuthThrottlingBurstLimit"},
        }
    parameters = template["Parameters"]
    assert (
        parameters["AuthThrottlingRateLimit"]["Default"]
        < parameters["ApiThrottlingRateLimit"]["Default"]
    )


def test_the_execute_api_endpoint_can_be_turned_off() -> None:
    template = load_template()
    assert template["Parameters"]["DisableExecuteApiEndpoint"]["Default"] == "false"
    api = template["Resources"]["HttpApi"]["Properties"]
    assert api["DisableExecuteApiEndpoint"] == {
        "Fn::If": ["ExecuteApiEndpointDisabled", True, False]
    }
    assert template["Conditions"]["ExecuteApiEndpointDisabled"] == {
        "Fn::Equals": [{"Ref": "DisableExecuteApiEndpoint"}, "true"]
    }
