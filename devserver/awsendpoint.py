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

Two costs of moto's are cut, its results unchanged: it keeps every DynamoDB model instance it
ever makes (``_untrack_dynamodb_models``), and its TransactWriteItems deep-copies every table a
transaction names, as the backup it rolls back to (about 1.1 s per transaction at 6,000
items). ``_cheap_transactions`` backs up only the items the transaction names and restores
those on failure: the cost follows the items touched, and a transaction stays all or nothing.

``LoopbackOnly`` closes the endpoint to web pages: it holds the local stack's key secrets, and
moto's server would answer any page the developer visits (it reflects any ``Origin``) and any
``Host`` (DNS rebinding). Only loopback host names are answered, and no browser request
(``Origin``, or a ``Sec-Fetch-Site`` other than ``none``) is: AWS SDKs send neither.
"""

from __future__ import annotations

import copy
import functools
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


# --- TransactWriteItems in O(items touched) ------------------------------------------------------
#
# moto.dynamodb.models.DynamoDBBackend.transact_write_items (moto 5.2.5, the version pinned in
# requirements-dev.txt) applies a transaction's writes one by one and, for the rollback, first
# takes ``copy.deepcopy`` of every table the transaction names; on any failure it puts those
# copies back in ``self.tables``. The patch below makes that deep copy the table itself while
# one of these transactions runs (the rollback then puts back the same object) and instead saves
# copies of the items the transaction names before it runs, restoring them on any failure.
# tests/functional/test_endpoint_transactions.py fails if moto's code moves from under this: it
# counts item copies and checks the rollback.
PATCHED_MOTO_VERSION: Final = "5.2.5"
_transaction = threading.local()  # .running: inside a patched transact_write_items


class _TablesKeptInPlace:
    """The ``copy`` module as moto.dynamodb.models sees it: inside a patched transaction a
    ``Table`` is "copied" as itself; everything else as before."""

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)

    @staticmethod
    def deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
        from moto.dynamodb.models.table import Table

        if getattr(_transaction, "running", False) and isinstance(value, Table):
            return value
        return copy.deepcopy(value, memo)


class _TouchedItems:
    """Copies of the items a TransactWriteItems names (None: absent), taken before it runs,
    and the length of each touched table's stream; ``restore`` puts them all back."""

    def __init__(self, backend: Any, transact_items: Any) -> None:
        from moto.dynamodb.models.dynamo_type import DynamoType

        self._saved: list[tuple[Any, Any, Any, Any]] = []  # table, hash, range, item copy
        self._streams: dict[int, tuple[Any, int]] = {}
        for entry in transact_items if isinstance(transact_items, list) else []:
            if not isinstance(entry, dict) or len(entry) != 1:
                continue  # moto refuses it before writing anything
            ((operation, request),) = entry.items()
            if not isinstance(request, dict):
                continue
            table = backend.tables.get(request.get("TableName"))
            if table is None:
                continue
            key: Any = request.get("Item") if operation == "Put" else request.get("Key")
            try:
                hash_value = DynamoType(key[table.hash_key_attr])
                range_value = (
                    None if table.range_key_attr is None else DynamoType(key[table.range_key_attr])
                )
                current = table.get_item(hash_value, range_value)
            except Exception:  # noqa: BLE001, S112 - moto refuses this one without writing it
                continue
            self._saved.append((table, hash_value, range_value, copy.deepcopy(current)))
            if table.stream_shard is not None:
                shard = table.stream_shard
                self._streams.setdefault(id(shard), (shard, len(shard.items)))

    def restore(self) -> None:
        for table, hash_value, range_value, item in reversed(self._saved):
            place = table.items if range_value is None else table.items[hash_value]
            key = hash_value if range_value is None else range_value
            if item is None:
                place.pop(key, None)
            else:
                place[key] = item
        for shard, length in self._streams.values():
            del shard.items[length:]


def _cheap_transactions() -> None:
    """Patch moto's TransactWriteItems as described above (once; not at all when moto's module
    no longer looks as expected: its own rollback is slow but right)."""
    import moto.dynamodb.models as models

    backend = models.DynamoDBBackend
    original = backend.transact_write_items
    if getattr(original, "touched_items_only", False) or getattr(models, "copy", None) is not copy:
        return

    @functools.wraps(original)
    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        touched = _TouchedItems(self, transact_items)
        _transaction.running = True
        try:
            original(self, transact_items)
        except BaseException:
            touched.restore()
            raise
        finally:
            _transaction.running = False

    transact_write_items.touched_items_only = True  # type: ignore[attr-defined]
    setattr(models, "copy", _TablesKeptInPlace())  # noqa: B010 - typed as the module
    setattr(backend, "transact_write_items", transact_write_items)  # noqa: B010


def moto_app() -> WsgiApp:
    """moto's server application (every service, routed by host and target)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    _untrack_dynamodb_models()
    _cheap_transactions()
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
