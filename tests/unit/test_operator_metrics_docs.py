"""Every metric the operator exports is documented in docs/metrics.md (so the docs cannot drift)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
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
    assert len(names) == 14
    for name in names:
        assert f"`{name}" in docs, name


def test_weights_are_exported_as_ratios() -> None:
    status = RolloutStatus(phase=Phase.PAUSED, desired_weight=25, effective_weight=23.5)
    decided: Any = SimpleNamespace(status=status)  # record_decision reads only the status
    opmetrics.record_decision({"metadata": {"namespace": "ns", "name": "r"}}, decided)
    assert opmetrics.DESIRED_WEIGHT.labels("ns", "r")._value.get() == 0.25
    assert opmetrics.EFFECTIVE_WEIGHT.labels("ns", "r")._value.get() == 0.235
    opmetrics.forget("ns", "r")


def _lateness() -> tuple[float, float]:
    samples = {s.name: s.value for s in opmetrics.TICK_LATENESS_SECONDS.collect()[0].samples}
    return samples["modelrollout_tick_lateness_seconds_count"], samples["modelrollout_tick_lateness_seconds_sum"]


def test_tick_lateness_counts_scheduled_ticks_from_their_due_time_to_the_status_write() -> None:
    due = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)
    count, total = _lateness()
    # Woken by its wake-up time, started 0.8 s late, status written 0.4 s later: 1.2 s late.
    opmetrics.observe_tick_lateness(due, due + timedelta(seconds=0.8), due + timedelta(seconds=1.2))
    assert _lateness() == pytest.approx((count + 1, total + 1.2))
    # Started before its wake-up time (a spec change woke it) or with none (first tick after a restart).
    opmetrics.observe_tick_lateness(due, due - timedelta(seconds=5), due - timedelta(seconds=4))
    opmetrics.observe_tick_lateness(None, due, due + timedelta(seconds=1))
    assert _lateness() == pytest.approx((count + 1, total + 1.2))


def test_drift_psi_follows_the_watched_versions_and_goes_with_the_rollout() -> None:
    def series() -> dict[tuple[str, str], float]:
        return {(s.labels["version"], s.labels["feature"]): s.value for s in opmetrics.DRIFT_PSI.collect()[0].samples
                if s.labels["rollout"] == "d"}

    judged = {"version": "1", "features": [{"name": "f0", "samples": 500, "psi": 0.41},
                                           {"name": "f1", "samples": 0, "psi": 0.0}]}
    opmetrics.record_drift("ns", "d", [judged, {"version": "2", "features": [{"name": "f0", "samples": 300,
                                                                                "psi": 0.01}]}])
    assert series() == {("1", "f0"): 0.41, ("2", "f0"): 0.01}  # an unjudged feature (0 inputs) has no series
    opmetrics.record_drift("ns", "d", [judged])  # version 2 no longer watched
    assert series() == {("1", "f0"): 0.41}
    opmetrics.forget("ns", "d")
    assert series() == {}
