"""Nothing one test does to the functional stack reaches the next.

The stack's AWS side is rebuilt for every test on empty moto backends, while the boto3 clients
that build it are shared by the whole run (conftest.py). ``assert_pristine`` checks a stack
against what the fixture builds; the first test below proves that it sees each kind of change a
test can make, and the last two make every change in one test and find none of it in the next.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.clock import ManualClock
from tests.functional.conftest import AwsClients, Stack
from tokencore.config import Settings
from tokencore.keys import KeySet, jwks_document
from tokencore.keys.secretsmanager import put_key_set_secret
from tokencore.runtime import Runtime, get_runtime, set_runtime
from tokencore.store.table import PARTITION_KEY, create_table

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")


def digest(text: str) -> str:
    """What a failure may print of a key document: never the document itself."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def key_set_digest(key_set: KeySet) -> str:
    return digest(json.dumps(key_set.to_secret_document(), sort_keys=True))


def assert_pristine(stack: Stack, aws: AwsClients) -> None:
    """The stack exactly as the ``stack`` fixture builds it."""
    settings = stack.settings
    # DynamoDB: the one table, holding the two users (a profile and a username claim each).
    assert aws.dynamodb.list_tables()["TableNames"] == [settings.sessions_table_name]
    items = aws.dynamodb.scan(TableName=settings.sessions_table_name, ConsistentRead=True)
    kinds = sorted(item[PARTITION_KEY]["S"].split("#", 1)[0] for item in items["Items"])
    assert kinds == ["USER", "USER", "USERNAME", "USERNAME"]
    for user in (stack.user, stack.admin):
        assert stack.runtime.users.get_user(user.user_id, include_disabled=True) == user
    # Secrets Manager: the two key secrets, one version each, holding the fixture's key sets.
    secrets = {s["Name"]: s for s in aws.secretsmanager.list_secrets()["SecretList"]}
    expected = {
        settings.signing_keys_secret_id: ("access", stack.access_keys),
        settings.refresh_keys_secret_id: ("refresh", stack.refresh_keys),
    }
    assert sorted(secrets) == sorted(expected)
    for name, (purpose, key_set) in expected.items():
        assert list(secrets[name]["SecretVersionsToStages"].values()) == [["AWSCURRENT"]]
        text = aws.secretsmanager.get_secret_value(SecretId=name)["SecretString"]
        stored = KeySet.from_secret_document(text, purpose)  # type: ignore[arg-type]
        assert key_set_digest(stored) == key_set_digest(key_set), name
    # SSM: the one parameter, never overwritten, publishing the access keys.
    parameters = aws.ssm.describe_parameters()["Parameters"]
    assert [(p["Name"], p["Version"]) for p in parameters] == [(settings.public_jwks_parameter, 1)]
    value = aws.ssm.get_parameter(Name=settings.public_jwks_parameter)["Parameter"]["Value"]
    published = json.dumps(jwks_document(stack.access_keys.verification_keys()))
    assert json.loads(value) == json.loads(published)
    # The process: a fresh clock, and the container Runtime is this test's, with its settings.
    assert stack.clock.now() == ManualClock().now()
    assert get_runtime() is stack.runtime
    assert stack.runtime.settings == stack.settings == Settings.from_env()


# --- what a test can change -------------------------------------------------------------------


def log_in(stack: Stack, aws: AwsClients) -> None:
    stack.login()  # a session and rate-limit counters


def disable_the_admin(stack: Stack, aws: AwsClients) -> None:
    stack.runtime.users.disable_user(stack.admin.user_id)


def rotate_the_signing_secret(stack: Stack, aws: AwsClients) -> None:
    put_key_set_secret(
        aws.secretsmanager, stack.settings.signing_keys_secret_id, stack.refresh_keys
    )


def delete_the_refresh_secret(stack: Stack, aws: AwsClients) -> None:
    aws.secretsmanager.delete_secret(
        SecretId=stack.settings.refresh_keys_secret_id, ForceDeleteWithoutRecovery=True
    )


def add_a_secret(stack: Stack, aws: AwsClients) -> None:
    aws.secretsmanager.create_secret(Name="left-behind", SecretString="{}")


def overwrite_the_published_keys(stack: Stack, aws: AwsClients) -> None:
    aws.ssm.put_parameter(
        Name=stack.settings.public_jwks_parameter,
        Value=json.dumps({"keys": []}),
        Type="String",
        Overwrite=True,
    )


def add_a_parameter(stack: Stack, aws: AwsClients) -> None:
    aws.ssm.put_parameter(Name="/left/behind", Value="x", Type="String")


def add_a_table(stack: Stack, aws: AwsClients) -> None:
    create_table(aws.dynamodb, "left-behind")


def move_the_clock(stack: Stack, aws: AwsClients) -> None:
    stack.clock.advance(3600)


def change_the_settings(stack: Stack, aws: AwsClients) -> None:
    stack.runtime.settings = dataclasses.replace(stack.settings, refresh_token_transport="body")


def swap_the_runtime(stack: Stack, aws: AwsClients) -> None:
    set_runtime(Runtime(stack.settings, stack.clock))


CHANGES: list[Callable[[Stack, AwsClients], Any]] = [
    log_in,
    disable_the_admin,
    rotate_the_signing_secret,
    delete_the_refresh_secret,
    add_a_secret,
    overwrite_the_published_keys,
    add_a_parameter,
    add_a_table,
    move_the_clock,
    change_the_settings,
    swap_the_runtime,
]


@pytest.mark.parametrize("change", CHANGES, ids=[change.__name__ for change in CHANGES])
def test_the_pristine_check_sees_each_change(
    stack: Stack, aws_clients: AwsClients, change: Callable[[Stack, AwsClients], Any]
) -> None:
    assert_pristine(stack, aws_clients)
    change(stack, aws_clients)
    with pytest.raises(AssertionError):
        assert_pristine(stack, aws_clients)


def test_a_test_changes_everything(stack: Stack, aws_clients: AwsClients) -> None:
    for change in CHANGES:
        change(stack, aws_clients)
    with pytest.raises(AssertionError):
        assert_pristine(stack, aws_clients)


def test_the_next_test_finds_none_of_it(stack: Stack, aws_clients: AwsClients) -> None:
    assert_pristine(stack, aws_clients)
