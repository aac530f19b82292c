"""The embedded AWS endpoint: moto's server, with AWS's atomicity under concurrency.

moto's backends keep plain dicts and lists and take no lock, so concurrent requests interleave
inside one operation:

* DynamoDB: a ConditionExpression is evaluated and then the item written: two requests racing
  for one item can both pass their condition (measured: about 1% double winners under
  contention), and a TransactWriteItems is not isolated from a concurrent write.
* Secrets Manager: UpdateSecretVersionStage checks that the label is on RemoveFromVersionId,
  then removes it, then adds it to MoveToVersionId, in three steps: two racing compare-and-swaps
  of AWSCURRENT can both pass the check (the second then fails with a 500, or a reader in
  between finds no AWSCURRENT at all); PutSecretValue moves a label the same way; and readers
  iterate the version dict while a writer adds to it ("dictionary changed size during
  iteration").
* SSM: PutParameter numbers a new version as the last one plus one, so two racing puts can get
  the same version: the version a put returns is what keys.ssm checks for a lost update.
* KMS: UpdateAlias pops the alias from one key before adding it to the other, so a Sign through
  the alias in between finds no key.

AWS makes each of these one atomic step (DynamoDB per item and per transaction, the others per
request). ``SerializedServices`` restores that by running each of these services' requests one
at a time, one lock per service (every other service, and the four among themselves, stay
concurrent): stricter than AWS, which only costs throughput, and it makes every conditional
write, transaction, label move and version number on this endpoint atomic, as on AWS. Reads are
serialized too, because moto's readers are not safe against a concurrent writer.

Used by the contract suite's race tests, so that what the tests prove is what this endpoint
does.

``LoopbackOnly`` closes the endpoint to web pages: it holds the local stack's key secrets, and
moto's server would answer any page the developer visits (it reflects any ``Origin``) and any
``Host`` (DNS rebinding). Only loopback host names are answered, and no browser request
(``Origin``, or a ``Sec-Fetch-Site`` other than ``none``) is: AWS SDKs send neither.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any, Final

# X-Amz-Target prefixes (all four speak AWS's JSON protocol) -> the lock of that service.
SERIALIZED_TARGET_PREFIXES: Final = {
    "DynamoDB_": "dynamodb",
    "secretsmanager.": "secretsmanager",
    "AmazonSSM.": "ssm",
    "TrentService.": "kms",
}
# Connections the listening socket queues before accepting (a burst of clients at once).
LISTEN_BACKLOG: Final = 1024

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def loopback_host(host: str | None) -> bool:
    """``host`` (a Host header: name and optional port) names this machine's loopback."""
    if not host:
        return False
    name = host.strip().lower()
    name = name[: name.find("]") + 1] if name.startswith("[") else name.rsplit(":", 1)[0]
    return name in LOOPBACK_HOSTS


class LoopbackOnly:
    """WSGI middleware: 403 for a non-loopback Host or a browser's request (see the module
    docstring); everything else reaches the wrapped application untouched."""

    def __init__(self, app: WsgiApp) -> None:
        self._app = app

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        fetch_site = environ.get("HTTP_SEC_FETCH_SITE", "none").strip().lower()
        if (
            not loopback_host(environ.get("HTTP_HOST"))
            or "HTTP_ORIGIN" in environ
            or fetch_site != "none"
        ):
            body = b'{"message":"the local AWS endpoint answers AWS SDKs on loopback only"}'
            start_response(
                "403 Forbidden",
                [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
            )
            return [body]
        return self._app(environ, start_response)


class SerializedServices:
    """WSGI middleware: the requests of each service in SERIALIZED_TARGET_PREFIXES one at a
    time, the rest untouched.

    The lock is held until the response body has been produced, so the write and the answer
    that reports it are one step, as in AWS's own request handling.
    """

    def __init__(self, app: WsgiApp) -> None:
        self._app = app
        self._locks = {service: threading.Lock() for service in SERIALIZED_TARGET_PREFIXES.values()}

    def lock_for(self, target: str) -> threading.Lock | None:
        """The lock of the service an X-Amz-Target names (None: not serialized)."""
        for prefix, service in SERIALIZED_TARGET_PREFIXES.items():
            if target.startswith(prefix):
                return self._locks[service]
        return None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        lock = self.lock_for(environ.get("HTTP_X_AMZ_TARGET", ""))
        if lock is None:
            return list(self._app(environ, start_response))
        with lock:
            return list(self._app(environ, start_response))


def moto_app() -> WsgiApp:
    """moto's server application (every service, routed by host and target)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    app: WsgiApp = DomainDispatcherApplication(create_backend_app)
    return app


class EmbeddedAws:
    """moto's server with serialized services, on ``host:port`` (0: a free port), in a thread."""

    def __init__(self, host: str, port: int, *, wrap: Callable[[WsgiApp], WsgiApp] | None = None):
        from moto.moto_server.werkzeug_app import MotoRequestHandler
        from werkzeug.serving import ThreadedWSGIServer

        class Server(ThreadedWSGIServer):
            request_queue_size = LISTEN_BACKLOG

        class QuietHandler(MotoRequestHandler):
            def log_request(self, *args: Any, **kwargs: Any) -> None:
                pass  # one line per AWS call would bury the API's own log

        app: WsgiApp = SerializedServices(moto_app())
        if wrap is not None:
            app = wrap(app)
        app = LoopbackOnly(app)
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
