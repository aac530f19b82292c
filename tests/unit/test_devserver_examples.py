"""examples/protected_api as the local stack reads it: the main template's exports, the
example importing them, and the sample function on both payload versions."""

from __future__ import annotations

import json
from typing import Any

import pytest

from devserver.server import EXAMPLE_DIRECTORY
from devserver.settings import STACK_NAME, Ports, developer_settings
from devserver.stack import LocalStack
from devserver.template import REPO_ROOT, TemplateError, load_template
from examples.protected_api.hello import app as hello

PORTS = Ports(http=3000, aws=4566)


def _main() -> LocalStack:
    return LocalStack(load_template(), developer_settings({}, PORTS), create=False)


def _example(main: LocalStack) -> LocalStack:
    return LocalStack(
        load_template(REPO_ROOT / EXAMPLE_DIRECTORY / "template.yaml"),
        {},
        create=False,
        code_root=EXAMPLE_DIRECTORY,
        exports=main.exports(),
        foreign_functions=main.function_for_arn,
        parameter_overrides={"TokencoreStackName": STACK_NAME},
    )


def test_the_template_exports_what_a_second_stack_attaches() -> None:
    exports = _main().exports()
    authorizer_arn = exports[f"{STACK_NAME}-AuthorizerFunctionArn"]
    assert authorizer_arn.endswith(f":function:{STACK_NAME}-AuthorizerFunction")
    assert exports[f"{STACK_NAME}-Issuer"] == "http://127.0.0.1:3000"
    assert exports[f"{STACK_NAME}-Audience"] == "tokencore-api"
    assert exports[f"{STACK_NAME}-JwksUrl"] == "http://127.0.0.1:3000/.well-known/jwks.json"


def test_the_example_attaches_the_exported_authorizer() -> None:
    main = _main()
    api = _example(main).api()
    routes = {route.route_key: route for route in api.routes}
    assert set(routes) == {
        "GET /example/hello",
        "GET /example/users/{email}",
        "GET /example/reports/{proxy+}",
    }
    assert {route.authorizer for route in routes.values()} == {"Tokencore"}
    authorizer = api.authorizers["Tokencore"]
    assert authorizer.function == "AuthorizerFunction"  # the main template's function
    assert authorizer.payload_version == "2.0"
    assert authorizer.simple_responses
    assert authorizer.ttl_seconds == 0
    assert authorizer.identity_sources == ("$request.header.Authorization",)
    spec = _example(main).function_spec("HelloFunction")
    assert spec.module == "examples.protected_api.hello.app"


def test_an_import_nobody_exports_fails_at_start() -> None:
    main = _main()
    example = LocalStack(
        load_template(REPO_ROOT / EXAMPLE_DIRECTORY / "template.yaml"),
        {},
        create=False,
        code_root=EXAMPLE_DIRECTORY,
        exports=main.exports(),
        foreign_functions=main.function_for_arn,
        parameter_overrides={"TokencoreStackName": "another-stack"},  # not the local stack's
    )
    with pytest.raises(TemplateError, match="another-stack-AuthorizerFunctionArn"):
        example.api()


HTTP_CONTEXT = {
    "user_id": "usr_1",
    "session_id": "sid_1",
    "roles": "user",
    "email": "",
    "expires_at": 1800000900,
    "session_checked": False,
}


@pytest.mark.parametrize(
    ("event", "payload"),
    [
        (
            {
                "version": "2.0",
                "rawPath": "/example/users/a%40b.com",
                "pathParameters": {"email": "a@b.com"},
                "requestContext": {"authorizer": {"lambda": HTTP_CONTEXT}},
            },
            "2.0",
        ),
        (
            {
                "path": "/example/users/a@b.com",
                "pathParameters": {"email": "a@b.com"},
                "requestContext": {
                    "authorizer": {
                        **{k: str(v) for k, v in HTTP_CONTEXT.items()},
                        "session_checked": "false",
                    }
                },
            },
            "1.0",
        ),
    ],
)
def test_the_sample_function_reads_both_payload_versions(
    event: dict[str, Any], payload: str
) -> None:
    answer = hello.lambda_handler(event, None)
    assert answer["statusCode"] == 200
    body = json.loads(answer["body"])
    assert body["user_id"] == "usr_1"
    assert body["roles"] == ["user"]
    assert body["session_checked"] is False
    assert body["path_parameters"] == {"email": "a@b.com"}
    assert body["payload"] == payload


def test_the_sample_function_refuses_without_a_context_and_adds_its_own_rule() -> None:
    assert hello.lambda_handler({"requestContext": {}}, None)["statusCode"] == 401
    # The rule follows the matched route, whatever spelling of the path matched it.
    for raw_path in ("/example/reports/q1", "/example/%72eports/q1"):
        reports: dict[str, Any] = {
            "version": "2.0",
            "routeKey": "GET /example/reports/{proxy+}",
            "rawPath": raw_path,
            "requestContext": {"authorizer": {"lambda": HTTP_CONTEXT}},
        }
        assert hello.lambda_handler(reports, None)["statusCode"] == 403, raw_path
        analyst = {**HTTP_CONTEXT, "roles": "user,analyst"}
        reports["requestContext"] = {"authorizer": {"lambda": analyst}}
        assert hello.lambda_handler(reports, None)["statusCode"] == 200, raw_path
    rest = {
        "resource": "/example/reports/{proxy+}",
        "path": "/example/%72eports/q1",
        "requestContext": {"authorizer": {"user_id": "usr_1", "roles": "user"}},
    }
    assert hello.lambda_handler(rest, None)["statusCode"] == 403
