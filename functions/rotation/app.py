"""KeyRotation: Secrets Manager's rotation function for the two key-set secrets.

Secrets Manager calls it four times per rotation (createSecret, setSecret, testSecret,
finishSecret), with the secret's ARN and the ClientRequestToken of the version being made, on
the schedule template.yaml sets (every KeyRotationDays, 90 by default) or when someone runs
``aws secretsmanager rotate-secret --secret-id <secret>``. The steps live in
``tokencore.ops.rotation`` (tokenctl rotate-keys runs the very same code); this handler only
reads the event, asks the container's ``Runtime`` for the rotation and reports what happened.

A step that fails raises: Secrets Manager records the rotation as failed, AWSCURRENT stays where
it was (signers and verifiers are untouched until finishSecret), and the next attempt carries on
from where this one stopped (every step is idempotent). Logs carry the step, the key set, the
version id and kids; never key material (botocore's own debug logs, which would print the
secret's value, are kept at WARNING even when the function's log level is raised).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

if TYPE_CHECKING:
    from tokencore.ops.rotation import SecretsManagerRotation

logger = Logger()
for _noisy in ("boto3", "botocore", "urllib3"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)


class RotationEventError(ValueError):
    """The event is not a Secrets Manager rotation request."""


def rotation() -> SecretsManagerRotation:
    """The container's rotation, from its Runtime (clients built once, on first use)."""
    from tokencore.runtime import get_runtime

    return get_runtime().key_rotation


def _field(event: Any, name: str) -> str:
    value = event.get(name) if isinstance(event, dict) else None
    if not isinstance(value, str) or not value:
        raise RotationEventError(f"the rotation event has no {name}")
    return value


@logger.inject_lambda_context(log_event=False, clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> None:
    step = _field(event, "Step")
    secret_id = _field(event, "SecretId")
    token = _field(event, "ClientRequestToken")
    logger.append_keys(rotation_step=step, version_id=token)
    try:
        result = rotation().run_step(step, secret_id, token)
    except Exception as exc:
        code = getattr(exc, "code", type(exc).__name__)
        logger.exception("rotation step failed", extra={"code": code})
        raise
    logger.info(
        "rotation step done",
        extra={
            "key_set": result.purpose,
            "already_done": result.already_done,
            **{
                name: value
                for name, value in result.details.items()
                if name
                in (
                    "promoted",
                    "retired",
                    "added_next",
                    "pruned",
                    "deferred_until",
                    "deferred_reason",
                    "published",
                    "probed",
                )
            },
        },
    )
