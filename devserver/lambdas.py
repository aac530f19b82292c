"""The functions of the template, run in this process the way Lambda runs them.

Each function is one warm container: its module is imported once (``functions.<name>.app``,
as the template's CodeUri and Handler say) and it serves ONE invocation at a time, as a Lambda
execution environment does. Module-level state (a Powertools resolver holding the current
event, a logger with appended keys) is therefore never shared by two concurrent requests; two
different functions do run concurrently. The context object carries what Powertools reads.
"""

from __future__ import annotations

import importlib
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from devserver.settings import DevError
from devserver.stack import FunctionSpec

Handler = Callable[[Any, Any], Any]


@dataclass(slots=True)
class LambdaContext:
    """The attributes of Lambda's context object (``aws_lambda_powertools`` reads them)."""

    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    aws_request_id: str
    log_group_name: str
    log_stream_name: str
    deadline_ms: int

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.deadline_ms - int(time.time() * 1000))


class LocalFunction:
    def __init__(self, spec: FunctionSpec) -> None:
        self.spec = spec
        self._lock = threading.Lock()
        self._handler: Handler | None = None

    def load(self) -> Handler:
        """Import the handler (a cold start); raises DevError naming the function."""
        if self._handler is None:
            try:
                module = importlib.import_module(self.spec.module)
            except Exception as exc:
                raise DevError(
                    f"{self.spec.logical_id}: cannot import {self.spec.module} "
                    f"({type(exc).__name__}: {exc})"
                ) from exc
            handler = getattr(module, self.spec.handler, None)
            if not callable(handler):
                raise DevError(
                    f"{self.spec.logical_id}: {self.spec.module} has no {self.spec.handler}()"
                )
            self._handler = handler
        return self._handler

    def invoke(self, event: Any) -> Any:
        """One invocation, serialized with every other invocation of this function."""
        with self._lock:
            handler = self.load()
            now_ms = int(time.time() * 1000)
            context = LambdaContext(
                function_name=self.spec.name,
                function_version="$LATEST",
                invoked_function_arn=self.spec.arn,
                memory_limit_in_mb=self.spec.memory_mb,
                aws_request_id=str(uuid.uuid4()),
                log_group_name=f"/aws/lambda/{self.spec.name}",
                log_stream_name=f"local/[$LATEST]{uuid.uuid4().hex}",
                deadline_ms=now_ms + self.spec.timeout_seconds * 1000,
            )
            return handler(event, context)
