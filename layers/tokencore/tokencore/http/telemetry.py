"""Metrics and log routing for the functions (Powertools Metrics and Logger).

Security events themselves are ``tokencore.audit.security_event`` lines (identifiers hashed);
this module only counts them and makes sure the core's loggers reach the function's log in the
same JSON shape, with the request's correlation id.
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit, single_metric


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
