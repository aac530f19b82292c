"""KeySetup: the CloudFormation custom resource that makes a new stack's keys usable.

template.yaml creates the key secrets holding a placeholder and the public-JWKS parameter
holding an empty JWKS. On Create and Update this function fills a placeholder with a fresh key
set (an active key and a published ``next`` key), keeps a valid key set as it is, refuses a
secret that holds anything else (an operator's half-finished edit fails the deployment loudly),
and publishes the public JWKS keeping the stamps already there (``ops.publishing``). Delete does
nothing. docs/deploy.md ("KeySetup") says what it does in each mode.

CloudFormation always gets an answer on the presigned ResponseURL, or the stack would wait for
an hour: the body runs under one try whose ``finally`` responds, and tokencore is imported
inside it, so even a broken layer is reported. No key material, and not the ResponseURL, ever
reaches the logs or the response. Plain Python and urllib: nothing beyond the tokencore layer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tokencore.keys import KeySet, VerificationKey

logger = logging.getLogger("tokencore.keysetup")
logger.setLevel(logging.INFO)
# botocore logs request and response bodies at DEBUG, and here they hold private keys: keep it
# quiet even when the function's log level is turned up from outside (AWS_LAMBDA_LOG_LEVEL).
for _noisy in ("boto3", "botocore", "urllib3"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)

SUCCESS = "SUCCESS"
FAILED = "FAILED"
RESPONSE_ATTEMPTS = 3
RESPONSE_TIMEOUT_SECONDS = 10
# CloudFormation accepts a response body of 4096 bytes; the reason is the part that can grow.
MAX_REASON_CHARS = 1000
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class KeySetupError(Exception):
    """A problem with the request or the stack's resources; the message is safe to show."""


@dataclass(frozen=True)
class Request:
    """The resource properties this function reads (see KeySetup in template.yaml)."""

    key_backend: str
    access_token_alg: str
    signing_keys_secret_id: str
    refresh_keys_secret_id: str
    public_jwks_parameter: str
    kms_signing_key_id: str
    kms_verify_key_ids: tuple[str, ...]

    @classmethod
    def from_properties(cls, properties: Mapping[str, Any]) -> Request:
        def text(name: str, *, required: bool = True) -> str:
            value = properties.get(name, "")
            if not isinstance(value, str):
                raise KeySetupError(f"property {name} must be a string")
            value = value.strip()
            if required and not value:
                raise KeySetupError(f"property {name} is required")
            return value

        from tokencore.jose.algorithms import ALGORITHMS

        backend = text("KeyBackend")
        if backend not in ("secretsmanager", "kms"):
            raise KeySetupError("property KeyBackend must be secretsmanager or kms")
        alg = text("AccessTokenAlg")
        access = ALGORITHMS.for_purpose("access")
        if alg not in access:
            raise KeySetupError(f"property AccessTokenAlg must be one of {', '.join(access)}")
        if backend == "kms" and not ALGORITHMS[alg].kms_signing_algorithm:
            raise KeySetupError(f"{alg} is not available with KeyBackend kms")
        verify_ids = tuple(
            item.strip()
            for item in text("KmsVerifyKeyIds", required=False).split(",")
            if item.strip()
        )
        return cls(
            key_backend=backend,
            access_token_alg=alg,
            signing_keys_secret_id=text("SigningKeysSecretId", required=backend != "kms"),
            refresh_keys_secret_id=text("RefreshKeysSecretId"),
            public_jwks_parameter=text("PublicJwksParameter"),
            kms_signing_key_id=text("KmsSigningKeyId", required=backend == "kms"),
            kms_verify_key_ids=verify_ids,
        )


@dataclass(frozen=True)
class Clients:
    """The AWS clients setup uses (tests inject moto-backed ones)."""

    secretsmanager: Any
    ssm: Any
    kms: Any

    @classmethod
    def create(cls) -> Clients:
        import boto3

        from tokencore.awsclient import default_boto_config

        session = boto3.session.Session()
        config = default_boto_config()
        return cls(
            secretsmanager=session.client("secretsmanager", config=config),
            ssm=session.client("ssm", config=config),
            kms=session.client("kms", config=config),
        )


# --- the work -------------------------------------------------------------------------------


