"""One cold start, in a fresh interpreter (run by bench/coldstart.py, never imported).

``authorizer``: import the authorizer function and answer one event (Lambda's init plus the
first invoke). ``jwt``: ``import jwt`` and load one public key from the same JWK (the floor a
PyJWT-based verifier starts from). ``function``: import ``functions.<BENCH_FUNCTION>.app``
(Lambda's init of the issuer, refresher or revoker). ``boto3``: ``import boto3`` and a DynamoDB
client. ``seed``: create the login user and the key secrets of a local stack (not timed).
``login``: the first login of a cold issuer, split into import, AWS client set-up, key load,
Argon2, AWS calls and the rest. The clock starts at the first line, after the interpreter's
own start-up (the same for every mode), and stops when the answer (or the key) is ready.
Prints one JSON line: milliseconds, and which heavy modules got loaded.
"""

import time

_START = time.perf_counter()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402


def main() -> None:
    mode = sys.argv[1]
    if mode == "authorizer":
        from functions.authorizer import app

        event = json.loads(os.environ["BENCH_EVENT"])
        stdout, sys.stdout = sys.stdout, open(os.devnull, "w")  # noqa: SIM115 - the EMF line
        try:
            answer = app.lambda_handler(event, None)
        finally:
            sys.stdout.close()
            sys.stdout = stdout
        elapsed = time.perf_counter() - _START
        if answer.get("isAuthorized") is not True:
            raise SystemExit(f"not allowed: {answer}")
    elif mode == "jwt":
        import jwt

        key = jwt.PyJWK(json.loads(os.environ["BENCH_JWK"]), algorithm="RS256")
        elapsed = time.perf_counter() - _START
        if key.key is None:
            raise SystemExit("no key")
    elif mode == "function":
        import importlib

        importlib.import_module(f"functions.{os.environ['BENCH_FUNCTION']}.app")
        elapsed = time.perf_counter() - _START
    elif mode == "seed":
        _seed()
        elapsed = time.perf_counter() - _START
    elif mode == "login":
        print(json.dumps(_login()))
        return
    elif mode == "boto3":
        # What the authorizer's session path costs a cold container, and the fast path never
        # pays: boto3 and a DynamoDB client (no call is made).
        import boto3

        boto3.session.Session().client("dynamodb")
        elapsed = time.perf_counter() - _START
    else:
        raise SystemExit(f"unknown mode {mode}")
    loaded = sorted(
        name
        for name in ("boto3", "botocore", "botocore.session", "jwt", "aws_lambda_powertools")
        if name in sys.modules
    )
    print(json.dumps({"ms": elapsed * 1000, "loaded": loaded, "modules": len(sys.modules)}))


def _seed() -> None:
    """The stack a deployed issuer finds: the access and refresh key sets in their secrets
    (KeySetup's job in a deployment) and one user, hashed with the production Argon2
    parameters (the ``owasp_hasher`` a deployed container verifies with)."""
    import boto3

    from tokencore.config import Settings
    from tokencore.keys import KeySet, generate_key
    from tokencore.keys.secretsmanager import create_key_set_secret
    from tokencore.runtime import Parts, Runtime

    settings = Settings.from_env()
    secrets = boto3.session.Session().client("secretsmanager")
    access = KeySet([generate_key(settings.access_token_alg)], "access")
    create_key_set_secret(secrets, settings.signing_keys_secret_id, access)
    create_key_set_secret(
        secrets, settings.refresh_keys_secret_id, KeySet([generate_key("HS256")], "refresh")
    )
    runtime = Runtime(settings, parts=Parts())
    runtime.users.create_user(
        os.environ["BENCH_USERNAME"], os.environ["BENCH_PASSWORD"], roles=["user"]
    )


class _Split:
    """Exclusive time per part: a part nested in another (the GetSecretValue call inside the
    key load) counts for itself only, so the parts and the rest add up to the total."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}
        self.calls: list[str] = []
        self._stack: list[list[Any]] = []  # [part, start, time spent in nested parts]

    def enter(self, part: str) -> None:
        self._stack.append([part, time.perf_counter(), 0.0])

    def leave(self) -> None:
        part, start, nested = self._stack.pop()
        spent = time.perf_counter() - start
        self.ms[part] = self.ms.get(part, 0.0) + (spent - nested) * 1000
        if self._stack:
            self._stack[-1][2] += spent

    def timed(self, part: str, function: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.enter(part)
            try:
                return function(*args, **kwargs)
            finally:
                self.leave()

        return wrapper


def _login() -> dict[str, Any]:
    """Import the issuer, then answer the login event (a real API Gateway HTTP API event) as a
    cold container's first invocation; the parts are timed by wrapping the functions that do
    them, after the import, so the import itself runs unchanged."""
    from functions.issuer import app

    imported = time.perf_counter()
    from tokencore.awsclient import LazyClient
    from tokencore.keys.secretsmanager import SecretsManagerKeySource
    from tokencore.users.passwords import Passwords

    split = _Split()

    def before_call(**kwargs: Any) -> None:
        split.calls.append(kwargs["model"].name)
        split.enter("aws calls")

    def after_call(**_: Any) -> None:
        split.leave()

    create = split.timed("aws client set-up", LazyClient._create)

    def create_hooked(self: Any) -> Any:
        client = create(self)
        # Between these two events: sending (with botocore's retries) and parsing the answer.
        client.meta.events.register("before-call", before_call)
        client.meta.events.register("after-call", after_call)
        client.meta.events.register("after-call-error", after_call)
        return client

    LazyClient._create = create_hooked  # type: ignore[method-assign]
    SecretsManagerKeySource._read = split.timed("key load", SecretsManagerKeySource._read)  # type: ignore[method-assign]
    Passwords.verify = split.timed("argon2", Passwords.verify)  # type: ignore[method-assign]
    Passwords.verify_dummy = split.timed("argon2", Passwords.verify_dummy)  # type: ignore[method-assign]

    event = json.loads(os.environ["BENCH_EVENT"])
    stdout, sys.stdout = sys.stdout, open(os.devnull, "w")  # noqa: SIM115 - the EMF line
    invoked = time.perf_counter()
    try:
        answer = app.lambda_handler(event, _Context())
    finally:
        done = time.perf_counter()
        sys.stdout.close()
        sys.stdout = stdout
    if answer.get("statusCode") != 200:
        raise SystemExit(f"login failed: {answer.get('statusCode')}")
    return {
        "ms": (done - _START) * 1000,
        "import": (imported - _START) * 1000,
        "instrument": (invoked - imported) * 1000,
        "parts": split.ms,
        "calls": split.calls,
    }


class _Context:
    """What Powertools reads from Lambda's context object."""

    function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "issuer")
    function_version = "$LATEST"
    invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
    memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024"))
    aws_request_id = "5e0f8c1a-0000-4000-8000-000000000002"
    log_group_name = f"/aws/lambda/{function_name}"
    log_stream_name = "2027/01/15/[$LATEST]0123456789abcdef"


main()
