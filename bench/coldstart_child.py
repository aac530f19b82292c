"""One cold start, in a fresh interpreter (run by bench/coldstart.py, never imported).

``authorizer``: import the authorizer function and answer one event (Lambda's init plus the
first invoke). ``jwt``: ``import jwt`` and load one public key from the same JWK (the floor a
PyJWT-based verifier starts from). The clock starts at the first line, after the interpreter's
own start-up (the same for both), and stops when the answer (or the key) is ready. Prints one
JSON line: milliseconds, and which heavy modules got loaded.
"""

import time

_START = time.perf_counter()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402


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


main()
