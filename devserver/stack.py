"""template.yaml made real in the embedded AWS endpoint: resources, functions, the HTTP API.

``LocalStack`` evaluates the template the way CloudFormation would for one set of parameter
values, and materializes a resource the first time something refers to it (or when
``provision`` walks the template), so dependencies resolve in the template's own order:

==================================  ============================================================
resource type                       locally
==================================  ============================================================
AWS::DynamoDB::Table / GlobalTable  CreateTable from the template's own key schema, GSIs and
                                    billing mode, then its TimeToLiveSpecification
AWS::SecretsManager::Secret         CreateSecret (Name, SecretString)
AWS::SSM::Parameter                 PutParameter (Name, Type, Value)
AWS::KMS::Key / AWS::KMS::Alias     CreateKey (KeySpec, KeyUsage) / CreateAlias
Custom::* (a function's             the ServiceToken function's real handler, invoked with a
ServiceToken)                       CloudFormation Create event; its answer is received on a
                                    loopback ResponseURL, and FAILED stops the start
AWS::Serverless::Function           a FunctionSpec (module, handler, memory, timeout) to import
AWS::Serverless::HttpApi            routes and the authorizer, from the functions' HttpApi events
anything else (layers, log groups,  named only (a Ref gives a name, an Arn a synthetic ARN);
alarms, streams, replicas, SSE)     nothing to run locally
==================================  ============================================================

Parameter values: each parameter's Default, overridden by the developer's environment where a
function environment variable is a plain function of one parameter (``SESSIONS_TABLE_NAME:
!Ref SessionsTableName`` makes ``SESSIONS_TABLE_NAME=x make dev`` name the table ``x``; the
same holds through ``!If``, so ``KEY_BACKEND=kms`` turns on the template's ``UseKms`` and
``CreateKmsKey`` conditions and creates the KMS key it declares). Like ``sam local
--parameter-overrides``, but keyed by the names every developer already knows.

In lookup mode (``make ctl``) nothing is created: names come from the same evaluation, and the
one physical id that is not a name (a KMS key the stack created) is found through the alias
the template gives it.
"""

from __future__ import annotations

import json
import re
import secrets
import string
import sys
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import PurePosixPath
from typing import Any, Final

from devserver.settings import ACCOUNT_ID, API_ID, REGION, STACK_NAME, DevError
from devserver.template import (
    Evaluator,
    TemplateError,
    global_environment,
    merged_function_properties,
    parameter_defaults,
    parameter_value,
    referenced_names,
    scalar_text,
)

PSEUDO_PARAMETERS: Final = {
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT_ID,
    "AWS::StackName": STACK_NAME,
    "AWS::StackId": (
        f"arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:stack/{STACK_NAME}/"
        "00000000-0000-4000-8000-000000000000"
    ),
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
}

FUNCTION_TYPE: Final = "AWS::Serverless::Function"
_SECRET_REFERENCE: Final = re.compile(r"\{\{resolve:secretsmanager:(.+?):SecretString\}\}")
_SECRET_ALPHABET: Final = string.ascii_letters + string.digits
HTTP_API_TYPE: Final = "AWS::Serverless::HttpApi"
IMPLICIT_HTTP_API: Final = "ServerlessHttpApi"
TABLE_TYPES: Final = frozenset({"AWS::DynamoDB::Table", "AWS::DynamoDB::GlobalTable"})
CUSTOM_RESOURCE_TYPE: Final = "AWS::CloudFormation::CustomResource"
CUSTOM_RESOURCE_TIMEOUT_SECONDS: Final = 120


@dataclass(frozen=True, slots=True)
class Physical:
    """What a resource is once it exists: its Ref value and its attributes (Fn::GetAtt)."""

    ref: str
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    logical_id: str
    name: str
    arn: str
    module: str
    handler: str
    memory_mb: int
    timeout_seconds: int


