"""tokencore.emf prints exactly the documents Powertools Metrics prints (less the timestamp),
and honours Powertools' switches."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_lambda_powertools import Metrics, single_metric
from aws_lambda_powertools.metrics import MetricUnit

from tokencore.emf import CountMetrics, metrics_disabled


def _documents(text: str) -> list[dict[str, Any]]:
    documents = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    for document in documents:
        assert isinstance(document["_aws"].pop("Timestamp"), int)
    return documents


@pytest.fixture(autouse=True)
def _metrics_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)


def test_the_documents_are_powertools_documents(capsys: pytest.CaptureFixture[str]) -> None:
    ours = CountMetrics(namespace="tokencore", service="svc")
    ours.add("AuthorizerAllow")
    ours.add("AuthorizerDeny", "reason", "expired_token")
    ours.add("SessionCheck", "reason", "sampled")
    ours.flush_metrics()
    mine = _documents(capsys.readouterr().out)

    theirs = Metrics(service="svc", namespace="tokencore")
    theirs.add_metric(name="AuthorizerAllow", unit=MetricUnit.Count, value=1)
    theirs.flush_metrics()
    theirs.add_dimension(name="reason", value="expired_token")
    theirs.add_metric(name="AuthorizerDeny", unit=MetricUnit.Count, value=1)
    theirs.flush_metrics()
    with single_metric(
        name="SessionCheck",
        unit=MetricUnit.Count,
        value=1,
        namespace="tokencore",
        default_dimensions={"service": "svc"},
    ) as metric:
        metric.add_dimension(name="reason", value="sampled")
    reference = _documents(capsys.readouterr().out)

    for document in (*mine, *reference):  # CloudWatch reads a dimension set as a set
        for directive in document["_aws"]["CloudWatchMetrics"]:
            directive["Dimensions"] = [sorted(names) for names in directive["Dimensions"]]
    assert mine == reference


def test_a_flush_prints_one_line_per_count_and_clears(capsys: pytest.CaptureFixture[str]) -> None:
    metrics = CountMetrics(namespace="n", service="s")
    metrics.add("A")
    metrics.add("A")
    metrics.flush_metrics()
    assert len(_documents(capsys.readouterr().out)) == 2
    metrics.flush_metrics()
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    ("disabled", "dev", "expected"),
    [
        (None, None, False),
        ("true", None, True),
        ("false", "true", False),
        (None, "true", True),
        ("1", None, True),
    ],
)
def test_powertools_switches(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    disabled: str | None,
    dev: str | None,
    expected: bool,
) -> None:
    for name, value in (("POWERTOOLS_METRICS_DISABLED", disabled), ("POWERTOOLS_DEV", dev)):
        if value is not None:
            monkeypatch.setenv(name, value)
    assert metrics_disabled() is expected
    metrics = CountMetrics(namespace="n", service="s")
    metrics.add("A")
    metrics.flush_metrics()
    assert (capsys.readouterr().out == "") is expected
    assert metrics.pending == []


def test_a_dimension_needs_a_value() -> None:
    with pytest.raises(ValueError, match="value"):
        CountMetrics(namespace="n", service="s").add("A", "reason", None)
