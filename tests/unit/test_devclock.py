"""The local stack's clock (devserver.clock): forward only, controlled over loopback HTTP with
a JSON body unless turned off, followed by `make ctl`, and moved by the printed walkthrough."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import pytest

from devserver.clock import (
    CLOCK_PATH,
    MAX_ADVANCE_SECONDS,
    DevClock,
    SharedOffset,
    clock_control,
    control_enabled,
    stack_offset,
)
from devserver.gateway import ApiRequestHandler, ApiServer, HttpRequest, HttpResponse
from devserver.seed import DEMO_PASSWORD, DEMO_USERNAME, SeedUser
from devserver.server import walkthrough
from devserver.settings import Ports
from tests.concurrency import run_at_once
from tokencore import cli
from tokencore.clock import Clock
from tokencore.config import Settings


def request(
    method: str,
    body: Any = None,
    path: str = CLOCK_PATH,
    content_type: str = "application/json",
) -> HttpRequest:
    raw = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    return HttpRequest(
        method=method,
        raw_path=path,
        raw_query="",
        headers=[("Content-Type", content_type)] if content_type else [],
        body=raw,
        source_ip="127.0.0.1",
        protocol="HTTP/1.1",
    )


def document(response: HttpResponse | None) -> dict[str, Any]:
    assert response is not None
    parsed: dict[str, Any] = json.loads(response.body)
    return parsed


def test_the_clock_is_the_wall_clock_plus_a_forward_only_offset() -> None:
    clock = DevClock()
    assert clock.offset == 0.0
    before = clock.now()
    assert clock.advance(30) >= before + 30
    assert clock.offset == 30.0
    for bad in (-1, math.nan, math.inf, MAX_ADVANCE_SECONDS + 1, True, "5", None):
        with pytest.raises(ValueError, match="advance_seconds"):
            clock.advance(bad)
    assert clock.offset == 30.0  # a refused move changes nothing


def test_concurrent_advances_all_count() -> None:
    clock = DevClock()

    def advance_often() -> int:
        for _ in range(100):
            clock.advance(1)
        return 100

    assert sum(run_at_once(8, advance_often)) == 800
    assert clock.offset == 800.0


def test_a_shared_clock_is_followed_through_its_page() -> None:
    """The stack's clock writes its offset into a page that every function container maps
    read-only (devserver.container): a follower sees each move at its next read."""
    page = SharedOffset.create()
    follower_page = SharedOffset.attach(page.fileno())
    try:
        stack_clock = DevClock(shared=page)
        follower = DevClock(shared=follower_page)
        assert follower.offset == 0.0
        stack_clock.advance(31)
        stack_clock.advance(0.5)
        assert follower.offset == 31.5
        assert follower.now() >= stack_clock.now() - 1
        with pytest.raises(TypeError):  # the follower's mapping is read-only
            follower_page.write(1.0)
    finally:
        follower_page.close()
        page.close()


def test_the_control_reads_and_advances_the_clock() -> None:
    clock = DevClock()
    control = clock_control(clock)
    assert document(control(request("GET")))["offset"] == 0.0
    moved = control(request("POST", {"advance_seconds": 31}))
    assert moved is not None
    assert moved.status == 200
    assert moved.header("Cache-Control") == "no-store"
    assert document(moved)["offset"] == 31.0
    assert document(moved)["now"] >= document(control(request("GET")))["now"] - 1


@pytest.mark.parametrize(
    ("method", "body", "status"),
    [
        ("POST", {"advance_seconds": -5}, 400),  # never backwards
        ("POST", {"advance_seconds": "31"}, 400),
        ("POST", {}, 400),
        ("POST", b"not json", 400),
        ("POST", [], 400),
        ("DELETE", None, 405),
    ],
)
def test_the_control_refuses_anything_else(method: str, body: Any, status: int) -> None:
    clock = DevClock()
    answer = clock_control(clock)(request(method, body))
    assert answer is not None
    assert answer.status == status
    assert clock.offset == 0.0


def test_the_control_answers_its_path_only() -> None:
    control = clock_control(DevClock())
    assert control(request("GET", path="/me")) is None
    assert control(request("POST", {"advance_seconds": 1}, path="/_dev/clock/")) is None


def test_control_is_on_unless_turned_off() -> None:
    assert control_enabled({}) is True
    assert control_enabled({"DEV_CLOCK_CONTROL": "1"}) is True
    for off in ("0", "false", "No "):
        assert control_enabled({"DEV_CLOCK_CONTROL": off}) is False


@pytest.mark.parametrize(
    "content_type", ["", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_only_a_json_post_moves_the_clock(content_type: str) -> None:
    """What a page from another origin can send without a CORS preflight (which this route
    never grants) is refused: a web page cannot expire a developer's local sessions."""
    clock = DevClock()
    control = clock_control(clock)
    answer = control(request("POST", {"advance_seconds": 31}, content_type=content_type))
    assert answer is not None
    assert answer.status == 415
    assert clock.offset == 0.0
    charset = control(
        request("POST", {"advance_seconds": 31}, content_type="Application/JSON; charset=utf-8")
    )
    assert charset is not None
    assert charset.status == 200
    preflight = control(request("OPTIONS"))
    assert preflight is not None
    assert (preflight.status, preflight.header("Access-Control-Allow-Origin")) == (405, None)


