"""The embedded AWS endpoint in its own process (devserver.awsprocess): it serves, it applies
the wrapper the stack was given (where fault injection plugs in), a taken port is reported,
and it ends when stopped."""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import boto3
import pytest

from devserver.awsendpoint import WsgiApp
from devserver.awsprocess import AwsPortInUse, AwsProcess

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