def setup(request: Request, clients: Clients) -> dict[str, str]:
    """Fill what is empty, publish the public JWKS; the response Data (nothing secret)."""
    from tokencore.jose.algorithms import REFRESH_ALGORITHM

    _, refresh_created = ensure_key_set(
        clients.secretsmanager, request.refresh_keys_secret_id, "refresh", REFRESH_ALGORITHM
    )
    data = {"RefreshKeysCreated": _flag(refresh_created)}
    if request.key_backend == "secretsmanager":
        access, access_created = ensure_key_set(
            clients.secretsmanager,
            request.signing_keys_secret_id,
            "access",
            request.access_token_alg,
        )
        if access.active.alg != request.access_token_alg:
            # Kept on purpose: changing the algorithm of a live key set is a rotation (a "next"
            # key of the new algorithm, published, then promoted), not a deployment parameter.
            logger.warning(
                "the active access key is %s, AccessTokenAlg is %s: kept (rotate to change it)",
                access.active.alg,
                request.access_token_alg,
            )
        publish_key_set(clients, request)
        keys = access.verification_keys()
        data["AccessKeysCreated"] = _flag(access_created)
        data["ActiveAccessKeyAlg"] = access.active.alg
    else:
        keys = kms_publish(clients, request)
        data["AccessKeysCreated"] = "false"
        data["ActiveAccessKeyAlg"] = keys[0].alg
    data["AccessKeyIds"] = ",".join(key.kid for key in keys)
    return data


def ensure_key_set(client: Any, secret_id: str, purpose: str, alg: str) -> tuple[KeySet, bool]:
    """The key set in ``secret_id``: the one it holds, or a fresh one written over the
    placeholder (then True). Anything else in the secret is refused, never replaced."""
    from tokencore.awsclient import aws_errors, error_code
    from tokencore.errors import TokenCoreError
    from tokencore.keys import KeySet, KeyStatus, generate_key, put_key_set_secret
    from tokencore.keys.keyset import check_purpose

    key_purpose = check_purpose(purpose)
    try:
        response = client.get_secret_value(SecretId=secret_id, VersionStage="AWSCURRENT")
    except aws_errors() as exc:
        raise KeySetupError(f"could not read the {purpose} key secret ({error_code(exc)})") from exc
    text = response.get("SecretString")
    if not isinstance(text, str):
        raise KeySetupError(f"the {purpose} key secret has no SecretString; refusing to touch it")
    if is_placeholder(text):
        now = int(time.time())
        key_set = KeySet(
            [
                dataclasses.replace(generate_key(alg), created_at=now),
                dataclasses.replace(generate_key(alg, KeyStatus.NEXT), created_at=now),
            ],
            key_purpose,
        )
        put_key_set_secret(client, secret_id, key_set)
        logger.info("filled the %s key secret with a fresh %s key and a next key", purpose, alg)
        return key_set, True
    try:
        return KeySet.from_secret_document(text, key_purpose), False
    except TokenCoreError as exc:  # InvalidKeyMaterial, whose message names no key material
        raise KeySetupError(
            f"the {purpose} key secret holds neither the placeholder nor a valid {purpose} key "
            f"set ({exc.message}); fix it or put the placeholder back, then retry"
        ) from exc


def is_placeholder(text: str) -> bool:
    """True for what template.yaml writes (a JSON object whose ``keys`` is empty or absent)
    and for an empty string; False for everything else, including a key set."""
    from tokencore.jose.codec import json_object

    if not text.strip():
        return True
    try:
        document = json_object(text, ValueError)
    except ValueError:
        return False
    return document.get("keys") in (None, [])


def kms_publish(clients: Clients, request: Request) -> list[VerificationKey]:
    """Publish the KMS public keys (``ops.kmsrotation``): the signing key (checked against
    AccessTokenAlg), the next key, the retired keys still needed and KmsVerifyKeyIds."""
    from tokencore.config import get_settings
    from tokencore.errors import InvalidKeyMaterial
    from tokencore.keys.lifecycle import LifecyclePolicy
    from tokencore.ops.kmsrotation import KmsRotation

    publisher = KmsRotation(
        kms=clients.kms,
        ssm=clients.ssm,
        signing_key_id=request.kms_signing_key_id,
        parameter_name=request.public_jwks_parameter,
        alg=request.access_token_alg,
        policy=LifecyclePolicy.for_purpose(get_settings(), "access"),
        verify_key_ids=request.kms_verify_key_ids,
    )
    try:
        return [entry.key for entry in publisher.publish()]
    except InvalidKeyMaterial as exc:
        raise KeySetupError(exc.message) from exc


def publish_key_set(clients: Clients, request: Request) -> None:
    """Publish the access secret's public JWKS, derived from the secret as it is when written
    (a rotation may be running: its pending keys are published too), so a deployment racing
    ``tokenctl rotate-keys`` or ``revoke-key`` never leaves an older set published
    (``publishing.publish_settled``)."""
    from tokencore.ops.rotation import publish_access_jwks

    publish_access_jwks(
        clients.secretsmanager,
        clients.ssm,
        request.signing_keys_secret_id,
        request.public_jwks_parameter,
    )


