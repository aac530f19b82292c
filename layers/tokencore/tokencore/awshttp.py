"""AWS API calls with the standard library only: SigV4 over one kept-alive connection.

For the paths that must never import boto3 (the authorizer's key refresh; any per-container
poll of a small document, such as a revocation list). boto3 costs a cold start about 190 ms and
60 MiB; this module costs ``hmac``, ``hashlib``, ``json`` and ``http.client`` (a few ms) and one
round trip per call. It speaks the AWS JSON protocol (``X-Amz-Target``), which is what SSM,
DynamoDB, Secrets Manager and KMS answer, so reusing it is one line per call::

    ssm = AwsJsonClient("ssm", "AmazonSSM", json_version="1.1")
    ssm.call("GetParameter", {"Name": "/tokencore/public-jwks"})["Parameter"]["Value"]
    ddb = AwsJsonClient("dynamodb", "DynamoDB_20120810", json_version="1.0")
    ddb.call("GetItem", {"TableName": t, "Key": {...}, "ConsistentRead": True})

What it does not do, on purpose: credential providers (it signs with the environment's
credentials, which Lambda sets for the function's role and ``make dev`` sets for moto; without
them ``env_credentials`` is None and the caller picks boto3 instead), pagination, and retries
beyond one reconnect of a kept-alive connection the server closed (the callers rate-limit their
own retries). Endpoints follow boto3's variables, so the local stack needs nothing new:
``AWS_ENDPOINT_URL_<SERVICE>``, then ``AWS_ENDPOINT_URL``, then ``https://<service>.<region>.
amazonaws.com``. Errors are ``AwsCallFailed`` with the AWS error code only (messages may quote
names and values), as ``tokencore.awsclient.error_code`` does for boto3.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

ALGORITHM: Final = "AWS4-HMAC-SHA256"
DEFAULT_TIMEOUT_SECONDS: Final = 2.0
# A response bigger than this is not what any caller asked for (an SSM value is at most 8 KB).
MAX_RESPONSE_BYTES: Final = 1 << 20
_SAFE_CODE: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")


class AwsCallFailed(Exception):
    """A call failed: ``code`` is the AWS error code, ``http_status`` (0: no answer) or the
    transport failure's class name. Never a message from the service."""

    def __init__(self, code: str, http_status: int = 0) -> None:
        super().__init__(f"{code} (HTTP {http_status})" if http_status else code)
        self.code = code
        self.http_status = http_status


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


def env_credentials() -> Credentials | None:
    """The environment's credentials (Lambda sets them for the function's role), or None."""
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not key or not secret:
        return None
    return Credentials(key, secret, os.environ.get("AWS_SESSION_TOKEN") or None)


def env_region() -> str | None:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None


def endpoint_url(service: str, region: str) -> str:
    """Where boto3 would send ``service``'s calls: the same environment variables first."""
    specific = os.environ.get("AWS_ENDPOINT_URL_" + service.upper().replace("-", "_"))
    configured = specific or os.environ.get("AWS_ENDPOINT_URL")
    if configured:
        return configured.rstrip("/")
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://{service}.{region}.{suffix}"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    k_date = _hmac(("AWS4" + secret).encode("utf-8"), date)
    return _hmac(_hmac(_hmac(k_date, region), service), "aws4_request")


