"""template.yaml's key rotation: the schedule for both key secrets, the function Secrets Manager
calls, its permission and its least-privilege role. (Every function's exact action set is
pinned in test_template.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from tests.functional.test_template import (
    REPO_ROOT,
    actions_of,
    load_template,
    resources_of,
    statements,
)

ROTATION_ACTIONS = {
    "secretsmanager:DescribeSecret",
    "secretsmanager:GetSecretValue",
    "secretsmanager:PutSecretValue",
    "secretsmanager:UpdateSecretVersionStage",
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def test_both_key_secrets_rotate_on_a_schedule(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    schedules = {
        name: resource
        for name, resource in resources.items()
        if resource["Type"] == "AWS::SecretsManager::RotationSchedule"
    }
    assert set(schedules) == {"SigningKeysRotation", "RefreshKeysRotation"}
    assert schedules["SigningKeysRotation"]["Properties"]["SecretId"] == {
        "Ref": "SigningKeysSecret"
    }
    # The access secret exists in Secrets Manager mode only; so does its schedule.
    assert schedules["SigningKeysRotation"]["Condition"] == "UseSecretsManager"
    assert schedules["RefreshKeysRotation"]["Properties"]["SecretId"] == {
        "Ref": "RefreshKeysSecret"
    }
    assert "Condition" not in schedules["RefreshKeysRotation"]
    for schedule in schedules.values():
        props = schedule["Properties"]
        assert props["RotationLambdaARN"] == {"Fn::GetAtt": ["KeyRotationFunction", "Arn"]}
        assert props["RotationRules"] == {
            "ScheduleExpression": {"Fn::Sub": "rate(${KeyRotationDays} days)"}
        }
        # Not during the deployment: creating the schedule only runs testSecret, and only
        # after KeySetup has filled the secret and the function may be invoked.
        assert props["RotateImmediatelyOnUpdate"] is False
        assert {"KeySetup", "KeyRotationPermission"} <= set(schedule["DependsOn"])


def test_the_rotation_period_is_a_parameter_of_90_days(template: dict[str, Any]) -> None:
    parameter = template["Parameters"]["KeyRotationDays"]
    assert parameter["Type"] == "Number"
    assert parameter["Default"] == 90
    # rate(1 day) would need the singular; Secrets Manager allows up to 1000 days.
    assert parameter["MinValue"] >= 2
    assert parameter["MaxValue"] <= 1000
    groups = template["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    assert any("KeyRotationDays" in group["Parameters"] for group in groups)


def test_only_secrets_manager_of_this_account_may_invoke_the_rotation_function(
    template: dict[str, Any],
) -> None:
    permission = template["Resources"]["KeyRotationPermission"]
    assert permission["Type"] == "AWS::Lambda::Permission"
    assert permission["Properties"] == {
        "FunctionName": {"Fn::GetAtt": ["KeyRotationFunction", "Arn"]},
        "Action": "lambda:InvokeFunction",
        "Principal": "secretsmanager.amazonaws.com",
        "SourceAccount": {"Ref": "AWS::AccountId"},
    }


def test_the_rotation_function_touches_the_two_key_secrets_and_the_jwks_only(
    template: dict[str, Any],
) -> None:
    function = template["Resources"]["KeyRotationFunction"]
    assert function["Properties"]["CodeUri"] == "functions/rotation/"
    assert (REPO_ROOT / "functions/rotation/app.py").is_file()
    by_resource: dict[str, set[str]] = {}
    for statement in statements(function):
        for resource in resources_of(statement):
            key = str(resource)
            by_resource.setdefault(key, set()).update(actions_of(statement))
    assert by_resource == {
        str({"Ref": "RefreshKeysSecret"}): ROTATION_ACTIONS,
        str({"Ref": "SigningKeysSecret"}): ROTATION_ACTIONS,
        str(
            {
                "Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}"
                ":parameter${PublicJwksParam}"
            }
        ): {"ssm:GetParameter", "ssm:PutParameter"},
        # The key secrets' customer key, when CustomerKmsKeyArn is set (through Secrets Manager
        # only: test_template.py checks the condition).
        str({"Ref": "CustomerKmsKeyArn"}): {"kms:Decrypt", "kms:GenerateDataKey"},
    }


def test_a_failed_rotation_raises_an_alarm(template: dict[str, Any]) -> None:
    alarm = template["Resources"]["KeyRotationErrorsAlarm"]["Properties"]
    assert alarm["MetricName"] == "Errors"
    assert alarm["Namespace"] == "AWS/Lambda"
    function = {"Ref": "KeyRotationFunction"}
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": function}]
    assert alarm["Threshold"] == 0
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"


def test_kms_signing_goes_through_the_alias_a_rotation_moves(template: dict[str, Any]) -> None:
    environment = template["Globals"]["Function"]["Environment"]["Variables"]
    assert environment["KMS_SIGNING_KEY_ID"]["Fn::If"][1] == {"Ref": "SigningKeyAlias"}
    assert template["Resources"]["KeySetup"]["Properties"]["KmsSigningKeyId"]["Fn::If"][1] == {
        "Ref": "SigningKeyAlias"
    }
    # Verifiers never call KMS: they read the published JWKS in both backends. (The revoker's
    # one KMS permission is Secrets Manager decrypting the refresh key secret under
    # CustomerKmsKeyArn when it is set: never a signing key.)
    for name in ("AuthorizerFunction", "RevokerFunction"):
        actions = {
            a
            for s in statements(template["Resources"][name])
            if s.get("Sid") != "KeySecretsCustomerKey"
            for a in actions_of(s)
        }
        assert not {a for a in actions if a.startswith("kms:")}, name
