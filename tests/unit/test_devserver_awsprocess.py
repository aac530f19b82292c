"""The embedded AWS endpoint in its own process (devserver.awsprocess): it serves, it applies
the wrapper the stack was given inside its fault injector, which the stack drives over a pipe,
a taken port is reported, and it ends when stopped."""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from devserver.awsendpoint import WsgiApp
from devserver.awsprocess import AwsPortInUse, AwsProcess
from devserver.faults import EXEMPT_APP_ID, EndpointFaults, FaultControlError, FaultPlan

HOST = "127.0.0.1"


def tagging(name: str, value: str, app: WsgiApp) -> WsgiApp:
    """A wrapper that marks every answer (module level: it crosses to the endpoint's process
    by pickling, as devserver.server's ``aws_wrap`` does)."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, [*headers, (name, value)], exc_info)

        return app(environ, start)

    return wrapped


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def endpoint() -> Iterator[tuple[AwsProcess, int]]:
    port = free_port()
    aws = AwsProcess(HOST, port, wrap=functools.partial(tagging, "X-Wrapped", "by-the-stack"))
    try:
        aws.wait_ready()
        yield aws, port
    finally:
        aws.stop()


def test_the_endpoint_serves_from_its_own_process_through_the_wrapper(
    endpoint: tuple[AwsProcess, int],
) -> None:
    aws, port = endpoint
    assert aws.pid not in (None, os.getpid())
    client = boto3.client("dynamodb", endpoint_url=f"http://{HOST}:{port}")
    answer = client.list_tables()
    assert answer["TableNames"] == []
    assert answer["ResponseMetadata"]["HTTPHeaders"]["x-wrapped"] == "by-the-stack"


def test_stopping_ends_the_process(endpoint: tuple[AwsProcess, int]) -> None:
    aws, _port = endpoint
    aws.stop()
    assert aws.exitcode is not None


def test_a_taken_port_is_reported() -> None:
    with socket.socket() as busy:
        busy.bind((HOST, 0))
        busy.listen()
        aws = AwsProcess(HOST, busy.getsockname()[1])
        try:
            with pytest.raises(AwsPortInUse):
                aws.wait_ready()
        finally:
            aws.stop()


def test_the_fault_injector_runs_in_the_endpoint_and_is_driven_over_its_pipe() -> None:
    """The stack's fault control (devserver.faults.EndpointFaults): its wrap crosses to the
    endpoint's process with the stack's own wrap inside; the plan and the counters cross the
    pipe; an exempt client is never faulted."""
    faults = EndpointFaults(inner=functools.partial(tagging, "X-Wrapped", "inside"))
    port = free_port()
    aws = AwsProcess(HOST, port, wrap=faults.wrap)
    try:
        aws.wait_ready()
        faults.started()
        functions = boto3.client(
            "dynamodb",
            endpoint_url=f"http://{HOST}:{port}",
            config=Config(retries={"total_max_attempts": 1}),
        )
        exempt = boto3.client(
            "dynamodb",
            endpoint_url=f"http://{HOST}:{port}",
            config=Config(user_agent_appid=EXEMPT_APP_ID),
        )
        assert functions.list_tables()["TableNames"] == []  # rate 0 until asked

        faults.configure(FaultPlan(1.0, ("throttle",), services=("dynamodb",)))
        with pytest.raises(ClientError) as throttled:
            functions.list_tables()
        assert throttled.value.response["Error"]["Code"] in {
            "ProvisionedThroughputExceededException",
            "ThrottlingException",
        }
        answer = exempt.list_tables()
        assert answer["ResponseMetadata"]["HTTPHeaders"]["x-wrapped"] == "inside"

        snapshot = faults.snapshot()
        assert snapshot["plan"]["rate"] == 1.0
        assert snapshot["requests"] == {"dynamodb.ListTables": 2}
        assert snapshot["injected"]["throttle"] == {"dynamodb.ListTables": 1}
        assert snapshot["exempt"] == 1
    finally:
        aws.stop()
        faults.close()


def test_fault_control_fails_cleanly_when_the_endpoint_is_gone() -> None:
    faults = EndpointFaults()
    aws = AwsProcess(HOST, free_port(), wrap=faults.wrap)
    try:
        aws.wait_ready()
        faults.started()
    finally:
        aws.stop()
    with pytest.raises(FaultControlError):
        faults.snapshot()
    with pytest.raises(FaultControlError):  # and stays failed: no answer is taken for another's
        faults.configure(FaultPlan(0.5))
    faults.close()