def sign(
    method: str,
    host: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    *,
    service: str,
    region: str,
    credentials: Credentials,
    now: float,
) -> dict[str, str]:
    """``headers`` plus ``Host``, ``X-Amz-Date``, the session token and ``Authorization``
    (Signature Version 4, every header signed; no query string)."""
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    date = amz_date[:8]
    signed: dict[str, str] = {"host": host, "x-amz-date": amz_date}
    if credentials.session_token:
        signed["x-amz-security-token"] = credentials.session_token
    for name, value in headers.items():
        signed[name.lower()] = " ".join(value.split())
    names = sorted(signed)
    canonical = "\n".join(
        [
            method,
            path,
            "",
            "".join(f"{name}:{signed[name]}\n" for name in names),
            ";".join(names),
            _sha256(body),
        ]
    )
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = f"{ALGORITHM}\n{amz_date}\n{scope}\n{_sha256(canonical.encode('utf-8'))}"
    key = signing_key(credentials.secret_access_key, date, region, service)
    signature = hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    out = dict(headers)
    out["Host"] = host
    out["X-Amz-Date"] = amz_date
    if credentials.session_token:
        out["X-Amz-Security-Token"] = credentials.session_token
    out["Authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key_id}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return out


def error_code_of(status: int, body: bytes, headers: http.client.HTTPMessage) -> str:
    """The AWS JSON protocol's error code (``__type``, or the ``x-amzn-ErrorType`` header),
    reduced to its last name; ``HTTP<status>`` when there is none that looks like a code."""
    raw = headers.get("x-amzn-ErrorType") or ""
    try:
        document = json.loads(body) if body else {}
        if isinstance(document, dict) and isinstance(document.get("__type"), str):
            raw = document["__type"]
    except ValueError:
        pass
    code = raw.split(":", 1)[0].rsplit("#", 1)[-1]
    return code if _SAFE_CODE.fullmatch(code) else f"HTTP{status}"


class AwsJsonClient:
    """Calls to one service over the AWS JSON protocol, one kept-alive connection, thread-safe
    (calls are serialized: the callers make one call per refresh, not many at once)."""

    def __init__(
        self,
        service: str,
        target_prefix: str,
        *,
        json_version: str = "1.1",
        region: str | None = None,
        endpoint: str | None = None,
        credentials: Credentials | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self._service = service
        self._target_prefix = target_prefix
        self._content_type = f"application/x-amz-json-{json_version}"
        self._region = region
        self._endpoint = endpoint
        self._credentials = credentials
        self._timeout = timeout_seconds
        self._lock = threading.Lock()
        self._connection: http.client.HTTPConnection | None = None

    @property
    def service(self) -> str:
        return self._service

    def call(self, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        """The operation's JSON answer; AwsCallFailed on any failure (never another error)."""
        region = self._region or env_region()
        credentials = self._credentials or env_credentials()
        if region is None or credentials is None:
            raise AwsCallFailed("NoCredentialsOrRegion")
        url = urlsplit(self._endpoint or endpoint_url(self._service, region))
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        headers = sign(
            "POST",
            url.netloc,
            "/",
            {
                "Content-Type": self._content_type,
                "X-Amz-Target": f"{self._target_prefix}.{operation}",
            },
            body,
            service=self._service,
            region=region,
            credentials=credentials,
            now=time.time(),
        )
        with self._lock:
            status, data, response_headers = self._send(url.scheme, url.netloc, body, headers)
        if status != 200:
            raise AwsCallFailed(error_code_of(status, data, response_headers), status)
        try:
            document = json.loads(data)
        except ValueError as exc:
            raise AwsCallFailed("MalformedResponse", status) from exc
        if not isinstance(document, dict):
            raise AwsCallFailed("MalformedResponse", status)
        return document

    def _send(
        self, scheme: str, netloc: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes, http.client.HTTPMessage]:
        # A kept-alive connection the server has closed fails on first use: reconnect once.
        for attempt in (1, 2):
            connection = self._connection
            fresh = connection is None
            if connection is None:
                connection = self._connect(scheme, netloc)
            try:
                connection.request("POST", "/", body=body, headers=headers)
                response = connection.getresponse()
                data = response.read(MAX_RESPONSE_BYTES + 1)
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                self._connection = None
                if fresh or attempt == 2 or isinstance(exc, TimeoutError):
                    raise AwsCallFailed(type(exc).__name__) from exc
                continue
            if len(data) > MAX_RESPONSE_BYTES:
                connection.close()
                self._connection = None
                raise AwsCallFailed("ResponseTooLarge", response.status)
            if response.will_close:
                connection.close()
                self._connection = None
            else:
                self._connection = connection
            return response.status, data, response.headers
        raise AwsCallFailed("Unreachable")  # pragma: no cover - the loop returns or raises

    def _connect(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        if scheme == "https":
            import ssl  # only for real endpoints: the local stack speaks plain HTTP

            return http.client.HTTPSConnection(
                netloc, timeout=self._timeout, context=ssl.create_default_context()
            )
        if scheme == "http":
            return http.client.HTTPConnection(netloc, timeout=self._timeout)
        raise AwsCallFailed("UnsupportedEndpointScheme")

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def __repr__(self) -> str:
        return f"AwsJsonClient({self._service!r})"
