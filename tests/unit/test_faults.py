"""AWS fault injection in the local stack's endpoint (devserver.faults): the plan, the kinds as
the services answer them, the exemption, the control route, and DynamoDB's idempotent
transactions that a lost response's retry depends on."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from devserver.faults import (
    ENABLE_VARIABLE,
    EXEMPT_APP_ID,
    FAULTS_PATH,
    KINDS,
    FaultInjector,
    FaultPlan,
    IdempotentTransactions,
    control_enabled,
    fault_control,
    plan_from_environment,
)
from devserver.gateway import HttpRequest, HttpResponse

TRANSACT = "DynamoDB_20120810.TransactWriteItems"


class RecordingApp:
    """A WSGI app standing for moto: counts what it applied, answers 200."""

    def __init__(self) -> None:
        self.applied: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        with self._lock:
            self.applied.append(body.decode())
        start_response("200 OK", [("Content-Type", "application/x-amz-json-1.0")])
        return [b'{"applied": %d}' % len(self.applied)]


class Call:
    def __init__(self) -> None:
        self.status = ""
        self.headers: list[tuple[str, str]] = []

    def start_response(self, status: str, headers: list[tuple[str, str]], exc: Any = None) -> Any:
        self.status, self.headers = status, headers
        return lambda data: None


def environ(
    target: str = "DynamoDB_20120810.UpdateItem", body: bytes = b"{}", user_agent: str = "Boto3"
) -> dict[str, Any]:
    import io

    return {
        "HTTP_X_AMZ_TARGET": target,
        "HTTP_USER_AGENT": user_agent,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }


def call(app: Callable[..., Iterable[bytes]], env: dict[str, Any]) -> tuple[Call, bytes]:
    answer = Call()
    body = b"".join(app(env, answer.start_response))
    return answer, body


# --- the plan --------------------------------------------------------------------------------


def test_a_plan_defaults_to_every_kind_and_service() -> None:
    plan = FaultPlan.from_document({"rate": 0.1})
    assert plan.rate == 0.1
    assert plan.kinds == KINDS
    assert set(plan.services) == {"dynamodb", "secretsmanager", "ssm", "kms"}
    assert FaultPlan.from_document(plan.document()) == plan


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({}, "rate"),
        ({"rate": 1.5}, "rate"),
        ({"rate": -0.1}, "rate"),
        ({"rate": True}, "rate"),
        ({"rate": "0.1"}, "rate"),
        ({"rate": float("nan")}, "rate"),
        ({"rate": 0.1, "kinds": []}, "kinds"),
        ({"rate": 0.1, "kinds": ["timeout"]}, "kinds"),
        ({"rate": 0.1, "kinds": "lost"}, "kinds"),
        ({"rate": 0.1, "services": ["s3"]}, "services"),
        ({"rate": 0.1, "seed": 1.5}, "seed"),
        ({"rate": 0.1, "chaos": True}, "unknown members: chaos"),
        ([0.1], "JSON object"),
    ],
)
def test_a_bad_plan_is_refused_with_what_is_wrong(document: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FaultPlan.from_document(document)


def test_the_environment_plan_names_the_variable_not_the_value() -> None:
    assert plan_from_environment({}) is None
    assert plan_from_environment({"DEV_FAULTS": '{"rate": 0.5, "kinds": ["lost"]}'}) == FaultPlan(
        0.5, ("lost",)
    )
    with pytest.raises(ValueError, match=r"^DEV_FAULTS: the value is not JSON") as refused:
        plan_from_environment({"DEV_FAULTS": "rate=0.5 secret-looking"})
    assert "secret-looking" not in str(refused.value)


# --- the kinds -------------------------------------------------------------------------------


def test_with_no_plan_every_request_passes_and_is_counted() -> None:
    moto = RecordingApp()
    injector = FaultInjector()
    app = injector.wrap(moto)
    for _ in range(5):
        answer, _ = call(app, environ())
        assert answer.status == "200 OK"
    assert len(moto.applied) == 5
    assert injector.snapshot()["requests"] == {"dynamodb.UpdateItem": 5}
    assert sum(sum(c.values()) for c in injector.snapshot()["injected"].values()) == 0


@pytest.mark.parametrize(
    ("target", "codes", "content_type"),
    [
        (
            "DynamoDB_20120810.UpdateItem",
            {
                "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                "com.amazonaws.dynamodb.v20120810#ThrottlingException",
            },
            "application/x-amz-json-1.0",
        ),
        ("secretsmanager.GetSecretValue", {"ThrottlingException"}, "application/x-amz-json-1.1"),
        ("AmazonSSM.GetParameter", {"ThrottlingException"}, "application/x-amz-json-1.1"),
        ("TrentService.Sign", {"ThrottlingException"}, "application/x-amz-json-1.1"),
    ],
)
def test_throttling_answers_as_the_service_does_before_applying(
    target: str, codes: set[str], content_type: str
) -> None:
    moto = RecordingApp()
    injector = FaultInjector(FaultPlan(1.0, ("throttle",), seed=7))
    seen = set()
    for _ in range(20):
        answer, body = call(injector.wrap(moto), environ(target))
        assert answer.status.startswith("400 ")
        assert dict(answer.headers)["Content-Type"] == content_type
        seen.add(json.loads(body)["__type"])
    assert seen == codes
    assert moto.applied == []
    service = {"DynamoDB_20120810": "dynamodb", "secretsmanager": "secretsmanager"}.get(
        target.split(".")[0], {"AmazonSSM": "ssm", "TrentService": "kms"}.get(target.split(".")[0])
    )
    label = f"{service}.{target.split('.')[1]}"
    assert injector.snapshot()["injected"]["throttle"] == {label: 20}


def test_a_server_error_is_a_500_before_applying() -> None:
    moto = RecordingApp()
    injector = FaultInjector(FaultPlan(1.0, ("error",)))
    answer, body = call(injector.wrap(moto), environ())
    assert answer.status.startswith("500 ")
    assert json.loads(body)["__type"].endswith("#InternalServerError")
    assert moto.applied == []
    assert injector.snapshot()["injected"]["error"] == {"dynamodb.UpdateItem": 1}


def test_a_lost_response_is_applied_and_never_answered() -> None:
    moto = RecordingApp()
    injector = FaultInjector(FaultPlan(1.0, ("lost",)))
    answer = Call()
    with pytest.raises(ConnectionAbortedError):
        injector.wrap(moto)(environ(body=b'{"write": 1}'), answer.start_response)
    assert moto.applied == ['{"write": 1}']  # the write happened
    assert answer.status == ""  # and nothing was answered
    assert injector.snapshot()["injected"]["lost"] == {"dynamodb.UpdateItem": 1}


def test_the_rate_is_a_share_of_requests() -> None:
    moto = RecordingApp()
    injector = FaultInjector(FaultPlan(0.25, ("error",), seed=3))
    app = injector.wrap(moto)
    for _ in range(400):
        call(app, environ())
    injected = injector.snapshot()["injected"]["error"]["dynamodb.UpdateItem"]
    assert 60 <= injected <= 140  # seeded: the same every run; the bound only says "a share"
    assert len(moto.applied) == 400 - injected


def test_exempt_clients_and_other_services_are_never_faulted() -> None:
    moto = RecordingApp()
    injector = FaultInjector(FaultPlan(1.0, ("error",), services=("kms",)))
    app = injector.wrap(moto)
    exempt = f"Boto3/1.40 md/Botocore#1.40 app/{EXEMPT_APP_ID} cfg/retry-mode#standard"
    assert call(app, environ(user_agent=exempt))[0].status == "200 OK"
    assert call(app, environ())[0].status == "200 OK"  # DynamoDB is not in the plan
    assert call(app, environ(target=""))[0].status == "200 OK"  # moto's own API, no target
    assert call(app, environ(target="TrentService.Sign"))[0].status.startswith("500")
    snapshot = injector.snapshot()
    assert snapshot["exempt"] == 1
    assert snapshot["requests"] == {"dynamodb.UpdateItem": 1, "kms.Sign": 1}


# --- idempotent transactions ----------------------------------------------------------------


def transact(token: str, write: str = "a") -> bytes:
    return json.dumps({"TransactItems": [write], "ClientRequestToken": token}).encode()


def test_a_repeated_transaction_token_gets_the_first_answer_without_running_again() -> None:
    moto = RecordingApp()
    app = IdempotentTransactions().wrap(moto)
    first = call(app, environ(TRANSACT, transact("t1")))
    again = call(app, environ(TRANSACT, transact("t1")))
    assert first[1] == again[1] == b'{"applied": 1}'
    assert len(moto.applied) == 1
    mismatch, body = call(app, environ(TRANSACT, transact("t1", write="b")))
    assert mismatch.status.startswith("400")
    assert json.loads(body)["__type"].endswith("#IdempotentParameterMismatchException")
    call(app, environ(TRANSACT, transact("t2")))
    assert len(moto.applied) == 2


def test_a_failed_transaction_is_not_kept() -> None:
    def failing(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        failing.calls += 1  # type: ignore[attr-defined]
        start_response("400 Bad Request", [])
        return [b'{"__type": "TransactionCanceledException"}']

    failing.calls = 0  # type: ignore[attr-defined]
    app = IdempotentTransactions().wrap(failing)
    call(app, environ(TRANSACT, transact("t1")))
    call(app, environ(TRANSACT, transact("t1")))
    assert failing.calls == 2  # type: ignore[attr-defined]


def test_kept_answers_expire() -> None:
    moto = RecordingApp()
    app = IdempotentTransactions(window_seconds=0).wrap(moto)
    call(app, environ(TRANSACT, transact("t1")))
    call(app, environ(TRANSACT, transact("t1")))
    assert len(moto.applied) == 2


class UnreservedTransactions(IdempotentTransactions):
    """The broken variant: looks the token up, runs, then keeps the answer, with no
    reservation in between (check-then-act)."""

    def _reserve(self, token: str, digest: str) -> Any:
        with self._lock:
            return self._answers.get(token)


@pytest.mark.parametrize(
    ("memo", "runs"), [(IdempotentTransactions, 1), (UnreservedTransactions, 2)]
)
def test_two_identical_transactions_at_once_run_once(
    memo: type[IdempotentTransactions], runs: int
) -> None:
    """The second request arrives while the first one is applying (made deterministic: the
    app holds the first until the second has been answered or has entered too)."""
    entered = threading.Event()
    release = threading.Event()
    applied: list[int] = []

    def slow(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        applied.append(1)
        entered.set()
        release.wait(timeout=10)
        start_response("200 OK", [])
        return [b"{}"]

    app = memo().wrap(slow)
    first: list[Call] = []
    worker = threading.Thread(
        target=lambda: first.append(call(app, environ(TRANSACT, transact("t")))[0])
    )
    worker.start()
    assert entered.wait(timeout=10)
    entered.clear()
    second = threading.Thread(target=lambda: call(app, environ(TRANSACT, transact("t"))))
    second.start()
    if runs == 2:
        assert entered.wait(timeout=10)  # the broken variant lets it in
    else:
        second.join(timeout=10)
        assert not second.is_alive()  # answered at once: TransactionInProgressException
    release.set()
    worker.join(timeout=10)
    second.join(timeout=10)
    assert len(applied) == runs


def test_a_transaction_in_progress_is_refused_as_dynamodb_does() -> None:
    release = threading.Event()

    def slow(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        release.wait(timeout=10)
        start_response("200 OK", [])
        return [b"{}"]

    memo = IdempotentTransactions()
    app = memo.wrap(slow)
    worker = threading.Thread(target=lambda: call(app, environ(TRANSACT, transact("t"))))
    worker.start()
    try:
        for _ in range(1000):  # until the first request holds the token
            answer, body = call(app, environ(TRANSACT, transact("t")))
            if answer.status.startswith("400"):
                break
        assert json.loads(body)["__type"].endswith("#TransactionInProgressException")
    finally:
        release.set()
        worker.join(timeout=10)


# --- control over HTTP -----------------------------------------------------------------------


def request(
    method: str, body: Any = None, path: str = FAULTS_PATH, content_type: str = "application/json"
) -> HttpRequest:
    raw = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    return HttpRequest(
        method=method,
        raw_path=path,
        raw_query="",
        headers=[("Content-Type", content_type)] if content_type else [],
        body=raw,
        source_ip="127.0.0.1",
    )


def answered(response: HttpResponse | None) -> tuple[int, dict[str, Any]]:
    assert response is not None
    document: dict[str, Any] = json.loads(response.body)
    return response.status, document


def test_the_control_sets_the_plan_and_reads_the_counters() -> None:
    injector = FaultInjector()
    control = fault_control(injector)
    status, document = answered(control(request("GET")))
    assert status == 200
    assert document["plan"]["rate"] == 0.0
    assert set(document) == {"plan", "requests", "injected", "exempt"}
    status, document = answered(control(request("POST", {"rate": 0.2, "kinds": ["lost"]})))
    assert status == 200
    assert injector.plan == FaultPlan(0.2, ("lost",))
    assert document["plan"]["kinds"] == ["lost"]


@pytest.mark.parametrize(
    ("method", "body", "content_type", "status"),
    [
        ("POST", {"rate": 0.2}, "text/plain", 415),
        ("POST", {"rate": 0.2}, "application/x-www-form-urlencoded", 415),
        ("POST", {"rate": 0.2}, "", 415),
        ("POST", b"rate=0.2", "application/json", 400),
        ("POST", {"rate": 2}, "application/json", 400),
        ("PUT", {"rate": 0.2}, "application/json", 405),
        ("DELETE", None, "application/json", 405),
    ],
)
def test_the_control_takes_only_a_valid_json_post(
    method: str, body: Any, content_type: str, status: int
) -> None:
    injector = FaultInjector()
    response = fault_control(injector)(request(method, body, content_type=content_type))
    assert response is not None
    assert response.status == status
    assert injector.plan == FaultPlan()  # unchanged
    assert not any(name.lower().startswith("access-control-") for name, _ in response.headers)


def test_the_control_answers_its_path_only() -> None:
    assert fault_control(FaultInjector())(request("GET", path="/me")) is None
    assert fault_control(FaultInjector())(request("GET", path=FAULTS_PATH + "/")) is None


def test_control_is_on_unless_turned_off() -> None:
    assert control_enabled({})
    assert control_enabled({ENABLE_VARIABLE: "1"})
    for off in ("0", "false", "No"):
        assert not control_enabled({ENABLE_VARIABLE: off})
