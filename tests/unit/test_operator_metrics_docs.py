"""Every metric the operator exports is documented in docs/metrics.md (so the docs cannot drift)."""

from __future__ import annotations

import pytest
from prometheus_client import Counter, Gauge, Histogram

from modelrollout import opmetrics
from tests.conftest import ROOT

pytestmark = pytest.mark.unit


def test_operator_metrics_are_documented() -> None:
    docs = (ROOT / "docs" / "metrics.md").read_text()
    exported = [m for m in vars(opmetrics).values() if isinstance(m, Counter | Gauge | Histogram)]
    names = {family.name for metric in exported for family in metric.describe()}
    assert len(names) == 11
    for name in names:
        assert f"`{name}" in docs, name