def _flag(value: bool) -> str:
    return "true" if value else "false"


# --- the custom-resource protocol -----------------------------------------------------------


def lambda_handler(event: dict[str, Any], context: Any, clients: Clients | None = None) -> None:
    """Handle one custom-resource request and always answer it."""
    status, reason, data = FAILED, "", {}
    physical_id = physical_resource_id(event)
    request_type = event.get("RequestType") if isinstance(event, dict) else None
    try:
        if request_type in ("Create", "Update"):
            request = Request.from_properties(event.get("ResourceProperties") or {})
            data = setup(request, clients or Clients.create())
        elif request_type != "Delete":
            raise KeySetupError("unknown RequestType")
        status = SUCCESS
    except Exception as exc:  # every failure must reach CloudFormation
        reason = failure_reason(exc, context)
        # The traceback holds exception messages and code lines, never locals: no key material.
        logger.exception("%s failed", request_type)
    finally:
        logger.info("answering %s with %s", request_type, status)
        send_response(event, status, reason, physical_id, data)


def physical_resource_id(event: Any) -> str:
    """The id CloudFormation already knows (Update, Delete), or a stable one for Create: the
    same id on every update means CloudFormation never asks to delete an "old" resource."""
    if isinstance(event, dict):
        existing = event.get("PhysicalResourceId")
        if isinstance(existing, str) and existing:
            return existing
        stack = str(event.get("StackId", ""))
        logical = str(event.get("LogicalResourceId", "KeySetup"))
        return f"{logical}-{hashlib.sha256(stack.encode()).hexdigest()[:16]}"
    return "KeySetup"


def failure_reason(exc: BaseException, context: Any) -> str:
    """What CloudFormation shows: our own messages (written to be safe), else the class name."""
    from_tokencore = type(exc).__module__.startswith("tokencore.")
    if isinstance(exc, KeySetupError) or from_tokencore:
        message = f"{type(exc).__name__}: {exc}"
    else:
        message = f"{type(exc).__name__} (details in the function's log)"
    stream = getattr(context, "log_stream_name", None)
    if isinstance(stream, str) and stream:
        message += f". Log stream: {stream}"
    return message[:MAX_REASON_CHARS]


def send_response(
    event: Any,
    status: str,
    reason: str,
    physical_id: str,
    data: Mapping[str, str],
    *,
    pause: Callable[[float], None] = time.sleep,
) -> bool:
    """PUT the response to the presigned ResponseURL, retrying a transient failure after
    ``pause``-ing 1 s, then 2 s. Returns whether CloudFormation got it; never raises (there is
    nobody left to tell). The only wait in the functions, and worth its 3 s: an undelivered
    answer leaves the stack waiting for the custom resource for an hour."""
    if not isinstance(event, dict):
        logger.error("no event to answer")
        return False
    url = event.get("ResponseURL")
    if not isinstance(url, str) or not _allowed_url(url):
        logger.error("the event has no usable ResponseURL")
        return False
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason or status,
            "PhysicalResourceId": physical_id,
            "StackId": event.get("StackId", ""),
            "RequestId": event.get("RequestId", ""),
            "LogicalResourceId": event.get("LogicalResourceId", ""),
            "NoEcho": False,
            "Data": dict(data),
        }
    ).encode()
    for attempt in range(1, RESPONSE_ATTEMPTS + 1):
        # The presigned S3 URL was signed without a content type: send an empty one.
        put = urllib.request.Request(  # noqa: S310 - the scheme is checked by _allowed_url
            url, data=body, method="PUT", headers={"Content-Type": ""}
        )
        try:
            with urllib.request.urlopen(put, timeout=RESPONSE_TIMEOUT_SECONDS) as answer:  # noqa: S310
                if 200 <= answer.status < 300:
                    return True
                problem = f"HTTP {answer.status}"
        except urllib.error.HTTPError as exc:
            problem = f"HTTP {exc.code}"
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            problem = type(exc).__name__
        logger.warning("could not deliver the response (attempt %d: %s)", attempt, problem)
        if attempt < RESPONSE_ATTEMPTS:
            pause(attempt)
    return False


def _allowed_url(url: str) -> bool:
    """https, as CloudFormation's presigned URLs are; plain http only to a loopback address
    (tests answer on 127.0.0.1)."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme == "https":
        return bool(parsed.hostname)
    return parsed.scheme == "http" and parsed.hostname in LOOPBACK_HOSTS
