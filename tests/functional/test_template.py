"""template.yaml against the code and the contract, so they cannot drift apart.

- the DynamoDB table is built in moto from the template's own properties and must equal
  ``store.table.TABLE_DEFINITION`` and work with the session store;
- every variable ``Settings.from_env`` reads is a Globals environment variable fed by a
  parameter of the same name in CamelCase, with the same default;
- each function's IAM statements are explicit and least privilege (the authorizer cannot read a
  secret; no wildcard resource for DynamoDB, Secrets Manager or KMS);
- the HTTP API's routes are the contract's routes, public and protected as the contract says;
- the transformed template (what CloudFormation deploys) has no dependency cycle.

The YAML loader turns CloudFormation's short tags (``!Ref``, ``!Sub``, ``!If`` ...) into their
long JSON forms, as CloudFormation itself does.
"""

from __future__ import annotations

import ast
import copy
import inspect
import re
import textwrap
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import boto3
import pytest

from devserver.template import load_template as devserver_load_template
from tests.clock import ManualClock
from tests.functional.conftest import fresh_aws
from tokencore.config import Settings
from tokencore.sessioncheck import STANDING_ATTRIBUTES
from tokencore.sessions import DynamoDBSessionStore
from tokencore.store.table import (
    SESSION_PREFIX,
    TABLE_DEFINITION,
    TTL_ATTRIBUTE,
    USER_INDEX_NAME,
    USER_PREFIX,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = REPO_ROOT / "template.yaml"
README = REPO_ROOT / "README.md"
CONTRACT = REPO_ROOT.parent / "shared" / "api-contract.md"

FUNCTIONS = (
    "IssuerFunction",
    "RefresherFunction",
    "RevokerFunction",
    "MeFunction",
    "AuthorizerFunction",
    "KeySetupFunction",
    "KeyRotationFunction",
)


# --- loading the template ---------------------------------------------------------------------


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    # One loader for the tests and the local stack: devserver reads the same template.
    return devserver_load_template(path)


@cache
def _template() -> dict[str, Any]:
    return load_template()


@pytest.fixture
def template() -> dict[str, Any]:
    """A fresh copy for each test (tests may not change the cached one)."""
    return copy.deepcopy(_template())


def camel(env_name: str) -> str:
    """ACCESS_TOKEN_TTL_SECONDS -> AccessTokenTtlSeconds."""
    return "".join(part.capitalize() for part in env_name.split("_"))


def if_branches(node: Any) -> Iterator[Any]:
    """Every value ``node`` can take: both branches of each Fn::If, AWS::NoValue dropped."""
    if isinstance(node, dict) and set(node) == {"Fn::If"}:
        _, when_true, when_false = node["Fn::If"]
        yield from if_branches(when_true)
        yield from if_branches(when_false)
    elif node != {"Ref": "AWS::NoValue"}:
        yield node


# --- (a) the table ----------------------------------------------------------------------------


def test_the_table_in_the_template_is_the_table_the_code_expects(template: dict[str, Any]) -> None:
    table = template["Resources"]["SessionsTable"]
    props = table["Properties"]
    assert {name: props[name] for name in TABLE_DEFINITION} == TABLE_DEFINITION
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}
    assert props["SSESpecification"]["SSEEnabled"] is True
    # A global table replicates on its stream, which needs both images.
    assert props["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    replicas = [replica for item in props["Replicas"] for replica in if_branches(item)]
    assert replicas[0]["Region"] == {"Ref": "AWS::Region"}
    assert len(replicas) == 2  # this region, and ReplicaRegion when it is set
    for replica in replicas:
        assert replica["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert replica["DeletionProtectionEnabled"] is True
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"
    assert props["TableName"] == {"Ref": "SessionsTableName"}


def test_a_table_created_from_the_template_serves_the_session_store(
    template: dict[str, Any], clock: ManualClock
) -> None:
    props = template["Resources"]["SessionsTable"]["Properties"]
    name = template["Parameters"]["SessionsTableName"]["Default"]
    with fresh_aws():
        client = boto3.client("dynamodb")
        client.create_table(
            TableName=name,
            BillingMode=props["BillingMode"],
            AttributeDefinitions=props["AttributeDefinitions"],
            KeySchema=props["KeySchema"],
            GlobalSecondaryIndexes=props["GlobalSecondaryIndexes"],
        )
        client.update_time_to_live(
            TableName=name, TimeToLiveSpecification=props["TimeToLiveSpecification"]
        )
        described = client.describe_table(TableName=name)["Table"]
        assert described["KeySchema"] == TABLE_DEFINITION["KeySchema"]
        assert sorted(described["AttributeDefinitions"], key=str) == sorted(
            TABLE_DEFINITION["AttributeDefinitions"], key=str
        )
        index = described["GlobalSecondaryIndexes"][0]
        assert index["IndexName"] == USER_INDEX_NAME
        assert index["KeySchema"] == TABLE_DEFINITION["GlobalSecondaryIndexes"][0]["KeySchema"]
        assert index["Projection"] == {"ProjectionType": "ALL"}
        ttl = client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        assert ttl["AttributeName"] == TTL_ATTRIBUTE

        store = DynamoDBSessionStore(name, Settings.from_env({}), clock, boto3_client=client)
        session = store.create_session("user-1", device_id="device-1")
        assert store.get_session(session.session_id) == session
        assert [s.session_id for s in store.list_sessions("user-1")] == [session.session_id]


# --- (b) settings -----------------------------------------------------------------------------


def settings_variables() -> list[str]:
    """The variable names ``Settings.from_env`` reads, in order, from its source."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(Settings.from_env)))
    names = [
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "reader"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ]
    assert len(names) == len(set(names)) > 20
    return names


def as_environment_value(value: object) -> str:
    """A Settings default written the way the environment variable would hold it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    return str(value)


def readme_settings() -> list[str]:
    section = README.read_text(encoding="utf-8").split("## Settings", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", section, flags=re.MULTILINE)


# TOKEN_ISSUER's default is `make dev`'s address; a deployment's issuer is its public URL, which
# the stack cannot give its own functions (the API depends on them): the TokenIssuer parameter
# defaults to empty and the functions see a placeholder until it is set (docs/deploy.md).
DEFAULT_EXCEPTIONS = {"TOKEN_ISSUER": ""}
# Settings whose variable is computed from the parameter rather than a plain Ref to it.
DERIVED = {
    "TOKEN_ISSUER": {
        "Fn::If": ["HasTokenIssuer", {"Ref": "TokenIssuer"}, "https://issuer-not-set.invalid"]
    },
    # The stack's own key is used through its alias, which a KMS rotation moves.
    "KMS_SIGNING_KEY_ID": {
        "Fn::If": ["CreateKmsKey", {"Ref": "SigningKeyAlias"}, {"Ref": "KmsSigningKeyId"}]
    },
}


def test_every_setting_is_a_parameter_and_an_environment_variable_with_its_default(
    template: dict[str, Any],
) -> None:
    environment = template["Globals"]["Function"]["Environment"]["Variables"]
    parameters = template["Parameters"]
    defaults = Settings.from_env({})
    # from_env's own defaults are the dataclass's (so "unset" means the same everywhere).
    assert defaults == Settings()
    for name in settings_variables():
        parameter = camel(name)
        assert parameter in parameters, f"no parameter {parameter} for {name}"
        expected = DERIVED.get(name, {"Ref": parameter})
        assert environment.get(name) == expected, f"{name} is not set from {parameter}"
        wanted = DEFAULT_EXCEPTIONS.get(name, as_environment_value(getattr(defaults, name.lower())))
        actual = parameters[parameter].get("Default", "")
        assert as_environment_value(actual) == wanted, f"{parameter} defaults to {actual!r}"
    assert environment["POWERTOOLS_SERVICE_NAME"] == {"Ref": "ServiceName"}
    assert environment["POWERTOOLS_METRICS_NAMESPACE"] == {"Ref": "MetricsNamespace"}


def test_the_readme_settings_are_all_in_the_template(template: dict[str, Any]) -> None:
    documented = readme_settings()
    assert "ACCESS_TOKEN_TTL_SECONDS" in documented
    read = set(settings_variables())
    environment = template["Globals"]["Function"]["Environment"]["Variables"]
    for name in documented:
        assert name in read, f"README documents {name}, which Settings does not read"
        assert name in environment, f"README documents {name}, which template.yaml does not set"


def test_the_token_issuer_placeholder_is_a_valid_setting(template: dict[str, Any]) -> None:
    value = template["Globals"]["Function"]["Environment"]["Variables"]["TOKEN_ISSUER"]
    placeholder = value["Fn::If"][2]
    assert placeholder.endswith(".invalid")  # RFC 2606: can never resolve
    assert Settings.from_env({"TOKEN_ISSUER": placeholder}).token_issuer == placeholder


# --- (c) IAM ----------------------------------------------------------------------------------


def statements(function: dict[str, Any]) -> list[dict[str, Any]]:
    """Every statement the function's role can hold, whatever the conditions."""
    found: list[dict[str, Any]] = []
    for policy in function["Properties"].get("Policies", []):
        # Only inline documents: SAM policy templates and managed policies over-grant.
        assert isinstance(policy, dict), policy
        assert set(policy) == {"Version", "Statement"}, policy
        for item in policy["Statement"]:
            found.extend(if_branches(item))
    return found


def actions_of(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else list(actions)


def resources_of(statement: dict[str, Any]) -> list[Any]:
    resources = statement["Resource"]
    return [resources] if not isinstance(resources, list) else list(resources)


# What each function may call (the union over KeyBackend): a new call needs a line here too.
EXPECTED_ACTIONS = {
    "IssuerFunction": {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:Query",
        "secretsmanager:GetSecretValue",
        "kms:Sign",
        "kms:GetPublicKey",
        "ssm:GetParameter",
    },
    "RefresherFunction": {
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
        "secretsmanager:GetSecretValue",
        "kms:Sign",
        "kms:GetPublicKey",
    },
    "RevokerFunction": {
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
        "dynamodb:Query",
        "secretsmanager:GetSecretValue",
        "ssm:GetParameter",
    },
    "MeFunction": set(),
    # Verifiers read the published JWKS in both key backends: no KMS at all.
    "AuthorizerFunction": {"dynamodb:BatchGetItem", "ssm:GetParameter"},
    "KeySetupFunction": {
        "secretsmanager:GetSecretValue",
        "secretsmanager:PutSecretValue",
        "kms:GetPublicKey",
        "ssm:GetParameter",
        "ssm:PutParameter",
    },
    # What Secrets Manager's guide lists for a rotation function, and the public JWKS.
    "KeyRotationFunction": {
        "secretsmanager:DescribeSecret",
        "secretsmanager:GetSecretValue",
        "secretsmanager:PutSecretValue",
        "secretsmanager:UpdateSecretVersionStage",
        "ssm:GetParameter",
        "ssm:PutParameter",
    },
}


@pytest.mark.parametrize("name", FUNCTIONS)
def test_each_function_gets_exactly_its_actions(template: dict[str, Any], name: str) -> None:
    found = {action for s in statements(template["Resources"][name]) for action in actions_of(s)}
    assert found == EXPECTED_ACTIONS[name]


@pytest.mark.parametrize("name", FUNCTIONS)
def test_no_wildcards_in_actions_or_on_data_and_key_resources(
    template: dict[str, Any], name: str
) -> None:
    for statement in statements(template["Resources"][name]):
        assert statement["Effect"] == "Allow"
        assert "NotAction" not in statement
        assert "NotResource" not in statement
        for action in actions_of(statement):
            assert "*" not in action, (name, action)
        services = {action.split(":")[0] for action in actions_of(statement)}
        if services & {"dynamodb", "secretsmanager", "kms"}:
            for resource in resources_of(statement):
                assert resource != "*", (name, statement["Sid"])
                assert not (isinstance(resource, str) and "*" in resource), (name, resource)
                if _is_any_kms_key(resource):
                    # The one exception: the keys the stack's alias names, whichever they are
                    # after rotations, and only for requests made through that alias.
                    assert services == {"kms"}, (name, statement["Sid"])
                    aliases = statement["Condition"]["StringEquals"]["kms:RequestAlias"]
                    aliases = aliases if isinstance(aliases, list) else [aliases]
                    assert aliases, (name, statement["Sid"])
                    for alias in aliases:
                        assert alias == {"Ref": "SigningKeyAlias"} or alias == {
                            "Fn::Sub": "${SigningKeyAlias}-next"
                        }, (name, alias)
                    assert set(statement["Condition"]) == {"StringEquals"}


def _is_any_kms_key(resource: Any) -> bool:
    return bool(
        resource == {"Fn::Sub": "arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:key/*"}
    )


def test_the_authorizer_can_never_read_a_secret(template: dict[str, Any]) -> None:
    authorizer = statements(template["Resources"]["AuthorizerFunction"])
    assert authorizer
    for statement in authorizer:
        for action in actions_of(statement):
            assert not action.startswith("secretsmanager:"), action
            assert action not in ("kms:Sign", "kms:Decrypt"), action
        # Its one table action is the session check's read, on the table only (no index, no
        # other table), of session and profile items, and of exactly the standing attributes
        # the code projects: never a password hash, a name, an email or a refresh-token id.
        if "dynamodb:BatchGetItem" in actions_of(statement):
            assert resources_of(statement) == [{"Fn::GetAtt": ["SessionsTable", "Arn"]}]
            condition = statement["Condition"]
            leading = condition["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
            assert leading == [f"{SESSION_PREFIX}*", f"{USER_PREFIX}*"]
            readable = condition["ForAllValues:StringEquals"]["dynamodb:Attributes"]
            assert readable == list(STANDING_ATTRIBUTES)
            assert condition["StringEqualsIfExists"] == {"dynamodb:Select": "SPECIFIC_ATTRIBUTES"}
            for secret in ("password_hash", "username", "email", "current_jti", "previous_jti"):
                assert secret not in readable


def test_only_the_issuer_and_refresher_may_sign_and_only_keysetup_and_rotation_write_keys(
    template: dict[str, Any],
) -> None:
    for name in FUNCTIONS:
        actions = {a for s in statements(template["Resources"][name]) for a in actions_of(s)}
        assert ("kms:Sign" in actions) == (name in ("IssuerFunction", "RefresherFunction"))
        writes = {"secretsmanager:PutSecretValue", "ssm:PutParameter"}
        writers = ("KeySetupFunction", "KeyRotationFunction")
        assert bool(actions & writes) == (name in writers), name


def test_the_revoker_reads_the_refresh_secret_only(template: dict[str, Any]) -> None:
    for statement in statements(template["Resources"]["RevokerFunction"]):
        if "secretsmanager:GetSecretValue" in actions_of(statement):
            assert resources_of(statement) == [{"Ref": "RefreshKeysSecret"}]


# --- (d) routes -------------------------------------------------------------------------------


def contract_routes() -> tuple[set[str], set[str]]:
    """(public, protected) routes of ../shared/api-contract.md, as "METHOD /path"."""
    if not CONTRACT.is_file():
        pytest.fail(f"the contract is not at {CONTRACT} (shared/ must lie beside the repo)")
    text = CONTRACT.read_text(encoding="utf-8")
    section = text.split("## HTTP API", 1)[1].split("\n## ", 1)[0]
    public_part, protected_part = section.split("Behind the Lambda authorizer", 1)
    pattern = re.compile(r"^\| `((?:GET|POST|PUT|PATCH|DELETE) /[^`\s]*)` \|", re.MULTILINE)
    return set(pattern.findall(public_part)), set(pattern.findall(protected_part))


def template_routes(template: dict[str, Any]) -> tuple[set[str], set[str]]:
    public: set[str] = set()
    protected: set[str] = set()
    for name, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        for event in resource["Properties"].get("Events", {}).values():
            assert event["Type"] == "HttpApi", name
            props = event["Properties"]
            assert props["ApiId"] == {"Ref": "HttpApi"}, name  # no implicit API
            route = f"{props['Method']} {props['Path']}"
            authorizer = props.get("Auth", {}).get("Authorizer")
            assert authorizer in (None, "NONE"), (route, authorizer)
            (public if authorizer == "NONE" else protected).add(route)
    return public, protected


def test_the_routes_are_the_contracts_routes(template: dict[str, Any]) -> None:
    contract_public, contract_protected = contract_routes()
    assert "POST /auth/login" in contract_public
    assert "GET /me" in contract_protected
    public, protected = template_routes(template)
    assert public == contract_public
    assert protected == contract_protected


def test_protected_routes_go_through_the_lambda_authorizer_without_caching(
    template: dict[str, Any],
) -> None:
    auth = template["Resources"]["HttpApi"]["Properties"]["Auth"]
    assert auth["DefaultAuthorizer"] == "TokenAuthorizer"
    authorizer = auth["Authorizers"]["TokenAuthorizer"]
    assert authorizer["FunctionArn"] == {"Fn::GetAtt": ["AuthorizerFunction", "Arn"]}
    assert authorizer["AuthorizerPayloadFormatVersion"] == "2.0"
    assert authorizer["EnableSimpleResponses"] is True
    assert authorizer["EnableFunctionDefaultPermissions"] is True
    # Caching off: a cached Allow would skip per-route decisions and outlive a revocation.
    assert authorizer["Identity"] == {"Headers": ["Authorization"], "ReauthorizeEvery": 0}


def test_cors_comes_from_allowed_origins_only(template: dict[str, Any]) -> None:
    cors = template["Resources"]["HttpApi"]["Properties"]["CorsConfiguration"]
    condition, configured, absent = cors["Fn::If"]
    assert condition == "HasAllowedOrigins"
    assert absent == {"Ref": "AWS::NoValue"}
    assert configured["AllowOrigins"] == {"Fn::Split": [",", {"Ref": "AllowedOrigins"}]}
    assert configured["AllowCredentials"] is True  # the refresh cookie
    allowed = re.compile(template["Parameters"]["AllowedOrigins"]["AllowedPattern"])
    assert allowed.fullmatch("")
    assert allowed.fullmatch("https://app.example.com,http://localhost:5173")
    for bad in ("*", "https://a.example.com, https://b.example.com", "https://a.example.com/x"):
        assert not allowed.fullmatch(bad), bad


# --- the rest of the stack --------------------------------------------------------------------


def test_every_function_has_a_log_group_with_retention(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    groups = {
        resource["Properties"]["LogGroupName"]["Fn::Sub"]: resource["Properties"]
        for resource in resources.values()
        if resource["Type"] == "AWS::Logs::LogGroup"
    }
    for name in FUNCTIONS:
        props = groups[f"/aws/lambda/${{{name}}}"]
        assert props["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    # KeySetup runs during the deployment: its log group must exist before, or Lambda makes it.
    assert resources["KeySetup"]["DependsOn"] == "KeySetupLogGroup"


def test_globals(template: dict[str, Any]) -> None:
    function = template["Globals"]["Function"]
    assert function["Runtime"] == "python3.12"
    assert function["Handler"] == "app.lambda_handler"
    assert function["Architectures"] == [{"Ref": "Architecture"}]
    assert function["Layers"] == [{"Ref": "TokencoreLayer"}]
    layer = template["Resources"]["TokencoreLayer"]
    assert layer["Properties"]["ContentUri"] == "layers/tokencore/"
    assert layer["Metadata"] == {
        "BuildMethod": "python3.12",
        "BuildArchitecture": {"Ref": "Architecture"},
    }
    assert template["Parameters"]["Architecture"]["Default"] == "arm64"
    assert template["Resources"]["AuthorizerFunction"]["Properties"]["Timeout"] == 5
    for name in FUNCTIONS:
        code = template["Resources"][name]["Properties"]["CodeUri"]
        assert (REPO_ROOT / code).is_dir(), code


def test_the_kms_key_fits_the_algorithm(template: dict[str, Any]) -> None:
    key = template["Resources"]["SigningKey"]
    assert key["Condition"] == "CreateKmsKey"
    assert key["Properties"]["KeyUsage"] == "SIGN_VERIFY"
    assert key["Properties"]["KeySpec"] == {"Fn::If": ["IsEs256", "ECC_NIST_P256", "RSA_2048"]}
    assert template["Resources"]["SigningKeysSecret"]["Condition"] == "UseSecretsManager"
    assert "Condition" not in template["Resources"]["RefreshKeysSecret"]


# --- what CloudFormation deploys ---------------------------------------------------------------


def transformed() -> dict[str, Any]:
    """The template after the SAM transform (local code paths replaced by S3 locations, as
    `sam package` would; no AWS call is made)."""
    from samtranslator.translator.transform import (  # type: ignore[import-untyped,unused-ignore]
        transform,
    )

    document = copy.deepcopy(_template())
    for name, resource in document["Resources"].items():
        props = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str):
                props[key] = f"s3://example-bucket/{name}.zip"

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    result: dict[str, Any] = transform(document, {}, NoManagedPolicies())
    return result


def references(node: Any) -> set[str]:
    """Logical ids that ``node`` refers to with Ref, Fn::GetAtt or Fn::Sub."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::GetAtt":
                found.add(value[0] if isinstance(value, list) else value.split(".")[0])
            elif key == "Fn::Sub":
                text, variables = (value, {}) if isinstance(value, str) else value
                found.update(re.findall(r"\$\{([A-Za-z0-9]+)", text))
                found |= references(variables)
            else:
                found |= references(value)
    elif isinstance(node, list):
        for item in node:
            found |= references(item)
    return found


def test_the_deployed_template_has_no_dependency_cycle() -> None:
    """cfn-lint no longer transforms SAM templates, so it cannot see a cycle that only exists
    after the transform (e.g. TOKEN_ISSUER set from the API's own URL)."""
    resources = transformed()["Resources"]
    graph: dict[str, set[str]] = {}
    for name, resource in resources.items():
        depends = resource.get("DependsOn", [])
        depends = [depends] if isinstance(depends, str) else depends
        graph[name] = (references(resource) | set(depends)) & set(resources)
    assert {"HttpApi", "IssuerFunction", "AuthorizerFunction", "KeySetup"} <= set(graph)

    state: dict[str, int] = {}  # 1 = on the path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycle = [*path[path.index(target) :], node, target] if target in path else [node]
                pytest.fail(f"dependency cycle: {' -> '.join(cycle)}")
            if target not in state:
                visit(target, [*path, node])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def test_the_alarmed_metrics_are_the_ones_the_functions_emit(template: dict[str, Any]) -> None:
    """An alarm on a metric nobody publishes is silent forever: tie the names together."""
    sources = "\n".join(
        path.read_text(encoding="utf-8") for path in sorted(REPO_ROOT.glob("functions/*/app.py"))
    )
    alarms = [r for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    queried = []
    for alarm in alarms:
        for metric in alarm["Properties"].get("Metrics", []):
            query = metric["Expression"]["Fn::Sub"]
            found = re.fullmatch(
                r'SELECT SUM\((\w+)\) FROM "\$\{MetricsNamespace\}" '
                r"WHERE service = '\$\{ServiceName\}'",
                query,
            )
            assert found, query
            queried.append(found.group(1))
    assert sorted(queried) == ["AuthorizerDeny", "AuthorizerFault", "RefreshReuse"]
    for name in queried:
        assert f'"{name}"' in sources, f"no function emits {name}"
