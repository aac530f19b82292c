"""Metrics and log routing for the functions (Powertools Metrics and Logger).

Security events themselves are ``tokencore.audit.security_event`` lines (identifiers hashed);
this module only counts them and makes sure the core's loggers reach the function's log in the
same JSON shape, with the request's correlation id.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit, single_metric


def tracer_requested() -> bool:
    """The Powertools Tracer runs only when asked for: ``POWERTOOLS_TRACE_DISABLED=false``."""
    return os.environ.get("POWERTOOLS_TRACE_DISABLED", "").strip().lower() in ("false", "0")


def traced[Handler: Callable[..., Any]](handler: Handler) -> Handler:
    """``handler`` inside the Powertools Tracer when ``tracer_requested()``, else as it is.

    The Tracer imports the X-Ray SDK (and botocore's client stack with it) when it is built,
    about 200 ms of every cold start even with tracing disabled; Lambda's active tracing (the
    template's ``Tracing: Active``) records every invocation without it. Turn the Tracer on for
    its subsegments around each AWS call (it patches boto3) and its cold-start annotation."""
    if not tracer_requested():
        return handler
    from aws_lambda_powertools import Tracer

    wrapped: Handler = Tracer().capture_lambda_handler(capture_response=False)(handler)
    return wrapped


def count(metrics: Metrics, name: str, value: int = 1, **dimensions: str) -> None:
    """Count ``name``. Without dimensions it joins the invocation's metric set (flushed by
    ``@metrics.log_metrics``); with dimensions it is its own EMF document, because a
    Powertools metric set shares one dimension set and ``RefreshReuse{classification}`` must
    not tag the invocation's other metrics."""
    if not dimensions:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
        return
    with single_metric(
        name=name, unit=MetricUnit.Count, value=value, namespace=metrics.namespace
    ) as metric:
        for dimension, label in dimensions.items():
            metric.add_dimension(name=dimension, value=label)


def route_library_logs(logger: Logger) -> None:
    """In Lambda, send the ``tokencore`` loggers (security events, store warnings) through the
    function's Powertools handler: JSON, correlation id, the function's level. Outside Lambda
    (tests, the local stack) logging is left alone, so pytest's caplog still sees them."""
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        copy_config_to_registered_loggers(source_logger=logger, include={"tokencore"})
