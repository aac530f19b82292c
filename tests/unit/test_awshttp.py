"""tokencore.awshttp: SigV4 exactly as botocore signs, AWS JSON errors reduced to their code,
and one kept-alive connection that survives the server closing it (a real HTTP server on
127.0.0.1, no AWS)."""

from __future__ import annotations

import datetime
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from tokencore.awshttp import AwsCallFailed, AwsJsonClient, Credentials, endpoint_url, sign

NOW = 1_790_000_000.0


@pytest.mark.parametrize("token", [None, "session-token-for-tests"])
def test_the_signature_is_the_one_botocore_computes(
    token: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import botocore.auth

    fixed = datetime.datetime.fromtimestamp(NOW, datetime.UTC).replace(tzinfo=None)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: fixed)
    body = b'{"Name":"/tokencore/public-jwks"}'
    headers = {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "AmazonSSM.GetParameter",
    }
    ours = sign(
        "POST",
        "ssm.eu-west-1.amazonaws.com",
        "/",
        headers,
        body,
        service="ssm",
        region="eu-west-1",
        credentials=Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token),
        now=NOW,
    )
    request = AWSRequest("POST", "https://ssm.eu-west-1.amazonaws.com/", data=body, headers=headers)
    auth = SigV4Auth(
        BotoCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token),
        "ssm",
        "eu-west-1",
    )
    # botocore signs the headers it was given plus host and x-amz-date (and the token).
    auth.add_auth(request)
    theirs = request.headers["Authorization"]
    assert ours["Authorization"].rsplit("Signature=", 1)[1] == theirs.rsplit("Signature=", 1)[1]
    assert ours["Authorization"] == theirs


def test_endpoints_follow_boto3s_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_SSM", raising=False)
    assert endpoint_url("ssm", "eu-west-1") == "https://ssm.eu-west-1.amazonaws.com"
    assert endpoint_url("ssm", "cn-north-1") == "https://ssm.cn-north-1.amazonaws.com.cn"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566/")
    assert endpoint_url("ssm", "eu-west-1") == "http://127.0.0.1:4566"
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", "http://127.0.0.1:9999")
    assert endpoint_url("ssm", "eu-west-1") == "http://127.0.0.1:9999"


class _Server:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: list[tuple[int, dict[str, Any], bool]] = []  # status, body, close after
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                server.requests.append(
                    {"headers": dict(self.headers), "body": json.loads(self.rfile.read(length))}
                )
                status, document, close = server.answers.pop(0)
                data = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                if close:
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)
                if close:
                    self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server() -> Iterator[_Server]:
    running = _Server()
    yield running
    running.httpd.shutdown()
    running.httpd.server_close()


@pytest.fixture
def client(server: _Server) -> Iterator[AwsJsonClient]:
    made = _client(server)
    yield made
    made.close()


def _client(server: _Server) -> AwsJsonClient:
    return AwsJsonClient(
        "ssm",
        "AmazonSSM",
        region="us-east-1",
        endpoint=server.url,
        credentials=Credentials("AKIDEXAMPLE", "secret", "token"),
        timeout_seconds=10,
    )


def test_a_call_is_signed_and_its_answer_parsed(server: _Server, client: AwsJsonClient) -> None:
    server.answers.append((200, {"Parameter": {"Value": "v"}}, False))
    assert client.call("GetParameter", {"Name": "/p"}) == {"Parameter": {"Value": "v"}}
    (request,) = server.requests
    assert request["body"] == {"Name": "/p"}
    assert request["headers"]["X-Amz-Target"] == "AmazonSSM.GetParameter"
    assert request["headers"]["Authorization"].startswith(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"
    )
    assert request["headers"]["X-Amz-Security-Token"] == "token"


def test_an_aws_error_is_its_code_only(server: _Server, client: AwsJsonClient) -> None:
    server.answers.append(
        (400, {"__type": "com.amazonaws.ssm#ParameterNotFound", "message": "/secret-name"}, False)
    )
    with pytest.raises(AwsCallFailed) as raised:
        client.call("GetParameter", {"Name": "/secret-name"})
    assert raised.value.code == "ParameterNotFound"
    assert raised.value.http_status == 400
    assert "secret-name" not in str(raised.value)
    server.answers.append((500, {"__type": "<script>"}, False))
    with pytest.raises(AwsCallFailed) as raised:
        client.call("GetParameter", {"Name": "/p"})
    assert raised.value.code == "HTTP500"


def test_the_connection_is_kept_and_reopened_when_the_server_closed_it(
    server: _Server, client: AwsJsonClient
) -> None:
    server.answers.extend([(200, {"n": 1}, False), (200, {"n": 2}, True), (200, {"n": 3}, False)])
    assert [client.call("GetParameter", {}) for _ in range(3)] == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert len(server.requests) == 3


def test_no_server_is_a_call_failure(server: _Server, client: AwsJsonClient) -> None:
    server.httpd.shutdown()
    server.httpd.server_close()
    with pytest.raises(AwsCallFailed) as raised:
        client.call("GetParameter", {})
    assert raised.value.code == "ConnectionRefusedError"


def test_without_credentials_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    with pytest.raises(AwsCallFailed) as raised:
        AwsJsonClient("ssm", "AmazonSSM", region="us-east-1").call("GetParameter", {})
    assert raised.value.code == "NoCredentialsOrRegion"
