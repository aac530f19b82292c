"""serverless.yml, generated from template.yaml: ``python -m deploy.serverless`` writes it and
``--check`` fails when the committed file differs (tests and `make serverless-package` run it).

One source of truth: every resource, parameter, condition, rule, output, setting, IAM statement
and route comes from template.yaml, translated to the Serverless Framework v3 syntax (osls):

* each ``AWS::Serverless::Function`` becomes a function (``IssuerFunction`` -> ``issuer``, whose
  CloudFormation id is ``IssuerLambdaFunction``) with its handler, memory, timeout and
  environment, and an IAM role of its own holding exactly the template's policy statements;
* its HttpApi events become ``httpApi`` events, behind the Lambda authorizer unless the template
  says ``Authorizer: NONE``; the authorizer keeps the template's settings (payload 2.0, simple
  responses, the Authorization header, no result cache);
* the layer is the one `make build` built (``.aws-sam/build/TokencoreLayer``: the pinned
  manylinux wheels and bytecode), so both tools ship the same bytes;
* the other resources (table, secrets, KMS key, JWKS parameter, KeySetup, rotation, alarms) are
  copied with their references renamed. Serverless creates the functions' log groups itself,
  under the same logical ids the template uses.

What v3 cannot express is left out and listed in docs/deploy.md: the template's Rules (the KMS +
EdDSA refusal), the HTTP API's CORS configuration (conditional on AllowedOrigins), its stage
throttling and its access log.
"""

from __future__ import annotations

import copy
import http.server
import os
import re
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import yaml

from deploy.profiles import REPO_ROOT

SERVERLESS_PATH: Final = REPO_ROOT / "serverless.yml"
LAYER_ARTIFACT: Final = ".aws-sam/build/TokencoreLayer"
FUNCTION_TYPE: Final = "AWS::Serverless::Function"
AUTHORIZER_NAME: Final = "tokenAuthorizer"
# Replaced by serverless's own: the API, the layer, the functions' log groups.
NOT_COPIED_TYPES: Final = frozenset(
    {FUNCTION_TYPE, "AWS::Serverless::HttpApi", "AWS::Serverless::LayerVersion"}
)
# The architecture is serverless's provider setting (a literal), not a parameter.
DROPPED_PARAMETERS: Final = frozenset({"Architecture"})
BASIC_EXECUTION: Final = (
    "arn:${AWS::Partition}:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
)
XRAY_WRITE: Final = "arn:${AWS::Partition}:iam::aws:policy/AWSXrayWriteOnlyAccess"
HEADER = """\
# GENERATED from template.yaml by `python -m deploy.serverless`: do not edit; edit template.yaml
# and run it again (tests fail while the two differ). The Serverless Framework v3 syntax, for
# osls (package.json pins it): `npx serverless package` offline, `npx serverless deploy
# --stage dev` with AWS credentials. The layer is `make build`'s: run `make build` first.
# docs/deploy.md "The Serverless Framework" says what differs from the SAM deployment.
"""


def function_key(logical_id: str) -> str:
    """``KeySetupFunction`` -> ``keySetup`` (serverless then names it KeySetupLambdaFunction)."""
    base = logical_id.removesuffix("Function")
    return base[0].lower() + base[1:]


def serverless_logical_id(logical_id: str) -> str:
    return f"{logical_id.removesuffix('Function')}LambdaFunction"


def renamer(template: Mapping[str, Any]) -> dict[str, str]:
    """Template logical ids whose resource serverless creates under another id."""
    names = {
        logical_id: serverless_logical_id(logical_id)
        for logical_id, resource in template["Resources"].items()
        if resource.get("Type") == FUNCTION_TYPE
    }
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") == "AWS::Serverless::LayerVersion":
            names[logical_id] = f"{logical_id.removesuffix('Layer')}LambdaLayer"
    return names


