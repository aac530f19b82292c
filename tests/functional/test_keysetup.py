"""The KeySetup custom resource (functions/keysetup/app.py) against moto, answering to a real
HTTP server on 127.0.0.1 that stands in for CloudFormation's presigned ResponseURL.

Secrets and the parameter start as template.yaml creates them (the template's own placeholder
values), so the function and the template cannot disagree about what "empty" looks like.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest

from functions.keysetup import app
from tests.functional.conftest import fresh_aws
from tests.functional.test_template import load_template
from tokencore.errors import InvalidKeyMaterial
from tokencore.keys import KeySet, generate_key, parse_jwks, private_jwk
from tokencore.keys.secretsmanager import put_key_set_secret

ACCESS_SECRET = "tokencore/test/signing-keys"
REFRESH_SECRET = "tokencore/test/refresh-keys"
JWKS_PARAMETER = "/tokencore/test/public-jwks"
STACK_ID = "arn:aws:cloudformation:us-east-1:123456789012:stack/tokencore/0a1b2c3d"

TEMPLATE = load_template()
RESOURCES = TEMPLATE["Resources"]
SECRET_PLACEHOLDER = RESOURCES["RefreshKeysSecret"]["Properties"]["SecretString"]
JWKS_PLACEHOLDER = RESOURCES["PublicJwksParam"]["Properties"]["Value"]


# --- CloudFormation's side --------------------------------------------------------------------


@dataclass
class ResponseServer:
    """Records each PUT; answers with the queued statuses, then 200."""

    url: str
    bodies: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    @property
    def last(self) -> dict[str, Any]:
        assert len(self.bodies) == 1, f"expected one response, got {len(self.bodies)}"
        return self.bodies[-1]


@pytest.fixture
def cloudformation() -> Iterator[ResponseServer]:
    server_state: list[ResponseServer] = []

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            state = server_state[0]
            length = int(self.headers["Content-Length"])
            state.headers.append(dict(self.headers.items()))
            status = state.statuses.pop(0) if state.statuses else 200
            if status == 200:
                state.bodies.append(json.loads(self.rfile.read(length)))
            else:
                self.rfile.read(length)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state = ResponseServer(f"http://127.0.0.1:{server.server_port}/stack-response?X-Amz-Sig=x")
    server_state.append(state)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class Context:
    log_stream_name = "2026/01/01/[$LATEST]0123456789abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def event(
    server: ResponseServer,
    request_type: str = "Create",
    *,
    physical_id: str | None = None,
    **properties: str,
) -> dict[str, Any]:
    props = {
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:keysetup",
        "ServiceTimeout": "300",
        "KeyBackend": "secretsmanager",
        "AccessTokenAlg": "RS256",
        "SigningKeysSecretId": ACCESS_SECRET,
        "RefreshKeysSecretId": REFRESH_SECRET,
        "PublicJwksParameter": JWKS_PARAMETER,
        "KmsSigningKeyId": "",
        "KmsVerifyKeyIds": "",
    }
    props.update(properties)
    body: dict[str, Any] = {
        "RequestType": request_type,
        "ResponseURL": server.url,
        "StackId": STACK_ID,
        "RequestId": f"request-{request_type}",
        "ResourceType": "Custom::KeySetup",
        "LogicalResourceId": "KeySetup",
        "ResourceProperties": props,
    }
    if physical_id is not None:
        body["PhysicalResourceId"] = physical_id
    return body


# --- AWS's side -------------------------------------------------------------------------------


@pytest.fixture
def aws() -> Iterator[app.Clients]:
    """The stack as CloudFormation leaves it before KeySetup runs."""
    with fresh_aws():
        clients = app.Clients(
            secretsmanager=boto3.client("secretsmanager"),
            ssm=boto3.client("ssm"),
            kms=boto3.client("kms"),
        )
        for name in (ACCESS_SECRET, REFRESH_SECRET):
            clients.secretsmanager.create_secret(Name=name, SecretString=SECRET_PLACEHOLDER)
        clients.ssm.put_parameter(Name=JWKS_PARAMETER, Value=JWKS_PLACEHOLDER, Type="String")
        yield clients


def secret_text(clients: app.Clients, name: str) -> str:
    text = clients.secretsmanager.get_secret_value(SecretId=name)["SecretString"]
    assert isinstance(text, str)
    return text


def published(clients: app.Clients) -> dict[str, Any]:
    value = clients.ssm.get_parameter(Name=JWKS_PARAMETER)["Parameter"]["Value"]
    document: dict[str, Any] = json.loads(value)
    return document


def private_strings(key_set: KeySet) -> list[str]:
    """Every private member of every key, as it would appear in JSON."""
    found = []
    for entry in key_set.entries:
        jwk = private_jwk(entry)
        found += [jwk[name] for name in ("d", "p", "q", "dp", "dq", "qi", "k") if name in jwk]
    assert found
    return found


# --- the template and the function agree --------------------------------------------------------


def test_the_template_passes_exactly_the_properties_the_function_reads() -> None:
    names = set(RESOURCES["KeySetup"]["Properties"]) - {"ServiceToken", "ServiceTimeout"}
    assert names == set(event(ResponseServer("https://unused"))["ResourceProperties"]) - {
        "ServiceToken",
        "ServiceTimeout",
    }
    # Each of them is read: the request built from them carries every one.
    request = app.Request.from_properties(
        event(ResponseServer("https://unused"))["ResourceProperties"]
    )
    assert request.refresh_keys_secret_id == REFRESH_SECRET
    assert request.signing_keys_secret_id == ACCESS_SECRET
    assert request.public_jwks_parameter == JWKS_PARAMETER
    assert app.is_placeholder(SECRET_PLACEHOLDER)
    # Empty, and refused by the verifiers' parser: until KeySetup publishes, verifiers fail closed.
    assert json.loads(JWKS_PLACEHOLDER) == {"keys": []}
    with pytest.raises(InvalidKeyMaterial):
        parse_jwks(json.loads(JWKS_PLACEHOLDER))
    assert RESOURCES["KeySetupFunction"]["Properties"]["CodeUri"] == "functions/keysetup/"


# --- create and update --------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_create_fills_both_secrets_and_publishes_the_public_keys(
    aws: app.Clients,
    cloudformation: ResponseServer,
    caplog: pytest.LogCaptureFixture,
    alg: str,
) -> None:
    # Everything, botocore included: Lambda's log level can be turned up to DEBUG from outside,
    # and botocore logs request and response bodies (the secret's value) at DEBUG.
    caplog.set_level(logging.DEBUG)
    app.lambda_handler(event(cloudformation, AccessTokenAlg=alg), Context(), aws)

    response = cloudformation.last
    assert response["Status"] == "SUCCESS", response["Reason"]
    assert response["StackId"] == STACK_ID
    assert response["RequestId"] == "request-Create"
    assert response["LogicalResourceId"] == "KeySetup"
    assert response["PhysicalResourceId"].startswith("KeySetup-")
    # The presigned URL was signed without a content type.
    assert cloudformation.headers[0].get("Content-Type", "") == ""

    access = KeySet.from_secret_document(secret_text(aws, ACCESS_SECRET), "access")
    refresh = KeySet.from_secret_document(secret_text(aws, REFRESH_SECRET), "refresh")
    assert access.active.alg == alg
    assert refresh.active.alg == "HS256"

    # A fresh set: an active key and a next key, both published from the start (the first
    # rotation promotes a key verifiers have had for a whole period), and stamped.
    assert [entry.status.value for entry in access.entries] == ["active", "next"]
    assert [entry.status.value for entry in refresh.entries] == ["active", "next"]
    assert all(entry.created_at is not None for entry in access.entries + refresh.entries)
    kids = [entry.kid for entry in access.entries]
    jwks = published(aws)
    assert [key["kid"] for key in jwks["keys"]] == kids
    assert [key.kid for key in parse_jwks(jwks)] == kids
    assert all(isinstance(key["published_at"], int) for key in jwks["keys"])
    assert response["Data"] == {
        "RefreshKeysCreated": "true",
        "AccessKeysCreated": "true",
        "ActiveAccessKeyAlg": alg,
        "AccessKeyIds": ",".join(kids),
    }

    # No private member reaches the response, the public parameter or the logs.
    exposed = [json.dumps(response), json.dumps(jwks), caplog.text]
    for secret in private_strings(access) + private_strings(refresh):
        for text in exposed:
            assert secret not in text
    assert cloudformation.url not in caplog.text  # the presigned URL answers for the stack


def test_update_keeps_valid_key_sets_and_republishes(
    aws: app.Clients, cloudformation: ResponseServer
) -> None:
    app.lambda_handler(event(cloudformation), Context(), aws)
    created = cloudformation.bodies.pop()
    before = {name: secret_text(aws, name) for name in (ACCESS_SECRET, REFRESH_SECRET)}
    versions = {
        name: aws.secretsmanager.describe_secret(SecretId=name)["VersionIdsToStages"]
        for name in (ACCESS_SECRET, REFRESH_SECRET)
    }
    # Someone empties the parameter: an update publishes it again from the secret.
    aws.ssm.put_parameter(Name=JWKS_PARAMETER, Value=JWKS_PLACEHOLDER, Overwrite=True)

    app.lambda_handler(
        event(cloudformation, "Update", physical_id=created["PhysicalResourceId"]), Context(), aws
    )

    response = cloudformation.last
    assert response["Status"] == "SUCCESS", response["Reason"]
    assert response["PhysicalResourceId"] == created["PhysicalResourceId"]
    assert response["Data"]["AccessKeysCreated"] == "false"
    assert response["Data"]["RefreshKeysCreated"] == "false"
    assert response["Data"]["AccessKeyIds"] == created["Data"]["AccessKeyIds"]
    for name in (ACCESS_SECRET, REFRESH_SECRET):
        assert secret_text(aws, name) == before[name]
        assert (
            aws.secretsmanager.describe_secret(SecretId=name)["VersionIdsToStages"]
            == (versions[name])
        )
    assert [key["kid"] for key in published(aws)["keys"]] == (
        created["Data"]["AccessKeyIds"].split(",")
    )


def test_a_rotated_key_set_is_kept_and_all_its_public_keys_published(
    aws: app.Clients, cloudformation: ResponseServer
) -> None:
    rotated = KeySet([generate_key("ES256"), generate_key("ES256", "next")], "access")
    put_key_set_secret(aws.secretsmanager, ACCESS_SECRET, rotated)

    # AccessTokenAlg says RS256: the live ES256 set is kept (an algorithm change is a rotation).
    app.lambda_handler(event(cloudformation, "Update", physical_id="KeySetup-x"), Context(), aws)

    response = cloudformation.last
    assert response["Status"] == "SUCCESS", response["Reason"]
    assert response["Data"]["ActiveAccessKeyAlg"] == "ES256"
    kept = KeySet.from_secret_document(secret_text(aws, ACCESS_SECRET), "access")
    assert [(e.kid, e.status) for e in kept.entries] == [(e.kid, e.status) for e in rotated.entries]
    kids = [key["kid"] for key in published(aws)["keys"]]
    assert kids == [entry.kid for entry in rotated.entries]


# --- KMS mode -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "alg"), [("RSA_2048", "RS256"), ("ECC_NIST_P256", "ES256")])
def test_kms_mode_publishes_the_kms_public_keys_and_fills_only_the_refresh_secret(
    aws: app.Clients, cloudformation: ResponseServer, spec: str, alg: str
) -> None:
    signing = aws.kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec=spec)["KeyMetadata"]["Arn"]
    older = aws.kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec="RSA_2048")["KeyMetadata"]["Arn"]

    app.lambda_handler(
        event(
            cloudformation,
            KeyBackend="kms",
            AccessTokenAlg=alg,
            SigningKeysSecretId="",
            KmsSigningKeyId=signing,
            KmsVerifyKeyIds=older,
        ),
        Context(),
        aws,
    )

    response = cloudformation.last
    assert response["Status"] == "SUCCESS", response["Reason"]
    keys = parse_jwks(published(aws))
    assert [key.alg for key in keys] == [alg, "RS256"]
    assert response["Data"]["AccessKeyIds"] == ",".join(key.kid for key in keys)
    assert response["Data"]["AccessKeysCreated"] == "false"
    assert secret_text(aws, ACCESS_SECRET) == SECRET_PLACEHOLDER  # not used in KMS mode
    KeySet.from_secret_document(secret_text(aws, REFRESH_SECRET), "refresh")


def test_kms_mode_refuses_a_key_that_does_not_fit_the_algorithm(
    aws: app.Clients, cloudformation: ResponseServer
) -> None:
    rsa = aws.kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec="RSA_2048")["KeyMetadata"]["Arn"]
    app.lambda_handler(
        event(cloudformation, KeyBackend="kms", AccessTokenAlg="ES256", KmsSigningKeyId=rsa),
        Context(),
        aws,
    )
    response = cloudformation.last
    assert response["Status"] == "FAILED"
    assert "RS256" in response["Reason"]
    assert "ES256" in response["Reason"]
    assert published(aws) == json.loads(JWKS_PLACEHOLDER)


# --- failures -------------------------------------------------------------------------------------


def test_a_secret_holding_something_else_fails_the_deployment_and_is_left_alone(
    aws: app.Clients, cloudformation: ResponseServer
) -> None:
    half_edited = '{"version": 1, "keys": [{"kty": "oct", "kid": "rt-0", "alg": "HS256"}]}'
    aws.secretsmanager.put_secret_value(SecretId=REFRESH_SECRET, SecretString=half_edited)

    app.lambda_handler(event(cloudformation), Context(), aws)

    response = cloudformation.last
    assert response["Status"] == "FAILED"
    assert "refresh key secret holds neither the placeholder nor a valid" in response["Reason"]
    assert Context.log_stream_name in response["Reason"]
    assert secret_text(aws, REFRESH_SECRET) == half_edited
    assert response["Data"] == {}


def test_an_access_set_in_the_refresh_secret_is_refused(
    aws: app.Clients, cloudformation: ResponseServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = KeySet([generate_key("RS256")], "access")
    put_key_set_secret(aws.secretsmanager, REFRESH_SECRET, wrong)
    app.lambda_handler(event(cloudformation), Context(), aws)
    response = cloudformation.last
    assert response["Status"] == "FAILED"
    assert "key secret" in caplog.text  # the traceback is logged...
    for secret in private_strings(wrong):  # ...and neither it nor the answer holds the key
        assert secret not in json.dumps(response)
        assert secret not in caplog.text


def test_a_missing_secret_fails_with_the_aws_error_code(
    aws: app.Clients, cloudformation: ResponseServer
) -> None:
    aws.secretsmanager.delete_secret(SecretId=ACCESS_SECRET, ForceDeleteWithoutRecovery=True)
    app.lambda_handler(event(cloudformation), Context(), aws)
    response = cloudformation.last
    assert response["Status"] == "FAILED"
    assert (
        "could not read the access key secret (ResourceNotFoundException)" in (response["Reason"])
    )


def test_an_unexpected_error_still_answers_without_its_message(
    aws: app.Clients, cloudformation: ResponseServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("something that might quote a value")

    monkeypatch.setattr(app, "setup", explode)
    app.lambda_handler(event(cloudformation), Context(), aws)
    response = cloudformation.last
    assert response["Status"] == "FAILED"
    assert response["Reason"].startswith("RuntimeError (details in the function's log)")
    assert "might quote" not in response["Reason"]


def test_failing_to_build_the_clients_still_answers(
    cloudformation: ResponseServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_clients() -> app.Clients:
        raise OSError("no region")

    monkeypatch.setattr(app.Clients, "create", staticmethod(no_clients))
    app.lambda_handler(event(cloudformation), Context())
    assert cloudformation.last["Status"] == "FAILED"


@pytest.mark.parametrize(
    ("properties", "message"),
    [
        ({"KeyBackend": "vault"}, "KeyBackend"),
        ({"AccessTokenAlg": "HS256"}, "AccessTokenAlg"),
        ({"KeyBackend": "kms", "AccessTokenAlg": "EdDSA", "KmsSigningKeyId": "k"}, "EdDSA"),
        ({"KeyBackend": "kms"}, "KmsSigningKeyId"),
        ({"RefreshKeysSecretId": ""}, "RefreshKeysSecretId"),
    ],
)
def test_bad_properties_fail_without_touching_anything(
    aws: app.Clients, cloudformation: ResponseServer, properties: dict[str, str], message: str
) -> None:
    app.lambda_handler(event(cloudformation, **properties), Context(), aws)
    response = cloudformation.last
    assert response["Status"] == "FAILED"
    assert message in response["Reason"]
    assert secret_text(aws, REFRESH_SECRET) == SECRET_PLACEHOLDER


# --- delete and the protocol --------------------------------------------------------------------


class NoCalls:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"Delete must not call AWS ({name})")


def test_delete_does_nothing_and_succeeds(cloudformation: ResponseServer) -> None:
    clients = app.Clients(secretsmanager=NoCalls(), ssm=NoCalls(), kms=NoCalls())
    # Even with properties that would fail a Create (a rollback after a failed Create).
    app.lambda_handler(
        event(cloudformation, "Delete", physical_id="KeySetup-1", KeyBackend="vault"),
        Context(),
        clients,
    )
    response = cloudformation.last
    assert response["Status"] == "SUCCESS"
    assert response["PhysicalResourceId"] == "KeySetup-1"
    assert response["Data"] == {}


def test_an_unknown_request_type_fails(cloudformation: ResponseServer) -> None:
    clients = app.Clients(secretsmanager=NoCalls(), ssm=NoCalls(), kms=NoCalls())
    app.lambda_handler(event(cloudformation, "Replace"), Context(), clients)
    assert cloudformation.last["Status"] == "FAILED"


def test_the_physical_id_is_stable_for_a_stack() -> None:
    first = app.physical_resource_id({"StackId": STACK_ID, "LogicalResourceId": "KeySetup"})
    again = app.physical_resource_id({"StackId": STACK_ID, "LogicalResourceId": "KeySetup"})
    other = app.physical_resource_id({"StackId": STACK_ID + "x", "LogicalResourceId": "KeySetup"})
    assert first == again != other
    assert app.physical_resource_id({"PhysicalResourceId": "given"}) == "given"


def test_a_failed_delivery_is_retried(cloudformation: ResponseServer) -> None:
    pauses: list[float] = []
    cloudformation.statuses = [503, 500]
    delivered = app.send_response(
        event(cloudformation, "Delete"), app.SUCCESS, "", "KeySetup-1", {}, pause=pauses.append
    )
    assert delivered
    assert len(cloudformation.headers) == 3
    assert cloudformation.last["Status"] == "SUCCESS"
    assert pauses == [1, 2]  # backs off between attempts, never after the last


def test_delivery_gives_up_after_three_attempts(cloudformation: ResponseServer) -> None:
    pauses: list[float] = []
    cloudformation.statuses = [500, 500, 500]
    assert not app.send_response(
        event(cloudformation, "Delete"), app.SUCCESS, "", "id", {}, pause=pauses.append
    )
    assert len(cloudformation.headers) == 3
    assert cloudformation.bodies == []
    assert pauses == [1, 2]


@pytest.mark.parametrize(
    "url",
    [
        "http://cloudformation-custom-resource-response.example.com/x",
        "file:///etc/passwd",
        "ftp://127.0.0.1/x",
        "https://",
    ],
)
def test_only_https_or_loopback_response_urls_are_used(url: str) -> None:
    sent = app.send_response({"ResponseURL": url}, app.SUCCESS, "", "id", {})
    assert not sent


def test_the_reason_is_bounded(cloudformation: ResponseServer) -> None:
    reason = app.failure_reason(app.KeySetupError("x" * 5000), Context())
    assert len(reason) == app.MAX_REASON_CHARS
