"""The deployment paths users take: samconfig.toml's profiles (`make deploy`) and serverless.yml
(`serverless package`), each checked against template.yaml offline."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from deploy import profiles
from deploy.serverless import SERVERLESS_PATH, function_key, render, serverless_logical_id
from devserver.template import REPO_ROOT, load_template

TEMPLATE = load_template()
FUNCTIONS = [
    k for k, r in TEMPLATE["Resources"].items() if r["Type"] == "AWS::Serverless::Function"
]


# --- samconfig.toml and make deploy -----------------------------------------------------------


@pytest.mark.parametrize("name", profiles.PROFILES)
def test_each_profile_deploys_this_template(name: str) -> None:
    chosen = profiles.profile(profiles.load_samconfig(), name)
    assert profiles.problems(TEMPLATE, chosen) == []


def test_the_profiles_are_separate_stacks_and_the_default_is_dev() -> None:
    config = profiles.load_samconfig()
    dev, prod = (profiles.profile(config, name) for name in ("dev", "prod"))
    assert dev.stack_name != prod.stack_name
    assert profiles.profile(config, "default") == profiles.Profile(
        "default",
        *[
            getattr(dev, field)
            for field in ("stack_name", "region", "capabilities", "confirm_changeset", "parameters")
        ],
    )
    assert prod.confirm_changeset
    assert not dev.confirm_changeset
    # Nothing a first deployment must answer: every parameter has a default or an override.
    for spec_name, spec in TEMPLATE["Parameters"].items():
        assert "Default" in spec, spec_name


def test_the_profile_check_finds_what_cloudformation_would_refuse() -> None:
    broken = profiles.Profile(
        "broken",
        "9-bad",
        "mars-1",
        (),
        False,
        {
            "NoSuchParameter": "1",
            "KeyBackend": "hsm",
            "MaxSessionsPerUser": "0",
            "SessionsTableName": "x",
        },
    )
    found = "\n".join(profiles.problems(TEMPLATE, broken))
    for expected in (
        "stack_name",
        "region",
        "CAPABILITY_IAM",
        "NoSuchParameter",
        "KeyBackend",
        "MaxSessionsPerUser",
        "SessionsTableName",
    ):
        assert expected in found


def test_the_physical_names_derive_from_the_stack_name() -> None:
    environment = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    resources = TEMPLATE["Resources"]
    named = {
        "SESSIONS_TABLE_NAME": resources["SessionsTable"]["Properties"]["TableName"],
        "SIGNING_KEYS_SECRET_ID": resources["SigningKeysSecret"]["Properties"]["Name"],
        "REFRESH_KEYS_SECRET_ID": resources["RefreshKeysSecret"]["Properties"]["Name"],
        "PUBLIC_JWKS_PARAMETER": resources["PublicJwksParam"]["Properties"]["Name"],
    }
    for variable, name in named.items():
        assert name == environment[variable]  # the functions use the name the resource has
        parameter, derived = name["Fn::If"][1]["Ref"], name["Fn::If"][2]["Fn::Sub"]
        assert TEMPLATE["Parameters"][parameter]["Default"] == ""
        assert "${AWS::StackName}" in derived


def test_make_deploy_stops_before_aws_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import deploy.__main__ as driver

    # The driver in its own process, as make runs it, with no credential anywhere.
    built = tmp_path / "template.yaml"
    built.write_text("{}", encoding="utf-8")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import pathlib, sys, deploy.__main__ as d; "
            f"d.BUILT_TEMPLATE = pathlib.Path({str(built)!r}); "
            "sys.exit(d.main(['--env', 'prod']))",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == driver.EXIT_NO_CREDENTIALS, done.stderr
    assert "stack tokencore-prod in us-east-1" in done.stderr
    assert "need AWS credentials, and none were found" in done.stderr


def test_the_makefile_deploys_what_make_build_builds() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    rule = re.search(r"^deploy: (.*)\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert rule is not None
    assert set(rule.group(1).split()) >= {"lint-template", "build"}
    assert "-m deploy --env $(ENV) --arch $(ARCH)" in rule.group(2)
    docs = (REPO_ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    for text in (docs, readme):
        assert "make deploy" in text
        assert "sam deploy --guided" not in text


# --- serverless.yml ---------------------------------------------------------------------------


def test_serverless_yml_is_what_the_template_generates() -> None:
    assert SERVERLESS_PATH.read_text(encoding="utf-8") == render(TEMPLATE)


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if not (REPO_ROOT / "node_modules" / ".bin" / "serverless").exists():
        pytest.fail("node_modules has no serverless (osls): run npm ci")
    if not (REPO_ROOT / ".aws-sam" / "build" / "TokencoreLayer").is_dir():
        pytest.skip("serverless packages make build's layer: run make build (make test does)")
    output = tmp_path_factory.mktemp("serverless")
    done = subprocess.run(
        [sys.executable, "-m", "deploy.serverless", "--package", str(output)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    document: dict[str, Any] = json.loads(
        (output / "cloudformation-template-update-stack.json").read_text(encoding="utf-8")
    )
    return document


def _routes_in_template() -> dict[str, bool]:
    """Route key -> protected by the authorizer."""
    routes = {}
    for logical_id in FUNCTIONS:
        for event in (TEMPLATE["Resources"][logical_id]["Properties"].get("Events") or {}).values():
            spec = event["Properties"]
            key = f"{spec['Method'].upper()} {spec['Path']}"
            routes[key] = (spec.get("Auth") or {}).get("Authorizer") != "NONE"
    return routes


@pytest.mark.slow
def test_serverless_package_has_the_templates_functions(packaged: dict[str, Any]) -> None:
    resources = packaged["Resources"]
    globals_ = TEMPLATE["Globals"]["Function"]
    for logical_id in FUNCTIONS:
        props = TEMPLATE["Resources"][logical_id]["Properties"]
        function = resources[serverless_logical_id(logical_id)]["Properties"]
        assert function["Handler"] == f"{props['CodeUri'].strip('/')}/{globals_['Handler']}"
        assert function["MemorySize"] == props.get("MemorySize", globals_["MemorySize"])
        assert function["Timeout"] == props.get("Timeout", globals_["Timeout"])
        assert function["Runtime"] == globals_["Runtime"]
        assert function["Architectures"] == ["arm64"]
        assert function["TracingConfig"] == {"Mode": "Active"}
        assert set(function["Environment"]["Variables"]) == set(
            globals_["Environment"]["Variables"]
        )
        assert function["Layers"] == [{"Ref": "TokencoreLambdaLayer"}]
        role = resources[function["Role"]["Fn::GetAtt"][0]]["Properties"]
        statements = json.dumps([p["PolicyDocument"] for p in role.get("Policies", [])])
        actions = set(re.findall(r'"((?:dynamodb|secretsmanager|kms|ssm):[A-Za-z]+)"', statements))
        expected = set(
            re.findall(
                r'"((?:dynamodb|secretsmanager|kms|ssm):[A-Za-z]+)"',
                json.dumps(props.get("Policies", [])),
            )
        )
        assert actions == expected, logical_id
    assert function_key("KeySetupFunction") == "keySetup"
    for shared in (
        "SessionsTable",
        "RefreshKeysSecret",
        "SigningKeysSecret",
        "PublicJwksParam",
        "KeySetup",
        "SigningKeysRotation",
        "RefreshKeysRotation",
    ):
        assert shared in resources, shared


@pytest.mark.slow
def test_serverless_package_has_the_templates_routes_and_authorizer(
    packaged: dict[str, Any],
) -> None:
    resources = packaged["Resources"].values()
    routes = {
        r["Properties"]["RouteKey"]: r["Properties"].get("AuthorizationType") == "CUSTOM"
        for r in resources
        if r["Type"] == "AWS::ApiGatewayV2::Route"
    }
    assert routes == _routes_in_template()
    (authorizer,) = [
        r["Properties"] for r in resources if r["Type"] == "AWS::ApiGatewayV2::Authorizer"
    ]
    assert authorizer["AuthorizerType"] == "REQUEST"
    assert authorizer["AuthorizerPayloadFormatVersion"] == "2.0"
    assert authorizer["EnableSimpleResponses"] is True
    assert authorizer["IdentitySource"] == ["$request.header.Authorization"]
    assert authorizer["AuthorizerResultTtlInSeconds"] == 0
    assert "AuthorizerLambdaFunction" in json.dumps(authorizer["AuthorizerUri"])