def rename(node: Any, names: Mapping[str, str]) -> Any:
    """``node`` with Ref, Fn::GetAtt, Fn::Sub and DependsOn pointing at the renamed ids."""
    if isinstance(node, list):
        return [rename(item, names) for item in node]
    if not isinstance(node, dict):
        return node
    renamed: dict[str, Any] = {}
    for key, value in node.items():
        if key == "Ref" and isinstance(value, str):
            renamed[key] = names.get(value, value)
        elif key == "Fn::GetAtt":
            parts = value.split(".", 1) if isinstance(value, str) else list(value)
            renamed[key] = [names.get(parts[0], parts[0]), *parts[1:]]
        elif key == "Fn::Sub":
            renamed[key] = _rename_sub(value, names)
        elif key == "DependsOn":
            renamed[key] = (
                names.get(value, value)
                if isinstance(value, str)
                else [names.get(item, item) for item in value]
            )
        else:
            renamed[key] = rename(value, names)
    return renamed


def _rename_sub(value: Any, names: Mapping[str, str]) -> Any:
    def one(text: str) -> str:
        return re.sub(
            r"\$\{([A-Za-z0-9]+)([.}])",
            lambda match: "${" + names.get(match.group(1), match.group(1)) + match.group(2),
            text,
        )

    if isinstance(value, str):
        return one(value)
    return [one(value[0]), rename(value[1], names)]


def _routes(props: Mapping[str, Any]) -> list[dict[str, Any]]:
    events = []
    for event in (props.get("Events") or {}).values():
        if event.get("Type") != "HttpApi":
            continue
        spec = event.get("Properties") or {}
        route: dict[str, Any] = {"method": str(spec["Method"]).upper(), "path": spec["Path"]}
        if (spec.get("Auth") or {}).get("Authorizer") != "NONE":
            route["authorizer"] = {"name": AUTHORIZER_NAME}
        events.append({"httpApi": route})
    return events


