"""Every metric type the CRD offers is accepted by the engine, judged on data of its kind, and documented."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import yaml

from modelrollout.analysis.config import AnalysisConfig, MetricType
from modelrollout.analysis.types import Tick, Verdict, VersionCounts
from tests.unit.analysis.replay import run

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
SLOW = ((0.05, 100.0), (0.1, 200.0), (0.25, 400.0), (math.inf, 1000.0))  # 60% slower than 250 ms
FAST = ((0.05, 2900.0), (0.1, 2990.0), (0.25, 3000.0), (math.inf, 3000.0))

# Per type: a metric with one criterion, and a tick in which the canary is plainly worse than stable.
CASES: dict[str, tuple[dict[str, object], Tick]] = {
    "errorRate": (
        {"margin": 0.005},
        Tick(VersionCounts(requests=1000, errors=100), VersionCounts(requests=3000, errors=30), 0.25),
    ),
    "latency": (
        {"thresholdSeconds": 0.1, "margin": 0.01},
        Tick(
            VersionCounts(requests=1000, latency_buckets=SLOW),
            VersionCounts(requests=3000, latency_buckets=FAST),
            0.25,
        ),
    ),
    "accuracy": (
        {"margin": 0.01},
        Tick(
            VersionCounts(requests=1000, feedback_correct=700, feedback_incorrect=300),
            VersionCounts(requests=3000, feedback_correct=2850, feedback_incorrect=150),
            0.25,
        ),
    ),
    "predictionShift": (
        {"max": 0.02},
        Tick(
            VersionCounts(requests=1000, class_counts={"fraud": 300, "ok": 700}),
            VersionCounts(requests=3000, class_counts={"fraud": 300, "ok": 2700}),
            0.25,
        ),
    ),
    "meanAbsoluteError": (
        {"margin": 0.05},
        Tick(
            VersionCounts(requests=1000, abs_error_sum=1000.0, abs_error_count=1000.0),
            VersionCounts(requests=3000, abs_error_sum=1500.0, abs_error_count=3000.0),
            0.25,
        ),
    ),
}


def crd_metric_types() -> list[str]:
    crd = yaml.safe_load((ROOT / "crds" / "modelrollout.dev_modelrollouts.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    metric = spec["properties"]["analysis"]["properties"]["metrics"]["items"]
    return list(metric["properties"]["type"]["enum"])


def test_the_crd_offers_exactly_the_engines_metric_types() -> None:
    assert sorted(crd_metric_types()) == sorted(t.value for t in MetricType) == sorted(CASES)


@pytest.mark.parametrize("metric_type", sorted(CASES))
def test_each_metric_type_is_accepted_and_fails_a_plainly_worse_canary(metric_type: str) -> None:
    criteria, tick = CASES[metric_type]
    metric = {"name": "m", "type": metric_type, **criteria}
    config = AnalysisConfig.from_spec({"minSamples": 100, "metrics": [metric]})
    outcome, _ = run(config, [tick] * 4)
    result = outcome.results[0]
    assert outcome.overall is Verdict.FAIL, result.message
    assert result.message.endswith(": rollback") and result.canary_samples > 0


@pytest.mark.parametrize("metric_type", sorted(CASES))
def test_each_metric_type_is_documented_without_a_refusal(metric_type: str) -> None:
    reference = (ROOT / "docs" / "modelrollout.md").read_text()
    analysis = (ROOT / "docs" / "analysis.md").read_text()
    assert re.search(rf"^\| `{metric_type}`", analysis, flags=re.M), f"docs/analysis.md has no row for {metric_type}"
    type_row = next(line for line in reference.splitlines() if line.startswith("| `spec.analysis.metrics[].type`"))
    assert f"`{metric_type}`" in type_row and "refused" not in type_row
