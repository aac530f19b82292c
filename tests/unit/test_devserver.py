"""The local stack's parts that need no server: reading template.yaml, evaluating it, routing,
the payload 2.0 events and answers, the authorizer step, seed users, and `tokenctl decode`."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from devserver.gateway import Gateway, HttpRequest, Router, translate
from devserver.seed import parse_seed_users, with_demo
from devserver.settings import DevError, Ports, developer_settings, function_concurrency
from devserver.stack import ApiSpec, AuthorizerSpec, LocalStack, RouteSpec
from devserver.template import NO_VALUE, Evaluator, TemplateError, load_template
from tokencore import cli
from tokencore.config import Settings

# --- the template ------------------------------------------------------------------------------


def test_loader_reads_short_tags_as_long_forms(tmp_path: Any) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        "Resources:\n"
        "  R:\n"
        "    Type: X\n"
        "    Properties:\n"
        "      A: !Ref P\n"
        "      B: !GetAtt F.Arn\n"
        "      C: !Sub arn:${AWS::Region}\n"
        "      D: !If [Cond, !Ref AWS::NoValue, x]\n"
        "      Version: 2012-10-17\n"
    )
    props = load_template(path)["Resources"]["R"]["Properties"]
    assert props["A"] == {"Ref": "P"}
    assert props["B"] == {"Fn::GetAtt": ["F", "Arn"]}
    assert props["C"] == {"Fn::Sub": "arn:${AWS::Region}"}
    assert props["D"] == {"Fn::If": ["Cond", {"Ref": "AWS::NoValue"}, "x"]}
    assert props["Version"] == "2012-10-17"  # a string, as CloudFormation reads it


def test_loader_refuses_unknown_tags(tmp_path: Any) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("Resources:\n  R: !Bogus x\n")
    with pytest.raises(TemplateError):
        load_template(path)


def _evaluator(parameters: dict[str, Any]) -> Evaluator:
    template = {
        "Conditions": {"IsOn": {"Fn::Equals": [{"Ref": "Mode"}, "on"]}},
        "Resources": {"Thing": {"Type": "X"}},
    }
    return Evaluator(
        template,
        parameters=parameters,
        pseudo={"AWS::Region": "eu-west-1"},
        ref_resource=lambda logical: f"ref-of-{logical}",
        get_att=lambda logical, attribute: f"{logical}.{attribute}-value",
    )


def test_evaluator_resolves_intrinsics() -> None:
    ev = _evaluator({"Mode": "on", "Name": "n"})
    assert ev.evaluate({"Fn::Sub": "${AWS::Region}/${Name}/${Thing.Arn}/${!Literal}"}) == (
        "eu-west-1/n/Thing.Arn-value/${Literal}"
    )
    assert ev.evaluate({"Fn::If": ["IsOn", {"Ref": "Thing"}, "off"]}) == "ref-of-Thing"
    assert ev.evaluate(
        {"A": {"Fn::If": ["IsOn", {"Ref": "AWS::NoValue"}, 1]}, "B": [1, {"Ref": "AWS::NoValue"}]}
    ) == {"B": [1]}
    assert ev.evaluate({"Fn::Split": [",", "a,b"]}) == ["a", "b"]
    assert ev.evaluate({"Fn::Join": ["-", ["a", {"Ref": "Name"}]]}) == "a-n"
    assert _evaluator({"Mode": "off"}).evaluate({"Fn::If": ["IsOn", 1, 2]}) == 2
    assert ev.evaluate({"Ref": "AWS::NoValue"}) is NO_VALUE


def test_evaluator_refuses_what_it_cannot_do() -> None:
    ev = _evaluator({"Mode": "on"})
    with pytest.raises(TemplateError, match="Fn::ImportValue"):
        ev.evaluate({"Fn::ImportValue": "x"})
    with pytest.raises(TemplateError, match="Nope"):
        ev.evaluate({"Ref": "Nope"})


PORTS = Ports(http=3000, aws=4566)


def _stack(**env: str) -> LocalStack:
    """The real template in lookup mode: nothing is created, no AWS call is made."""
    return LocalStack(load_template(), developer_settings(env, PORTS), create=False)


def test_settings_come_from_the_template_with_the_developer_winning() -> None:
    environment = _stack(SESSIONS_TABLE_NAME="mine", REFRESH_RATE_LIMIT="2/10")
    settings_env = environment.settings_environment()
    settings = Settings.from_env(settings_env)  # every value is valid as the functions see it
    assert settings.token_issuer == "http://127.0.0.1:3000"  # not the deployment placeholder
    assert settings.sessions_table_name == "mine"
    assert str(settings.refresh_rate_limit) == "2/10"
    assert settings.refresh_reuse_grace_seconds == 30  # the template's default
    # The override reached the parameter, so the table itself is named by it.
    assert environment.parameters["SessionsTableName"] == "mine"
    assert environment.physical("SessionsTable").ref == "mine"


def test_key_backend_kms_turns_on_the_templates_kms_conditions() -> None:
    stack = _stack(KEY_BACKEND="kms", ACCESS_TOKEN_ALG="ES256")
    assert stack.evaluator.condition("UseKms")
    assert stack.evaluator.condition("CreateKmsKey")
    assert stack.evaluator.condition("IsEs256")
    assert not stack.is_active("SigningKeysSecret")
    assert stack.is_active("SigningKey")


def test_the_api_is_read_from_the_template() -> None:
    api = _stack().api()
    routes = {route.route_key: route for route in api.routes}
    assert routes["POST /auth/login"].authorizer is None
    assert routes["GET /me"].authorizer == "TokenAuthorizer"
    assert routes["DELETE /auth/sessions/{session_id}"].function == "RevokerFunction"
    authorizer = api.authorizers["TokenAuthorizer"]
    assert authorizer.function == "AuthorizerFunction"
    assert authorizer.identity_sources == ("$request.header.Authorization",)
    assert authorizer.simple_responses
    assert authorizer.ttl_seconds == 0
    assert api.cors is None  # ALLOWED_ORIGINS is empty by default
    assert _stack(ALLOWED_ORIGINS="http://localhost:5173").api().cors is not None
    spec = _stack().function_spec("IssuerFunction")
    assert (spec.module, spec.handler) == ("functions.issuer.app", "lambda_handler")


# --- routing, events, answers -----------------------------------------------------------------


def test_router_prefers_the_most_specific_route() -> None:
    router = Router(
        [
            RouteSpec("ANY", "/items/{proxy+}", "Greedy", None),
            RouteSpec("GET", "/items/{id}", "Param", None),
            RouteSpec("GET", "/items/special", "Literal", None),
            RouteSpec("ANY", "/items/{id}", "AnyParam", None),
            RouteSpec("ANY", "$default", "Default", None),
        ]
    )

    def target(method: str, path: str) -> tuple[str, dict[str, str]]:
        found = router.match(method, path)
        assert found is not None
        return found[0].function, found[1]

    assert target("GET", "/items/special") == ("Literal", {})
    assert target("GET", "/items/a%20b") == ("Param", {"id": "a b"})
    assert target("POST", "/items/x") == ("AnyParam", {"id": "x"})
    assert target("GET", "/items/x/y") == ("Greedy", {"proxy": "x/y"})
    assert target("GET", "/other") == ("Default", {})
    assert Router([RouteSpec("GET", "/me", "Me", None)]).match("GET", "/me/") is None


def test_translate_maps_payload_v2_answers() -> None:
    answer = translate(
        {
            "statusCode": 200,
            "headers": {"Content-Type": "application/json", "Content-Length": "999"},
            "cookies": ["a=1; Path=/", "b=2; Path=/auth"],
            "body": base64.b64encode(b"\x00\x01").decode(),
            "isBase64Encoded": True,
        }
    )
    assert answer.status == 200
    assert [v for k, v in answer.headers if k == "Set-Cookie"] == ["a=1; Path=/", "b=2; Path=/auth"]
    assert answer.header("Content-Length") is None  # recomputed by the server
    assert answer.body == b"\x00\x01"
    inferred = translate({"hello": "world"})
    assert (inferred.status, json.loads(inferred.body)) == (200, {"hello": "world"})
    assert translate({"statusCode": "nope"}).status == 500


class FakeFunctions:
    def __init__(self, authorizer: Any) -> None:
        self.authorizer = authorizer
        self.events: dict[str, list[dict[str, Any]]] = {"Auth": [], "Route": []}

    def __call__(self, function: str, event: dict[str, Any]) -> Any:
        self.events[function].append(event)
        if function == "Auth":
            if isinstance(self.authorizer, Exception):
                raise self.authorizer
            return self.authorizer
        return {"statusCode": 200, "body": "ok"}


def _gateway(authorizer: Any, ttl: int = 0) -> tuple[Gateway, FakeFunctions]:
    functions = FakeFunctions(authorizer)
    api = ApiSpec(
        logical_id="Api",
        api_id="api1",
        routes=(RouteSpec("GET", "/things/{id}", "Route", "Lambda"),),
        authorizers={
            "Lambda": AuthorizerSpec(
                "Lambda", "Auth", "2.0", True, ("$request.header.Authorization",), ttl
            )
        },
        cors=None,
    )
    return Gateway(api, functions), functions


def _get(gateway: Gateway, **headers: str) -> Any:
    request = HttpRequest(
        method="GET",
        raw_path="/things/42",
        raw_query="a=1&a=2",
        headers=[(name.replace("_", "-"), value) for name, value in headers.items()],
        body=b"",
        source_ip="127.0.0.1",
    )
    return gateway.handle(request)


def test_authorizer_step_is_api_gateways() -> None:
    gateway, functions = _gateway({"isAuthorized": True, "context": {"sub": "u1"}})
    missing = _get(gateway)
    assert (missing.status, json.loads(missing.body)) == (401, {"message": "Unauthorized"})
    assert functions.events["Auth"] == []  # the identity source is missing: never invoked

    ok = _get(gateway, Authorization="Bearer t", Cookie="x=1; y=2", X_Thing="a")
    assert ok.status == 200
    auth_event = functions.events["Auth"][0]
    assert auth_event["type"] == "REQUEST"
    assert auth_event["identitySource"] == ["Bearer t"]
    assert auth_event["routeArn"].endswith("api1/$default/GET/things/42")
    event = functions.events["Route"][0]
    assert event["requestContext"]["authorizer"] == {"lambda": {"sub": "u1"}}
    assert event["cookies"] == ["x=1", "y=2"]
    assert "cookie" not in event["headers"]
    assert event["headers"]["x-thing"] == "a"
    assert event["queryStringParameters"] == {"a": "1,2"}
    assert event["pathParameters"] == {"id": "42"}
    assert event["routeKey"] == "GET /things/{id}"
    assert event["isBase64Encoded"] is False


@pytest.mark.parametrize(
    ("answer", "status", "message"),
    [
        ({"isAuthorized": False}, 403, "Forbidden"),
        (Exception("Unauthorized"), 401, "Unauthorized"),
        (RuntimeError("boom"), 500, "Internal Server Error"),
        ({"isAuthorized": "yes"}, 500, "Internal Server Error"),
    ],
)
def test_authorizer_denials(answer: Any, status: int, message: str) -> None:
    gateway, functions = _gateway(answer)
    response = _get(gateway, Authorization="Bearer t")
    assert (response.status, json.loads(response.body)) == (status, {"message": message})
    assert functions.events["Route"] == []


def test_authorizer_results_are_cached_only_when_configured() -> None:
    uncached, functions = _gateway({"isAuthorized": True})
    _get(uncached, Authorization="Bearer t")
    _get(uncached, Authorization="Bearer t")
    assert len(functions.events["Auth"]) == 2
    cached, functions = _gateway({"isAuthorized": True}, ttl=300)
    _get(cached, Authorization="Bearer t")
    _get(cached, Authorization="Bearer t")
    _get(cached, Authorization="Bearer other")
    assert len(functions.events["Auth"]) == 2


def test_function_concurrency_is_a_bounded_whole_number() -> None:
    assert function_concurrency({}) == 4
    assert function_concurrency({"DEV_FUNCTION_CONCURRENCY": " 12 "}) == 12
    for bad in ("0", "65", "-1", "2.5", "many"):
        with pytest.raises(DevError, match=r"^DEV_FUNCTION_CONCURRENCY must be a whole number"):
            function_concurrency({"DEV_FUNCTION_CONCURRENCY": bad})


# --- seed users and the CLI's offline command -------------------------------------------------


def test_seed_users_parse_and_errors_never_echo_passwords() -> None:
    users = parse_seed_users("alice:pw one:admin,user; bob:pw2")
    assert [(u.username, u.password, u.roles) for u in users] == [
        ("alice", "pw one", ("admin", "user")),
        ("bob", "pw2", ()),
    ]
    assert [u.username for u in with_demo(users)] == ["alice", "bob", "demo"]
    assert [u.username for u in with_demo(parse_seed_users("DEMO:x"))] == ["DEMO"]
    with pytest.raises(DevError) as caught:
        parse_seed_users("alice:ok;bob-secret-password")
    assert "entry 2" in str(caught.value)
    assert "secret" not in str(caught.value)


def _segment(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def test_cli_decode_is_marked_unverified(capsys: pytest.CaptureFixture[str]) -> None:
    token = ".".join(
        [
            _segment({"alg": "RS256", "kid": "k", "typ": "at+jwt"}),
            _segment({"sub": "u", "exp": 0}),
            "c2ln",
        ]
    )
    assert cli.main(["decode", token]) == 0
    out, err = capsys.readouterr()
    shown = json.loads(out)
    assert shown["verified"] is False
    assert shown["warning"].startswith("UNVERIFIED")
    assert shown["claims"] == {"sub": "u", "exp": 0}
    assert shown["times"] == {"exp": "1970-01-01T00:00:00Z"}
    assert "UNVERIFIED" in err
    assert "c2ln" not in out + err

    assert cli.main(["decode", "a.b"]) == 1
    _, err = capsys.readouterr()
    assert err.count("\n") == 1
    assert "a.b" not in err
