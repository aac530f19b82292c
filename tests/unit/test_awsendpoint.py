"""The embedded AWS endpoint's serialization policy (devserver.awsendpoint): one request at a
time per serialized service, everything else concurrent."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from devserver.awsendpoint import SERIALIZED_TARGET_PREFIXES, SerializedServices

TARGETS = {
    "dynamodb": ["DynamoDB_20120810.UpdateItem", "DynamoDB_20120810.GetItem"],
    "secretsmanager": ["secretsmanager.UpdateSecretVersionStage", "secretsmanager.GetSecretValue"],
    "ssm": ["AmazonSSM.PutParameter", "AmazonSSM.GetParameter"],
    "kms": ["TrentService.UpdateAlias", "TrentService.Sign"],
}


class Gate:
    """A WSGI app that holds the requests for one target until released."""

    def __init__(self, held_target: str) -> None:
        self.held_target = held_target
        self.inside = threading.Event()
        self.release = threading.Event()
        self.served: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target == self.held_target:
            self.inside.set()
            assert self.release.wait(timeout=30), "the test never released the held request"
        with self._lock:
            self.served.append(target)
        start("200 OK", [])
        return [target.encode()]


def call(app: SerializedServices, target: str | None) -> list[bytes]:
    environ = {} if target is None else {"HTTP_X_AMZ_TARGET": target}
    return app(environ, lambda *_: None)


def test_every_target_of_a_service_shares_its_lock_and_services_do_not() -> None:
    app = SerializedServices(Gate(""))
    locks = {}
    for service, targets in TARGETS.items():
        (lock,) = {id(app.lock_for(target)) for target in targets}
        locks[service] = lock
    assert len(set(locks.values())) == len(TARGETS) == len(set(SERIALIZED_TARGET_PREFIXES.values()))
    assert app.lock_for("") is None
    assert app.lock_for("Logs_20140328.PutLogEvents") is None


@pytest.mark.parametrize("service", sorted(TARGETS))
def test_a_request_in_progress_holds_its_service_and_no_other(service: str) -> None:
    held, same_service = TARGETS[service]
    gate = Gate(held)
    app = SerializedServices(gate)
    first = threading.Thread(target=call, args=(app, held))
    first.start()
    try:
        assert gate.inside.wait(timeout=30)
        lock = app.lock_for(same_service)
        assert lock is not None
        # A second request of the same service would wait for this lock: it is taken.
        assert not lock.acquire(blocking=False)
        # Every other service, and unserialized traffic, is served meanwhile.
        for other, targets in TARGETS.items():
            if other != service:
                assert call(app, targets[0]) == [targets[0].encode()]
        assert call(app, None) == [b""]
    finally:
        gate.release.set()
        first.join(timeout=30)
    assert gate.served[-1] == held
    lock = app.lock_for(same_service)
    assert lock is not None
    assert not lock.locked()
    assert call(app, same_service) == [same_service.encode()]