@dataclass(frozen=True, slots=True)
class RouteSpec:
    method: str  # upper case, or ANY
    path: str  # "/auth/sessions/{session_id}", or "$default"
    function: str  # logical id
    authorizer: str | None  # authorizer name, None for a public route

    @property
    def route_key(self) -> str:
        return "$default" if self.path == "$default" else f"{self.method} {self.path}"


@dataclass(frozen=True, slots=True)
class AuthorizerSpec:
    name: str
    function: str  # logical id
    payload_version: str
    simple_responses: bool
    identity_sources: tuple[str, ...]  # "$request.header.Authorization"...
    ttl_seconds: int


@dataclass(frozen=True, slots=True)
class CorsSpec:
    allow_origins: tuple[str, ...]
    allow_credentials: bool
    allow_headers: tuple[str, ...]
    allow_methods: tuple[str, ...]
    expose_headers: tuple[str, ...]
    max_age: int | None


@dataclass(frozen=True, slots=True)
class ApiSpec:
    logical_id: str
    api_id: str
    routes: tuple[RouteSpec, ...]
    authorizers: Mapping[str, AuthorizerSpec]
    cors: CorsSpec | None


class LocalStack:
    """One template, one set of parameter values, resources created on first reference."""

    def __init__(
        self,
        template: Mapping[str, Any],
        developer_env: Mapping[str, str],
        *,
        create: bool,
        session: Any = None,
        invoke_custom: Callable[[str, dict[str, Any]], object] | None = None,
    ) -> None:
        self.template = template
        self.resources: Mapping[str, Any] = template["Resources"]
        self._developer_env = developer_env
        self._create = create
        self._session = session
        self._invoke_custom = invoke_custom
        self._clients: dict[str, Any] = {}
        self._physical: dict[str, Physical] = {}
        self._pending: set[str] = set()
        self.parameters = self._parameter_values(developer_env)
        self.evaluator = Evaluator(
            template,
            parameters=self.parameters,
            pseudo=PSEUDO_PARAMETERS,
            ref_resource=lambda logical: self.physical(logical).ref,
            get_att=self._get_att,
        )

    # --- parameters ------------------------------------------------------------------------

    def _function_variables(self) -> dict[str, list[Any]]:
        """Every environment variable of every function, with each expression it has."""
        found: dict[str, list[Any]] = {}
        for name, expression in global_environment(self.template).items():
            found.setdefault(name, []).append(expression)
        for resource in self.resources.values():
            if isinstance(resource, dict) and resource.get("Type") == FUNCTION_TYPE:
                props = resource.get("Properties") or {}
                own = (props.get("Environment") or {}).get("Variables") or {}
                for name, expression in own.items():
                    found.setdefault(name, []).append(expression)
        return found

    def _parameter_values(self, env: Mapping[str, str]) -> dict[str, Any]:
        specs: Mapping[str, Any] = self.template.get("Parameters") or {}
        values = parameter_defaults(self.template)
        for variable, expressions in self._function_variables().items():
            given = (env.get(variable) or "").strip()
            if not given:
                continue
            for expression in expressions:
                parameters = {name for name in referenced_names(expression) if name in specs}
                if len(parameters) == 1:
                    (parameter,) = parameters
                    values[parameter] = parameter_value(specs[parameter], given)
        missing = sorted(name for name in specs if name not in values)
        if missing:
            raise DevError(f"template parameters without a default: {', '.join(missing)}")
        return values

    # --- resources -------------------------------------------------------------------------

    def is_active(self, logical_id: str) -> bool:
        condition = self.resources[logical_id].get("Condition")
        return True if condition is None else self.evaluator.condition(str(condition))

    def physical(self, logical_id: str) -> Physical:
        found = self._physical.get(logical_id)
        if found is not None:
            return found
        if logical_id in self._pending:
            raise TemplateError(f"circular reference through {logical_id}")
        if not self.is_active(logical_id):
            raise TemplateError(f"{logical_id} is referenced but its Condition is false")
        self._pending.add(logical_id)
        try:
            found = self._materialize(logical_id, self.resources[logical_id])
        finally:
            self._pending.discard(logical_id)
        self._physical[logical_id] = found
        return found

    def _get_att(self, logical_id: str, attribute: str) -> str:
        value = self.physical(logical_id).attributes.get(attribute)
        if value is None:
            raise TemplateError(f"{logical_id}.{attribute} is not available in the local stack")
        return value

    def provision(self) -> None:
        """Create every resource the local stack emulates, in template order."""
        for logical_id, resource in self.resources.items():
            kind = str(resource.get("Type", ""))
            if _emulated(kind) and self.is_active(logical_id):
                self.physical(logical_id)

    def _materialize(self, logical_id: str, resource: Mapping[str, Any]) -> Physical:
        kind = str(resource.get("Type", ""))
        if kind in TABLE_TYPES:
            return self._table(logical_id, resource)
        if kind == "AWS::SecretsManager::Secret":
            return self._secret(logical_id, resource)
        if kind == "AWS::SSM::Parameter":
            return self._ssm_parameter(logical_id, resource)
        if kind == "AWS::KMS::Key":
            return self._kms_key(logical_id, resource)
        if kind == "AWS::KMS::Alias":
            return self._kms_alias(resource)
        if kind == FUNCTION_TYPE:
            name = f"{STACK_NAME}-{logical_id}"
            arn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"
            return Physical(name, {"Arn": arn})
        if kind == HTTP_API_TYPE:
            return Physical(API_ID, {"ApiEndpoint": f"https://{API_ID}.execute-api.local"})
        if kind.startswith("Custom::") or kind == CUSTOM_RESOURCE_TYPE:
            return self._custom(logical_id, resource)
        # Named only: nothing runs locally (layers, log groups, alarms...).
        service = kind.split("::")[1].lower() if kind.count("::") == 2 else "local"
        name = f"{STACK_NAME}-{logical_id}"
        return Physical(name, {"Arn": f"arn:aws:{service}:{REGION}:{ACCOUNT_ID}:{name}"})

    def _properties(self, resource: Mapping[str, Any]) -> dict[str, Any]:
        evaluated = self.evaluator.evaluate(resource.get("Properties") or {})
        if not isinstance(evaluated, dict):
            raise TemplateError("resource Properties must be a mapping")
        return evaluated

    def client(self, service: str) -> Any:
        client = self._clients.get(service)
        if client is None:
            session = self._session
            if session is None:
                import boto3

                session = self._session = boto3.session.Session()
            client = self._clients[service] = session.client(service)
        return client

    def _table(self, logical_id: str, resource: Mapping[str, Any]) -> Physical:
        props = self._properties(resource)
        name = str(props.get("TableName") or f"{STACK_NAME}-{logical_id}")
        arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{name}"
        if self._create:
            arn = self._create_table(name, props)
        return Physical(name, {"Arn": arn, "StreamArn": f"{arn}/stream/local"})

    def _create_table(self, name: str, props: Mapping[str, Any]) -> str:
        client = self.client("dynamodb")
        billing = str(props.get("BillingMode") or "PROVISIONED")
        arguments: dict[str, Any] = {
            "TableName": name,
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
            "BillingMode": billing,
        }
        throughput = props.get("ProvisionedThroughput") or {
            "ReadCapacityUnits": 5,
            "WriteCapacityUnits": 5,
        }
        if billing != "PAY_PER_REQUEST":
            arguments["ProvisionedThroughput"] = throughput
        for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            indexes = [
                {
                    field: value
                    for field, value in index.items()
                    if field in ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput")
                }
                for index in props.get(key) or []
            ]
            if key == "GlobalSecondaryIndexes" and billing != "PAY_PER_REQUEST":
                for index in indexes:
                    index.setdefault("ProvisionedThroughput", throughput)
            if indexes:
                arguments[key] = indexes
        response = client.create_table(**arguments)
        client.get_waiter("table_exists").wait(
            TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
        )
        ttl = props.get("TimeToLiveSpecification") or {}
        if _true(ttl.get("Enabled")) and ttl.get("AttributeName"):
            client.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
            )
        return str(response["TableDescription"]["TableArn"])

    def _secret(self, logical_id: str, resource: Mapping[str, Any]) -> Physical:
        props = self._properties(resource)
        name = str(props.get("Name") or f"{STACK_NAME}-{logical_id}")
        client = self.client("secretsmanager")
        if self._create:
            arguments: dict[str, Any] = {"Name": name}
            if props.get("Description"):
                arguments["Description"] = str(props["Description"])
            arguments["SecretString"] = str(props.get("SecretString") or "")
            generate = props.get("GenerateSecretString")
            if isinstance(generate, Mapping) and not props.get("SecretString"):
                arguments["SecretString"] = _generated_secret(generate)
            arn = str(client.create_secret(**arguments)["ARN"])
        else:
            arn = str(client.describe_secret(SecretId=name)["ARN"])
        return Physical(arn, {"Id": arn})

    def _ssm_parameter(self, logical_id: str, resource: Mapping[str, Any]) -> Physical:
        props = self._properties(resource)
        name = str(props.get("Name") or f"/{STACK_NAME}/{logical_id}")
        if self._create:
            self.client("ssm").put_parameter(
                Name=name,
                Type=str(props.get("Type") or "String"),
                Value=scalar_text(props.get("Value", "")),
                Overwrite=True,
            )
        return Physical(name, {"Type": str(props.get("Type") or "String"), "Value": ""})

    def _kms_key(self, logical_id: str, resource: Mapping[str, Any]) -> Physical:
        client = self.client("kms")
        if self._create:
            props = self._properties(resource)
            arguments: dict[str, Any] = {
                "KeyUsage": str(props.get("KeyUsage") or "ENCRYPT_DECRYPT"),
                "KeySpec": str(props.get("KeySpec") or "SYMMETRIC_DEFAULT"),
            }
            if props.get("Description"):
                arguments["Description"] = str(props["Description"])
            metadata = client.create_key(**arguments)["KeyMetadata"]
        else:
            metadata = client.describe_key(KeyId=self._alias_of(logical_id))["KeyMetadata"]
        return Physical(str(metadata["KeyId"]), {"Arn": str(metadata["Arn"])})

    def _alias_of(self, key_logical_id: str) -> str:
        for logical_id, resource in self.resources.items():
            if resource.get("Type") != "AWS::KMS::Alias" or not self.is_active(logical_id):
                continue
            target = (resource.get("Properties") or {}).get("TargetKeyId")
            if key_logical_id in set(referenced_names(target)) or (
                isinstance(target, dict) and key_logical_id in (target.get("Fn::GetAtt") or [])[:1]
            ):
                return scalar_text(self.evaluator.evaluate(resource["Properties"]["AliasName"]))
        raise DevError(
            f"cannot find the KMS key {key_logical_id} of the running stack: the template gives "
            "it no alias"
        )

    def _kms_alias(self, resource: Mapping[str, Any]) -> Physical:
        props = self._properties(resource)
        alias = str(props["AliasName"])
        if self._create:
            self.client("kms").create_alias(AliasName=alias, TargetKeyId=str(props["TargetKeyId"]))
        return Physical(alias)

    def _custom(self, logical_id: str, resource: Mapping[str, Any]) -> Physical:
        if not self._create:
            return Physical(f"{logical_id}-local")
        props = self._properties(resource)
        token = str(props.pop("ServiceToken", ""))
        function = self.function_for_arn(token)
        invoke = self._invoke_custom
        if function is None or invoke is None:
            raise DevError(f"{logical_id}: its ServiceToken is not a function of this template")
        answer = run_custom_resource(
            lambda event: invoke(function, event),
            logical_id,
            str(resource.get("Type")),
            props,
        )
        if answer.get("Status") != "SUCCESS":
            reason = str(answer.get("Reason") or "no reason given").splitlines()[0]
            raise DevError(f"{logical_id} failed: {reason}")
        data = answer.get("Data") or {}
        attributes = {str(key): str(value) for key, value in data.items()}
        return Physical(str(answer.get("PhysicalResourceId") or logical_id), attributes)

    # --- functions and the API --------------------------------------------------------------

    def function_ids(self) -> list[str]:
        return [
            logical_id
            for logical_id, resource in self.resources.items()
            if resource.get("Type") == FUNCTION_TYPE and self.is_active(logical_id)
        ]

    def function_for_arn(self, arn: str) -> str | None:
        for logical_id in self.function_ids():
            if self.physical(logical_id).attributes.get("Arn") == arn:
                return logical_id
        return None

    def function_spec(self, logical_id: str) -> FunctionSpec:
        props = merged_function_properties(
            self.template, self.resources[logical_id].get("Properties") or {}
        )
        code_uri = self.evaluator.evaluate(props.get("CodeUri"))
        handler = self.evaluator.evaluate(props.get("Handler"))
        if not isinstance(code_uri, str) or not isinstance(handler, str) or "." not in handler:
            raise DevError(f"{logical_id}: the local stack needs a local CodeUri and a Handler")
        module_file, _, attribute = handler.rpartition(".")
        package = ".".join(part for part in PurePosixPath(code_uri).parts if part not in ("", "."))
        physical = self.physical(logical_id)
        return FunctionSpec(
            logical_id=logical_id,
            name=physical.ref,
            arn=physical.attributes["Arn"],
            module=f"{package}.{module_file}" if package else module_file,
            handler=attribute,
            memory_mb=int(self.evaluator.evaluate(props.get("MemorySize", 128))),
            timeout_seconds=int(self.evaluator.evaluate(props.get("Timeout", 3))),
        )

    def function_environment(self, logical_id: str) -> dict[str, str]:
        """The function's variables as the template gives them, the developer's values winning."""
        props = merged_function_properties(
            self.template, self.resources[logical_id].get("Properties") or {}
        )
        raw = (props.get("Environment") or {}).get("Variables") or {}
        # A secret reference needs the endpoint; the rest is evaluated as before.
        references = {name for name, value in raw.items() if "{{resolve:" in json.dumps(value)}
        variables = self.evaluator.evaluate(
            {name: value for name, value in raw.items() if name not in references}
        )
        environment = {name: scalar_text(value) for name, value in variables.items()}
        for name in sorted(references):
            environment[name] = self._referenced_secret(raw[name])
        for name in environment:
            given = self._developer_env.get(name)
            if given is not None and given.strip():
                environment[name] = given
        return environment

    def _referenced_secret(self, value: object) -> str:
        """A variable holding a secret reference, resolved; in lookup mode with no endpoint
        to ask (a unit test reading the template), empty: the reader then does without."""
        try:
            return self._resolve_dynamic_references(scalar_text(self.evaluator.evaluate(value)))
        except TemplateError:
            raise
        except Exception:  # botocore's connection errors, a missing secret
            if self._create:
                raise
            return ""

    def _resolve_dynamic_references(self, text: str) -> str:
        """``{{resolve:secretsmanager:<id>:SecretString}}`` replaced by the secret's value, as
        CloudFormation does at deploy time (the only dynamic reference the template uses)."""
        if "{{resolve:" not in text:
            return text

        def secret_value(match: re.Match[str]) -> str:
            client = self.client("secretsmanager")
            return str(client.get_secret_value(SecretId=match.group(1))["SecretString"])

        resolved = _SECRET_REFERENCE.sub(secret_value, text)
        if "{{resolve:" in resolved:
            raise TemplateError("only {{resolve:secretsmanager:<id>:SecretString}} is supported")
        return resolved

    def settings_environment(self) -> dict[str, str]:
        """The union of every function's environment: one process runs them all. A variable
        two functions set differently is reported (the first one wins)."""
        merged: dict[str, str] = {}
        for logical_id in self.function_ids():
            for name, value in self.function_environment(logical_id).items():
                if name in merged and merged[name] != value:
                    print(
                        f"devserver: warning: {name} differs between functions; using the first",
                        file=sys.stderr,
                    )
                    continue
                merged[name] = value
        return merged

    def api(self) -> ApiSpec:
        """The one HTTP API: routes from the functions' HttpApi events, its authorizers, CORS."""
        apis = [
            logical_id
            for logical_id, resource in self.resources.items()
            if resource.get("Type") == HTTP_API_TYPE and self.is_active(logical_id)
        ]
        routes: list[RouteSpec] = []
        used_apis: set[str] = set()
        api_props = {logical_id: self._api_properties(logical_id) for logical_id in apis}
        implicit = self._api_properties(None)
        for function in self.function_ids():
            events = (self.resources[function].get("Properties") or {}).get("Events") or {}
            for event_name, event in events.items():
                if not isinstance(event, dict) or event.get("Type") != "HttpApi":
                    continue
                props = self.evaluator.evaluate(event.get("Properties") or {})
                api_logical = self._api_of(props.get("ApiId"), apis)
                used_apis.add(api_logical)
                api = api_props.get(api_logical, implicit)
                version = scalar_text(props.get("PayloadFormatVersion", "2.0"))
                if version != "2.0":
                    raise DevError(
                        f"{function}.{event_name}: the local stack speaks payload format 2.0 only"
                    )
                routes.append(self._route(function, props, api))
        if len(used_apis) > 1:
            raise DevError("the local stack serves one HttpApi; the template routes to several")
        api_logical = next(iter(used_apis), apis[0] if apis else IMPLICIT_HTTP_API)
        props = api_props.get(api_logical, implicit)
        authorizers = {
            name: self._authorizer(name, spec)
            for name, spec in ((props.get("Auth") or {}).get("Authorizers") or {}).items()
        }
        for route in routes:
            if route.authorizer is not None and route.authorizer not in authorizers:
                raise DevError(f"route {route.route_key} names an unknown authorizer")
        api_id = self.physical(api_logical).ref if api_logical in apis else API_ID
        return ApiSpec(api_logical, api_id, tuple(routes), authorizers, _cors(props))

    def _api_properties(self, logical_id: str | None) -> dict[str, Any]:
        """Globals.HttpApi merged with the API's own Auth and CorsConfiguration, evaluated."""
        global_props = (self.template.get("Globals") or {}).get("HttpApi") or {}
        own = (self.resources[logical_id].get("Properties") or {}) if logical_id else {}
        wanted = {}
        for key in ("Auth", "CorsConfiguration"):
            if key in own:
                wanted[key] = own[key]
            elif key in global_props:
                wanted[key] = global_props[key]
        evaluated = self.evaluator.evaluate(wanted)
        return evaluated if isinstance(evaluated, dict) else {}

    def _api_of(self, api_id: object, apis: list[str]) -> str:
        if api_id is None:
            return IMPLICIT_HTTP_API
        for logical_id in apis:
            if self.physical(logical_id).ref == api_id:
                return logical_id
        raise DevError("an HttpApi event names an ApiId that is not an HttpApi of this template")

    def _route(self, function: str, props: Mapping[str, Any], api: Mapping[str, Any]) -> RouteSpec:
        path = props.get("Path")
        method = str(props.get("Method") or "ANY").upper()
        if method == "*":
            method = "ANY"
        auth = props.get("Auth") or {}
        default = (api.get("Auth") or {}).get("DefaultAuthorizer")
        authorizer = auth.get("Authorizer", default) if isinstance(auth, dict) else default
        if authorizer in ("NONE", None, ""):
            authorizer = None
        route_path = "$default" if path in (None, "$default") else str(path)
        return RouteSpec(method, route_path, function, str(authorizer) if authorizer else None)

    def _authorizer(self, name: str, spec: Mapping[str, Any]) -> AuthorizerSpec:
        if "FunctionArn" not in spec:
            raise DevError(f"authorizer {name}: only Lambda authorizers run locally (no JWT/IAM)")
        function = self.function_for_arn(str(spec["FunctionArn"]))
        if function is None:
            raise DevError(f"authorizer {name}: FunctionArn is not a function of this template")
        identity = spec.get("Identity") or {}
        sources = [f"$request.header.{header}" for header in identity.get("Headers") or []]
        sources += [f"$request.querystring.{name}" for name in identity.get("QueryStrings") or []]
        sources += [f"$context.{name}" for name in identity.get("Context") or []]
        sources += [f"$stageVariables.{name}" for name in identity.get("StageVariables") or []]
        version = scalar_text(spec.get("AuthorizerPayloadFormatVersion", "2.0"))
        if version != "2.0":
            raise DevError(f"authorizer {name}: the local stack speaks payload format 2.0 only")
        return AuthorizerSpec(
            name=name,
            function=function,
            payload_version=version,
            simple_responses=_true(spec.get("EnableSimpleResponses", False)),
            identity_sources=tuple(sources),
            ttl_seconds=int(identity.get("ReauthorizeEvery", 0) or 0) if sources else 0,
        )


