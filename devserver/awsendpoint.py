"""The embedded AWS endpoint: moto's server, with DynamoDB's write semantics under concurrency.

moto evaluates a ConditionExpression and then writes, without a lock: two requests racing for
one item can both pass their condition (measured: about 1% double winners under contention),
and a TransactWriteItems is not isolated from a concurrent write. DynamoDB serializes writes
per item and applies a transaction all or nothing. ``SerializedDynamoDB`` restores that by
running one DynamoDB request at a time (every other service stays concurrent): stricter than
per-item locking, which only costs throughput, and it makes every conditional write, every
transaction and every read-your-write on this endpoint atomic, as on DynamoDB.

Used by the local stack (``make dev``, ``make load``) and by the contract suite's race tests,
so that what the tests prove is what the local stack does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any, Final

DYNAMODB_TARGET_PREFIX: Final = "DynamoDB_"
# Connections the listening socket queues before accepting (a burst of clients at once).
LISTEN_BACKLOG: Final = 1024

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class SerializedDynamoDB:
    """WSGI middleware: DynamoDB requests one at a time, the rest untouched.

    The lock is held until the response body has been produced, so the write and the answer
    that reports it are one step, as for DynamoDB's own request handling.
    """

    def __init__(self, app: WsgiApp) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith(DYNAMODB_TARGET_PREFIX):
            return list(self._app(environ, start_response))
        with self._lock:
            return list(self._app(environ, start_response))


class _Untracked(list[Any]):
    """An ``instances_tracked`` list that keeps nothing."""

    def append(self, instance: Any) -> None:
        pass


def _untrack_dynamodb_models() -> None:
    """moto keeps every model instance it ever creates (``BaseModel.instances_tracked``, for
    its /moto-api/data.json), and DynamoDB makes new ones on every request: each Query's result
    is a deep copy, and each TransactWriteItems deep-copies the whole table as its rollback
    backup. Kept forever, that grew a `make load` stack to 11 GB within 7,000 requests (it grows
    with the table on every login). Nothing here reads those lists."""
    import moto.dynamodb.models  # noqa: F401 - defines (and registers) the model classes
    from moto.core.model_instances import model_data

    for model in model_data["dynamodb"].values():
        setattr(model, "instances_tracked", _Untracked())  # noqa: B010 - typed as object


def moto_app() -> WsgiApp:
    """moto's server application (every service, routed by host and target)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    _untrack_dynamodb_models()
    app: WsgiApp = DomainDispatcherApplication(create_backend_app)
    return app


class EmbeddedAws:
    """moto's server with serialized DynamoDB, on ``host:port`` (0: a free port), in a thread."""

    def __init__(self, host: str, port: int, *, wrap: Callable[[WsgiApp], WsgiApp] | None = None):
        from moto.moto_server.werkzeug_app import MotoRequestHandler
        from werkzeug.serving import ThreadedWSGIServer

        class Server(ThreadedWSGIServer):
            request_queue_size = LISTEN_BACKLOG

        class QuietHandler(MotoRequestHandler):
            def log_request(self, *args: Any, **kwargs: Any) -> None:
                pass  # one line per AWS call would bury the API's own log

        app: WsgiApp = SerializedDynamoDB(moto_app())
        if wrap is not None:
            app = wrap(app)
        # Binds now: a port in use fails here, before anything else starts.
        self._server = Server(host, port, app, handler=QuietHandler)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    @property
    def url(self) -> str:
        return f"http://{self._server.host}:{self.port}"

    def start(self) -> EmbeddedAws:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="embedded-aws", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()
