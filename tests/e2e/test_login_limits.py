"""Parallel password guesses at the HTTP edge of the local stack, which runs each function in
several container processes: with N guesses sent at once against a window of L, exactly L reach
the password check (401 or 200) and the rest get 429 with Retry-After, per username and per
source address. The strict stack keeps the default limits (10 per username, 100 per address,
per 300 s); clients bind distinct loopback addresses so each limit is met on its own.
"""

from __future__ import annotations

import http.client
import json
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor

from tests.e2e.conftest import RunningStack

USERNAME_LIMIT = 10
ADDRESS_LIMIT = 100
WINDOW_SECONDS = 300
HANG_BOUND_SECONDS = 120


def login_from(
    stack: RunningStack, source: str, username: str, password: str, start: threading.Barrier
) -> tuple[int, str | None, bytes]:
    connection = http.client.HTTPConnection(
        "127.0.0.1", stack.port, timeout=HANG_BOUND_SECONDS, source_address=(source, 0)
    )
    body = json.dumps({"username": username, "password": password})
    start.wait(timeout=HANG_BOUND_SECONDS)
    try:
        connection.request(
            "POST", "/auth/login", body=body, headers={"Content-Type": "application/json"}
        )
        answer = connection.getresponse()
        return answer.status, answer.getheader("Retry-After"), answer.read()
    finally:
        connection.close()


def send_at_once(
    stack: RunningStack, attempts: list[tuple[str, str, str]]
) -> list[tuple[int, str | None, bytes]]:
    start = threading.Barrier(len(attempts))
    with ThreadPoolExecutor(max_workers=len(attempts)) as pool:
        futures = [
            pool.submit(login_from, stack, source, username, password, start)
            for source, username, password in attempts
        ]
        return [future.result(timeout=HANG_BOUND_SECONDS * 2) for future in futures]


def exactly_the_limit_checked(answers: list[tuple[int, str | None, bytes]], limit: int) -> None:
    statuses = sorted(status for status, _, _ in answers)
    checked = [status for status in statuses if status in (200, 401)]
    refused = [(status, retry, body) for status, retry, body in answers if status == 429]
    assert len(checked) == limit, statuses
    assert len(refused) == len(answers) - limit, statuses
    assert all(retry is not None and int(retry) >= 1 for _, retry, _ in refused)
    assert len({body for _, _, body in refused}) == 1  # one answer, whatever the password


def test_parallel_guesses_at_one_username_reach_the_password_check_exactly_the_limit(
    strict_stack: RunningStack,
) -> None:
    strict_stack.fresh_window(WINDOW_SECONDS, needed=120)
    username = f"target-{secrets.token_hex(4)}"
    password = f"right-{secrets.token_hex(8)}"
    created = strict_stack.ctl("create-user", username, "--password", password)
    assert created.returncode == 0, created.stderr
    # 30 guesses from 30 addresses; one carries the right password.
    attempts = [
        (f"127.0.1.{n + 1}", username, password if n == 7 else f"guess-{n}") for n in range(30)
    ]
    answers = send_at_once(strict_stack, attempts)
    exactly_the_limit_checked(answers, USERNAME_LIMIT)


def test_parallel_guesses_from_one_address_reach_the_password_check_exactly_the_limit(
    strict_stack: RunningStack,
) -> None:
    strict_stack.fresh_window(WINDOW_SECONDS, needed=120)
    prefix = secrets.token_hex(4)
    attempts = [("127.0.2.1", f"nobody-{prefix}-{n}", "wrong") for n in range(ADDRESS_LIMIT + 20)]
    answers = send_at_once(strict_stack, attempts)
    exactly_the_limit_checked(answers, ADDRESS_LIMIT)
