"""Every metric the operator exports is documented in docs/metrics.md (so the docs cannot drift)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import Counter, Gauge, Histogram

from modelrollout import opmetrics
from modelrollout.core.phases import Phase
from modelrollout.core.status import RolloutStatus
from tests.conftest import ROOT

pytestmark = pytest.mark.unit


def test_operator_metrics_are_documented() -> None:
    docs = (ROOT / "docs" / "metrics.md").read_text()
    exported = [m for m in vars(opmetrics).values() if isinstance(m, Counter | Gauge | Histogram)]
    names = {family.name for metric in exported for family in metric.describe()}
    assert len(names) == 11
    for name in names:
        assert f"`{name}" in docs, name


def test_weights_are_exported_as_ratios() -> None:
    status = RolloutStatus(phase=Phase.PAUSED, desired_weight=25, effective_weight=23.5)
    decided: Any = SimpleNamespace(status=status)  # record_decision reads only the status
    opmetrics.record_decision({"metadata": {"namespace": "ns", "name": "r"}}, decided)
    assert opmetrics.DESIRED_WEIGHT.labels("ns", "r")._value.get() == 0.25
    assert opmetrics.EFFECTIVE_WEIGHT.labels("ns", "r")._value.get() == 0.235
    opmetrics.forget("ns", "r")