def walkthrough_text(*, grace: int, clock_control: bool) -> str:
    settings = Settings.from_env({"REFRESH_REUSE_GRACE_SECONDS": str(grace)})
    demo = SeedUser(DEMO_USERNAME, DEMO_PASSWORD, ("user",), "demo@example.com")
    users = [(demo, "user-id")]
    return "\n".join(walkthrough(Ports(3000, 4566), settings, users, clock_control=clock_control))


def test_the_printed_walkthrough_never_waits() -> None:
    moved = walkthrough_text(grace=30, clock_control=True)
    assert "-H 'Content-Type: application/json' -d '{\"advance_seconds\": 31}' $API/_dev/clock" in (
        moved
    )
    # Without the control the reader is asked to wait; the script itself never sleeps.
    unmoved = walkthrough_text(grace=30, clock_control=False)
    assert "wait 31 s (past the 30 s grace window)" in unmoved
    assert "_dev/clock" not in unmoved
    no_grace = walkthrough_text(grace=0, clock_control=True)
    assert "_dev/clock" not in no_grace
    for text in (moved, unmoved, no_grace):
        assert "sleep" not in text


@pytest.fixture
def served_clock() -> Iterator[tuple[str, DevClock]]:
    """The control on a real loopback HTTP server, as `make dev` serves it."""
    clock = DevClock()
    server = ApiServer(("127.0.0.1", 0), ApiRequestHandler)
    server.pages = clock_control(clock)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", clock
    finally:
        server.shutdown()
        server.server_close()


def test_ctl_follows_the_stacks_clock(served_clock: tuple[str, DevClock]) -> None:
    url, clock = served_clock
    assert stack_offset(url) == 0.0
    clock.advance(42.5)
    assert stack_offset(url) == 42.5


def test_without_control_ctl_uses_the_wall_clock() -> None:
    closed = ThreadingHTTPServer(("127.0.0.1", 0), ApiRequestHandler)
    port = closed.server_address[1]
    closed.server_close()  # nothing listens there now
    assert stack_offset(f"http://127.0.0.1:{port}") == 0.0


def test_the_cli_builds_its_runtime_on_the_clock_it_is_given(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[Clock] = []

    class Probe:
        def __init__(self, settings: Any = None, clock: Any = None) -> None:
            seen.append(clock)
            raise cli.CliError("probe", "probe")

    monkeypatch.setattr("tokencore.runtime.Runtime", Probe)
    clock = DevClock(12.0)
    assert cli.main(["list-keys"], clock=clock) != 0
    assert seen == [clock]
    assert "probe" in capsys.readouterr().err