def _authorizer(template: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    (api,) = [
        r for r in template["Resources"].values() if r.get("Type") == "AWS::Serverless::HttpApi"
    ]
    auth = api["Properties"]["Auth"]
    (spec,) = auth["Authorizers"].values()
    function = spec["FunctionArn"]["Fn::GetAtt"]
    function_id = function[0] if isinstance(function, list) else function.split(".")[0]
    identity = spec.get("Identity") or {}
    return {
        "type": "request",
        "functionName": function_key(function_id),
        "identitySource": [f"$request.header.{name}" for name in identity.get("Headers", [])],
        "enableSimpleResponses": bool(spec.get("EnableSimpleResponses")),
        "payloadVersion": str(spec.get("AuthorizerPayloadFormatVersion")),
        "resultTtlInSeconds": int(identity.get("ReauthorizeEvery", 0)),
    }


def _role(logical_id: str, props: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    role: dict[str, Any] = {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "AssumeRolePolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            },
            "ManagedPolicyArns": [{"Fn::Sub": BASIC_EXECUTION}, {"Fn::Sub": XRAY_WRITE}],
        },
    }
    documents = props.get("Policies") or []
    if documents:
        role["Properties"]["Policies"] = [
            {"PolicyName": f"{logical_id}Policy{index}", "PolicyDocument": rename(doc, names)}
            for index, doc in enumerate(documents)
        ]
    return role


def generate(template: Mapping[str, Any]) -> dict[str, Any]:
    names = renamer(template)
    globals_ = template["Globals"]["Function"]
    functions: dict[str, Any] = {}
    resources: dict[str, Any] = {}
    extensions: dict[str, Any] = _scanner_extensions(template)
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") != FUNCTION_TYPE:
            continue
        props = resource["Properties"]
        code = str(props["CodeUri"]).strip("/")
        function: dict[str, Any] = {
            "handler": f"{code}/{props.get('Handler', globals_['Handler'])}",
            "description": props.get("Description", ""),
            "memorySize": props.get("MemorySize", globals_["MemorySize"]),
            "timeout": props.get("Timeout", globals_["Timeout"]),
            "role": f"{logical_id}Role",
            "layers": [{"Ref": names["TokencoreLayer"]}],
            "package": {"patterns": ["functions/__init__.py", f"{code}/*.py"]},
        }
        own_environment = (props.get("Environment") or {}).get("Variables")
        if own_environment:
            function["environment"] = rename(own_environment, names)
        events = _routes(props)
        if events:
            function["events"] = events
        functions[function_key(logical_id)] = function
        resources[f"{logical_id}Role"] = _role(logical_id, props, names)
    for logical_id, resource in template["Resources"].items():
        kind = resource.get("Type")
        if kind in NOT_COPIED_TYPES or logical_id in _serverless_log_groups(template):
            continue
        resources[logical_id] = rename(copy.deepcopy(resource), names)
    document = _document(template, names, functions, resources)
    document["resources"]["extensions"] = extensions
    # What only the left-out parts used (log retention, throttling, CORS) would be dead weight.
    sections = document["resources"]
    conditions = template.get("Conditions", {})
    used = _names(
        [document["provider"], document["functions"], sections["Resources"], sections["Outputs"]]
    )
    while True:  # a used condition uses what it mentions
        wider = used | _names([conditions[name] for name in used & set(conditions)])
        if wider == used:
            break
        used = wider
    sections["Parameters"] = {
        name: spec
        for name, spec in template["Parameters"].items()
        if name not in DROPPED_PARAMETERS and name in used
    }
    sections["Conditions"] = {name: spec for name, spec in conditions.items() if name in used}
    return document


def _names(nodes: list[Any]) -> set[str]:
    """Every identifier-like word in ``nodes`` (a superset of what they reference)."""
    return set(re.findall(r"[A-Za-z][A-Za-z0-9]+", yaml.safe_dump(nodes)))


def _document(
    template: Mapping[str, Any],
    names: Mapping[str, str],
    functions: dict[str, Any],
    resources: dict[str, Any],
) -> dict[str, Any]:
    globals_ = template["Globals"]["Function"]
    return {
        "service": "tokencore",
        "frameworkVersion": ">=3",
        "provider": {
            "name": "aws",
            "runtime": globals_["Runtime"],
            "architecture": template["Parameters"]["Architecture"]["Default"],
            "stage": "${opt:stage, 'dev'}",
            "region": "${opt:region, 'us-east-1'}",
            "stackName": "tokencore-${sls:stage}",
            "deploymentMethod": "direct",
            "logRetentionInDays": int(template["Parameters"]["LogRetentionDays"]["Default"]),
            "tracing": {"lambda": globals_.get("Tracing") == "Active"},
            "environment": rename(globals_["Environment"]["Variables"], names),
            # The template's customer key for the environment (CKV_AWS_173), when set.
            "kmsKeyArn": copy.deepcopy(globals_["KmsKeyArn"]),
            # Artifacts stay private and versioned (CKV_AWS_21, CKV_AWS_53..56).
            "deploymentBucket": {"blockPublicAccess": True, "versioning": True},
            # The HTTP API's access log, as the template's (CKV_AWS_95).
            "logs": {"httpApi": True},
            "httpApi": {
                "name": "tokencore-${sls:stage}",
                "authorizers": {AUTHORIZER_NAME: _authorizer(template, names)},
            },
        },
        "package": {"individually": True, "patterns": ["!**"]},
        "layers": {
            "tokencore": {
                "path": LAYER_ARTIFACT,
                "description": "tokencore and its pinned dependencies (make build's layer)",
                "compatibleRuntimes": [globals_["Runtime"]],
                "compatibleArchitectures": [template["Parameters"]["Architecture"]["Default"]],
                "retain": False,
                "package": {"patterns": ["**"]},
            }
        },
        "functions": functions,
        "resources": {
            "Description": template.get("Description", ""),
            "Parameters": dict(template["Parameters"]),
            "Conditions": template.get("Conditions", {}),
            "Resources": resources,
            "Outputs": rename(template.get("Outputs", {}), names),
        },
    }


# What serverless creates itself, and so only an extension can mark for checkov (make
# serverless-package scans the packaged template; docs/security.md "Scanner").
SCANNER_SKIPS_OF_ITS_OWN: Final = {
    "ServerlessDeploymentBucket": [
        {
            "id": "CKV_AWS_18",
            "comment": "The deployment artifacts bucket, private and versioned; access logs need a "
            "log bucket of the account's own choosing.",
        }
    ],
}
SERVERLESS_ONLY_RESERVATION: Final = {
    "id": "CKV_AWS_115",
    "comment": "The Serverless variant has no LoginReservedConcurrency parameter (template.yaml "
    "has); set functions.issuer.reservedConcurrency in serverless.yml to cap Argon2's bill.",
}


def _scanner_extensions(template: Mapping[str, Any]) -> dict[str, Any]:
    """checkov's suppressions on the resources serverless makes, copied from the template's
    functions (same reasons), and the customer key on the log groups it makes."""
    customer_key = template["Globals"]["Function"]["KmsKeyArn"]
    extensions: dict[str, Any] = {
        name: {"Metadata": {"checkov": {"skip": skips}}}
        for name, skips in SCANNER_SKIPS_OF_ITS_OWN.items()
    }
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") != FUNCTION_TYPE:
            continue
        skips = list(resource.get("Metadata", {}).get("checkov", {}).get("skip", []))
        if not any(skip["id"] == "CKV_AWS_115" for skip in skips):
            skips.append(SERVERLESS_ONLY_RESERVATION)
        extensions[serverless_logical_id(logical_id)] = {"Metadata": {"checkov": {"skip": skips}}}
    for log_group in [
        *sorted(_serverless_log_groups(template) - {"ApiAccessLogGroup"}),
        "HttpApiLogGroup",
    ]:
        # A copy each: one shared object would be written as a YAML anchor and aliases.
        extensions[log_group] = {"Properties": {"KmsKeyId": copy.deepcopy(customer_key)}}
    return extensions


def _serverless_log_groups(template: Mapping[str, Any]) -> set[str]:
    """The template's function log groups: serverless creates the same ids itself."""
    return {
        f"{logical_id.removesuffix('Function')}LogGroup"
        for logical_id, resource in template["Resources"].items()
        if resource.get("Type") == FUNCTION_TYPE
    } | {"ApiAccessLogGroup"}


def render(template: Mapping[str, Any]) -> str:
    body: str = yaml.safe_dump(generate(template), sort_keys=False, width=100, allow_unicode=True)
    return HEADER + body


class _NoStackYet(http.server.BaseHTTPRequestHandler):
    """A loopback CloudFormation for which no stack exists. `serverless package` makes one
    call, DescribeStacks, to reuse a layer an earlier deployment uploaded; this answers it as
    AWS answers for a first deployment, so packaging needs neither credentials nor network."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        body = (
            b'<ErrorResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><Error>'
            b"<Type>Sender</Type><Code>ValidationError</Code><Message>Stack with id "
            b"tokencore-dev does not exist</Message></Error><RequestId>local</RequestId>"
            b"</ErrorResponse>"
        )
        self.send_response(400)
        self.send_header("content-type", "text/xml")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


def package(output: Path, stage: str = "dev") -> int:
    """`serverless package --stage STAGE --package OUTPUT`, offline (see _NoStackYet)."""
    binary = REPO_ROOT / "node_modules" / ".bin" / "serverless"
    if not binary.exists():
        print("no node_modules/.bin/serverless: run npm ci", file=sys.stderr)
        return 1
    if not (REPO_ROOT / LAYER_ARTIFACT).is_dir():
        print(f"no {LAYER_ARTIFACT}: run make build first", file=sys.stderr)
        return 1
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NoStackYet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("AWS_") or name == "AWS_DEFAULT_REGION"
    }
    env.update(
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{server.server_address[1]}",
        AWS_ACCESS_KEY_ID="offline",
        AWS_SECRET_ACCESS_KEY="offline",
        SLS_TELEMETRY_DISABLED="1",
        SLS_NOTIFICATIONS_MODE="off",
    )
    try:
        done = subprocess.run(  # noqa: S603 - our own binary and arguments
            [str(binary), "package", "--stage", stage, "--package", str(output)],
            cwd=REPO_ROOT,
            env=env,
            check=False,
            timeout=600,
        )
    finally:
        server.shutdown()
        server.server_close()
    return done.returncode


def main(argv: list[str] | None = None) -> int:
    from devserver.template import load_template

    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--package"] and len(args) == 2:
        return package(Path(args[1]).resolve())
    text = render(load_template())
    path = Path(SERVERLESS_PATH)
    if args == ["--check"]:
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            print(
                "serverless.yml is not what template.yaml generates: "
                "run python -m deploy.serverless",
                file=sys.stderr,
            )
            return 1
        return 0
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path.relative_to(REPO_ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
