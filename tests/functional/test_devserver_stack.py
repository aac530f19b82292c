"""The local stack provisions what template.yaml declares (moto in process): the table from the
template's own properties, the key secrets and the public JWKS parameter, filled by the
template's KeySetup custom resource running its real handler; in KMS mode, the KMS key."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from devserver.settings import Ports, developer_settings
from devserver.stack import LocalStack
from devserver.template import load_template
from tests.functional.conftest import fresh_aws
from tokencore.keys import KeySet
from tokencore.store.table import TABLE_DEFINITION, TTL_ATTRIBUTE

PORTS = Ports(http=3000, aws=4566)


def _invoke(function: str, event: dict[str, Any]) -> Any:
    assert function == "KeySetupFunction"
    from functions.keysetup.app import lambda_handler

    return lambda_handler(event, None)


@pytest.fixture
def aws() -> Iterator[boto3.session.Session]:
    with fresh_aws():
        yield boto3.session.Session()


def _provisioned(session: boto3.session.Session, **env: str) -> LocalStack:
    stack = LocalStack(
        load_template(),
        developer_settings(env, PORTS),
        create=True,
        session=session,
        invoke_custom=_invoke,
    )
    stack.provision()
    return stack


def test_table_comes_from_the_templates_own_properties(aws: boto3.session.Session) -> None:
    _provisioned(aws)
    client = aws.client("dynamodb")
    table = client.describe_table(TableName="tokencore-sessions")["Table"]
    assert table["KeySchema"] == TABLE_DEFINITION["KeySchema"]
    assert sorted(table["AttributeDefinitions"], key=lambda a: a["AttributeName"]) == sorted(
        TABLE_DEFINITION["AttributeDefinitions"], key=lambda a: a["AttributeName"]
    )
    (index,) = table["GlobalSecondaryIndexes"]
    (expected,) = TABLE_DEFINITION["GlobalSecondaryIndexes"]
    assert index["IndexName"] == expected["IndexName"]
    assert index["KeySchema"] == expected["KeySchema"]
    ttl = client.describe_time_to_live(TableName="tokencore-sessions")["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": TTL_ATTRIBUTE}


def test_key_setup_fills_the_secrets_and_publishes_the_public_keys(
    aws: boto3.session.Session,
) -> None:
    _provisioned(aws, ACCESS_TOKEN_ALG="ES256", SIGNING_KEYS_SECRET_ID="dev/access")
    secrets = aws.client("secretsmanager")
    access = KeySet.from_secret_document(
        secrets.get_secret_value(SecretId="dev/access")["SecretString"], "access"
    )
    assert access.active.alg == "ES256"
    refresh = KeySet.from_secret_document(
        secrets.get_secret_value(SecretId="tokencore/refresh-keys")["SecretString"], "refresh"
    )
    assert refresh.active.alg == "HS256"
    published = json.loads(
        aws.client("ssm").get_parameter(Name="/tokencore/public-jwks")["Parameter"]["Value"]
    )
    # The active key and the next key (published from the start, promoted by the first
    # rotation), with their publication stamps.
    assert [key["kid"] for key in published["keys"]] == [entry.kid for entry in access.entries]
    assert [key["status"] for key in published["keys"]] == ["active", "next"]
    assert all(isinstance(key["published_at"], int) for key in published["keys"])
    assert all("d" not in key for key in published["keys"])


def test_kms_mode_creates_the_templates_signing_key(aws: boto3.session.Session) -> None:
    stack = _provisioned(aws, KEY_BACKEND="kms")
    environment = stack.settings_environment()
    # The functions sign through the template's alias, which a KMS rotation moves.
    assert environment["KMS_SIGNING_KEY_ID"] == "alias/tokencore-local-access-token-signing"
    key = aws.client("kms").describe_key(KeyId=environment["KMS_SIGNING_KEY_ID"])["KeyMetadata"]
    assert key["KeyUsage"] == "SIGN_VERIFY"
    assert key["KeySpec"] == "RSA_2048"
    published = json.loads(
        aws.client("ssm").get_parameter(Name="/tokencore/public-jwks")["Parameter"]["Value"]
    )
    (entry,) = published["keys"]
    assert entry["status"] == "active"
    # GetPublicKey names the key by ARN (moto: by key id); either lets revocation disable it.
    assert entry["kms_key_id"] in (key["Arn"], key["KeyId"])
    names = aws.client("secretsmanager").list_secrets()["SecretList"]
    # In KMS mode the only key secret is the refresh key set (beside the audit-label key).
    assert sorted(secret["Name"] for secret in names) == [
        "tokencore-local-AuditLabelKeySecret",
        "tokencore/refresh-keys",
    ]
    # `make ctl` finds the same key through the template's alias, creating nothing.
    lookup = LocalStack(
        load_template(),
        developer_settings({"KEY_BACKEND": "kms"}, PORTS),
        create=False,
        session=aws,
    )
    assert lookup.settings_environment()["KMS_SIGNING_KEY_ID"] == environment["KMS_SIGNING_KEY_ID"]


def test_the_audit_label_key_is_generated_per_stack_and_reaches_every_function(
    aws: boto3.session.Session,
) -> None:
    """The template's {{resolve:secretsmanager:...}} reference is resolved as CloudFormation
    resolves it: each stack its own random key, in every function's environment."""
    first = _provisioned(aws).settings_environment()["AUDIT_LABEL_KEY"]
    assert len(first) == 64
    assert first.isalnum()
    assert "{{" not in first
