from __future__ import annotations

import math
import re

import numpy as np
import pytest

from modelrollout.analysis.config import AnalysisConfig, TimeoutAction
from modelrollout.analysis.latency import histogram_quantile, slower_than, summarize_latency
from modelrollout.durations import parse_duration

pytestmark = pytest.mark.unit
BUCKETS = ((0.01, 10.0), (0.05, 60.0), (0.1, 90.0), (0.5, 99.0), (math.inf, 100.0))


@pytest.mark.parametrize("q", [0.05, 0.3, 0.5, 0.75, 0.9, 0.95, 0.99])
def test_histogram_quantile_matches_linear_interpolation_oracle(q: float) -> None:
    bounds = [0.0, 0.01, 0.05, 0.1, 0.5]
    cumulative = [0.0, 10.0, 60.0, 90.0, 99.0]
    assert histogram_quantile(BUCKETS, q) == pytest.approx(float(np.interp(q * 100, cumulative, bounds)))


def test_quantile_in_the_inf_bucket_is_the_highest_finite_bound_and_empty_is_none() -> None:
    assert histogram_quantile(BUCKETS, 0.995) == 0.5
    assert summarize_latency(((0.1, 0.0), (math.inf, 0.0))) == {"p50": None, "p90": None, "p99": None}


def test_slower_than_counts_above_a_bound() -> None:
    assert slower_than(BUCKETS, 0.1) == 10.0
    assert slower_than(BUCKETS, 0.5) == 1.0


def test_defaults_are_filled_in() -> None:
    config = AnalysisConfig.from_spec({"metrics": [{"name": "e", "type": "errorRate", "margin": 0.005}]})
    assert (config.interval_seconds, config.min_samples, config.alpha, config.failure_limit) == (15.0, 200, 0.05, 1)
    assert config.timeout.action is TimeoutAction.PAUSE


def test_alpha_is_split_by_weight() -> None:
    config = AnalysisConfig.from_spec(
        {
            "alpha": 0.06,
            "metrics": [
                {"name": "a", "type": "errorRate", "max": 0.01, "weight": 2},
                {"name": "b", "type": "accuracy", "margin": 0.01},
            ],
        }
    )
    assert config.alpha_for("a") == pytest.approx(0.04)
    assert config.alpha_for("b") == pytest.approx(0.02)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"metrics": []}, "spec.analysis.metrics"),
        ({"metrics": [{"name": "e", "type": "errorRate"}]}, "spec.analysis.metrics[0]"),
        ({"metrics": [{"name": "e", "type": "errorRate", "min": 0.5}]}, "spec.analysis.metrics[0].min"),
        ({"metrics": [{"name": "l", "type": "latency", "max": 0.1}]}, "spec.analysis.metrics[0]"),
        ({"metrics": [{"name": "l", "type": "latency", "quantile": 0.7, "max": 0.1}]},
         "spec.analysis.metrics[0].quantile"),
        ({"alpha": 0.7, "metrics": [{"name": "e", "type": "errorRate", "max": 0.1}]}, "spec.analysis.alpha"),
        ({"interval": "15 minutes", "metrics": [{"name": "e", "type": "errorRate", "max": 0.1}]},
         "spec.analysis.interval"),
        (
            {"timeout": {"action": "Explode"}, "metrics": [{"name": "e", "type": "errorRate", "max": 0.1}]},
            "spec.analysis.timeout.action",
        ),
        (
            {
                "metrics": [
                    {"name": "e", "type": "errorRate", "max": 0.1},
                    {"name": "e", "type": "errorRate", "max": 0.2},
                ]
            },
            "spec.analysis.metrics",
        ),
    ],
)
def test_bad_input_names_the_field(spec: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(field)):
        AnalysisConfig.from_spec(spec)


def test_go_durations() -> None:
    assert parse_duration("1h30m", "x") == 5400.0
    assert parse_duration("2m15s", "x") == 135.0
    assert parse_duration("250ms", "x") == 0.25
    for bad in ("-5s", "20", 20, 1.5):  # a bare number: seconds or minutes? the CRD refuses it too
        with pytest.raises(ValueError, match=r"^x: "):
            parse_duration(bad, "x")