def _emulated(kind: str) -> bool:
    return (
        kind in TABLE_TYPES
        or kind
        in (
            "AWS::SecretsManager::Secret",
            "AWS::SSM::Parameter",
            "AWS::KMS::Key",
            "AWS::KMS::Alias",
        )
        or kind.startswith("Custom::")
        or kind == CUSTOM_RESOURCE_TYPE
    )


def _true(value: object) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _strings(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    if isinstance(value, list):
        return tuple(scalar_text(item) for item in value)
    raise TemplateError("expected a list of strings")


def _cors(props: Mapping[str, Any]) -> CorsSpec | None:
    config = props.get("CorsConfiguration")
    if not config:
        return None
    if config is True:
        config = {"AllowOrigins": ["*"], "AllowHeaders": ["*"], "AllowMethods": ["*"]}
    if not isinstance(config, dict):
        return None
    max_age = config.get("MaxAge")
    return CorsSpec(
        allow_origins=_strings(config.get("AllowOrigins")),
        allow_credentials=_true(config.get("AllowCredentials", False)),
        allow_headers=tuple(h.lower() for h in _strings(config.get("AllowHeaders"))),
        allow_methods=tuple(m.upper() for m in _strings(config.get("AllowMethods"))),
        expose_headers=tuple(h.lower() for h in _strings(config.get("ExposeHeaders"))),
        max_age=int(max_age) if max_age is not None else None,
    )


# --- custom resources ---------------------------------------------------------------------------


def run_custom_resource(
    invoke: Callable[[dict[str, Any]], object],
    logical_id: str,
    resource_type: str,
    properties: Mapping[str, Any],
) -> dict[str, Any]:
    """Invoke a custom resource's function with a Create event, as CloudFormation does, and
    return the response it PUTs to the (loopback) ResponseURL."""
    answers: list[dict[str, Any]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                answers.append(json.loads(self.rfile.read(length) or b"{}"))
            except ValueError:
                answers.append({"Status": "FAILED", "Reason": "the response was not JSON"})
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    receiver = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=receiver.serve_forever, name="custom-resource", daemon=True)
    thread.start()
    try:
        port = receiver.server_address[1]
        request_id = str(uuid.uuid4())
        event = {
            "RequestType": "Create",
            "ServiceToken": "local",
            "ResponseURL": f"http://127.0.0.1:{port}/cloudformation-response/{request_id}",
            "StackId": PSEUDO_PARAMETERS["AWS::StackId"],
            "RequestId": request_id,
            "LogicalResourceId": logical_id,
            "ResourceType": resource_type,
            "ResourceProperties": {"ServiceToken": "local", **properties},
        }
        invoke(event)
    finally:
        receiver.shutdown()
        receiver.server_close()
        thread.join()
    if not answers:
        return {"Status": "FAILED", "Reason": "the function sent no response"}
    return answers[0]


def _generated_secret(spec: Mapping[str, Any]) -> str:
    """A ``GenerateSecretString`` value: ``PasswordLength`` random letters and digits (the
    template asks for ExcludePunctuation; nothing else of the spec is emulated)."""
    length = int(spec.get("PasswordLength", 32))
    return "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(length))
