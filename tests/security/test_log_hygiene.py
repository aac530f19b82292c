"""Log hygiene over the whole test run: no access token, refresh token, password, cookie value,
secret or private key in any log line, whole or in part.

``test_no_secret_in_any_log_line_of_the_run`` runs after every other test (``run_last``, see
``tests/conftest.py``) and scans what ``log_capture`` collected since the session started:
every log record of this process, everything the tests printed, and the log files of the local
stacks under this run's temporary directory. What it looks for is ``secrets_registry``: every
token, fingerprint, account password and private key the run produced, by 16-character
windows, plus anything shaped like a JWS. Lines that arrive later (local stacks shutting down)
are scanned again at session finish, and a leak there fails the run. The numbers are printed
in the terminal summary ("security: log hygiene").

The other tests prove the mechanism: it finds planted secrets whole and in part, it sees
records of loggers that do not propagate, and the AWS libraries' DEBUG logging (which prints
GetSecretValue answers) stays off whatever the root logger's level.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from tests.security import run_hooks
from tests.security.log_capture import CAPTURE, LogCapture
from tests.security.secrets_registry import REGISTRY, SecretsRegistry
from tokencore.keys import KeySet, generate_key
from tokencore.keys.jwk import private_jwk
from tokencore.keys.secretsmanager import SecretsManagerKeySource, create_key_set_secret


@pytest.mark.run_last
def test_no_secret_in_any_log_line_of_the_run(tmp_path_factory: pytest.TempPathFactory) -> None:
    result = run_hooks.scan(tmp_path_factory.getbasetemp())
    kinds = REGISTRY.counts()
    assert result.lines_scanned > 0
    leaks = "\n".join(f"  {leak.kind} in {leak.where}: {leak.excerpt}" for leak in result.leaks)
    assert not result.leaks, (
        f"{len(result.leaks)} secrets in log lines ({result.lines_scanned} lines scanned, "
        f"registered: {kinds}):\n{leaks}"
    )


# --- the mechanism, proven ---------------------------------------------------------------------


def test_the_scanner_finds_secrets_whole_in_part_and_by_shape() -> None:
    registry = SecretsRegistry()
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ2aWN0aW0ifQ.c2lnbmF0dXJlLWJ5dGVzLW9mLWEtdG9rZW4"
    password = "correct horse battery staple for the scanner"
    registry.register(token, "access token")
    registry.register(password, "password")
    registry.register("short", "password")  # too short to register: ordinary words
    registry.register("pw-12-chars!", "password")  # shorter than a window: searched whole
    lines = [
        ("clean", "request route=GET /me status=200 session_hash=0123456789abcdef"),
        ("clean", "short words are not secrets"),
        ("whole password", f"login failed for {password}"),
        ("password in part", "typed: horse battery staple f"),
        ("short password", "user typed pw-12-chars! as the name"),
        ("signature in part", "sig=" + token.split(".")[2][5:25]),
        ("payload in part", "payload " + token.split(".")[1][:18]),
        ("jws shaped, unregistered", "token eyJ0eXAiOiJKV1QifQ.eyJmb28iOiJiYXIifQ.AAAA"),
    ]
    leaks = registry.scan(lines)
    assert sorted(leak.where for leak in leaks) == sorted(
        where for where, _ in lines if where != "clean"
    )
    # A public JWS header alone is not a leak (every token of a key shares it).
    assert registry.scan([("header", token.split(".")[0])]) == []
    assert all(password not in leak.excerpt and token not in leak.excerpt for leak in leaks)


def test_the_capture_sees_every_logger_and_the_structured_fields() -> None:
    capture = LogCapture()
    undo = capture.install()
    try:
        quiet = logging.getLogger("tests.security.isolated")
        quiet.propagate = False
        quiet.setLevel(logging.INFO)
        quiet.info("message text", extra={"field": "structured-value-1234567890"})
        try:
            raise ValueError("exception text")
        except ValueError:
            logging.getLogger("tests.security.other").error("failed", exc_info=True)
    finally:
        undo()
    text = "\n".join(line for _, line in capture.lines())
    assert "message text" in text
    assert "structured-value-1234567890" in text
    assert "exception text" in text
    assert capture.records == 2


def test_the_whole_run_capture_is_installed() -> None:
    before = CAPTURE.records
    logging.getLogger("tokencore.audit").info("hygiene probe")
    assert CAPTURE.records == before + 1


@pytest.fixture
def root_at_debug() -> Iterator[None]:
    """A root logger at DEBUG with a handler, as Lambda's ApplicationLogLevel=DEBUG sets up."""
    root = logging.getLogger()
    names = ("boto3", "botocore", "urllib3")
    saved = (root.level, {name: logging.getLogger(name).level for name in names})
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.setLevel(saved[0])
        for name, level in saved[1].items():
            logging.getLogger(name).setLevel(level)


@pytest.mark.usefixtures("root_at_debug")
def test_aws_debug_logging_never_prints_the_key_sets() -> None:
    """botocore logs response bodies at DEBUG; a GetSecretValue answer is a private key set.
    Once tokencore has created a client, the AWS libraries stay at WARNING."""
    entry = generate_key("ES256")
    private = private_jwk(entry)["d"]
    capture = LogCapture()
    with mock_aws():
        # The control (kept out of the whole-run capture: it prints the key on purpose): a
        # plain client with botocore at DEBUG prints the key set it stores and reads.
        undo = capture.install()
        try:
            with CAPTURE.paused():
                logging.getLogger("botocore").setLevel(logging.DEBUG)
                client = boto3.client("secretsmanager", region_name="us-east-1")
                create_key_set_secret(client, "hygiene/keys", KeySet([entry], "access"))
                client.get_secret_value(SecretId="hygiene/keys")
        finally:
            undo()
        assert any(private in line for _, line in capture.lines()), "the control printed nothing"
        capture = LogCapture()
        undo = capture.install()
        try:
            source = SecretsManagerKeySource("hygiene/keys", "access")
            assert source.load_verification_keys()
        finally:
            undo()
    logged = [line for _, line in capture.lines()]
    assert not any(private in line for line in logged), "a key set reached a log line"
    assert json.dumps(logged)  # (the capture itself works: it is a list of strings)


def test_the_only_public_password_is_the_documented_demo_one() -> None:
    from devserver.seed import DEMO_PASSWORD
    from tests.security.secrets_registry import PUBLIC

    assert {DEMO_PASSWORD} == PUBLIC
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert DEMO_PASSWORD in readme
