"""meanAbsoluteError: parsing, verdicts a user sees, the estimate against a numpy oracle, false Fails by simulation."""

from __future__ import annotations

import re

import numpy as np
import pytest

from modelrollout.analysis.config import AnalysisConfig, MetricType
from modelrollout.analysis.mean_error import row_variance, update_mae_comparison
from modelrollout.analysis.state import CriterionState
from modelrollout.analysis.types import Tick, Verdict, VersionCounts
from tests.unit.analysis.replay import run

pytestmark = pytest.mark.unit


def make_config(**criteria: float) -> AnalysisConfig:
    metric = {"name": "mae", "type": "meanAbsoluteError", **criteria}
    return AnalysisConfig.from_spec({"minSamples": 100, "minExposure": "30s", "metrics": [metric]})


def regression_tick(rng: np.random.Generator, canary_mae: float, stable_mae: float, labelled: int = 300) -> Tick:
    # A sum of k exponential absolute errors with mean m is Gamma(k, m): the sums the server exports.
    k_c = int(rng.binomial(labelled, 0.25))
    canary = VersionCounts(requests=k_c * 2, abs_error_sum=float(rng.gamma(k_c, canary_mae)), abs_error_count=k_c)
    k_s = labelled - k_c
    stable = VersionCounts(requests=k_s * 2, abs_error_sum=float(rng.gamma(k_s, stable_mae)), abs_error_count=k_s)
    return Tick(canary=canary, stable=stable, expected_canary_share=0.25)


def test_mean_absolute_error_is_parsed_with_its_criteria() -> None:
    config = make_config(margin=0.05, maxRatioToStable=1.1, max=2.0)
    assert config.metrics[0].type is MetricType.MEAN_ABSOLUTE_ERROR
    assert dict(config.metrics[0].criteria) == {"max": 2.0, "margin": 0.05, "maxRatioToStable": 1.1}
    with pytest.raises(ValueError, match="^" + re.escape("spec.analysis.metrics[0].min")):
        make_config(min=0.5)


def test_canary_with_a_quarter_more_error_is_rolled_back_and_equal_one_is_promoted() -> None:
    rng = np.random.default_rng(11)
    outcome, _ = run(make_config(margin=0.05), [regression_tick(rng, 0.625, 0.5) for _ in range(20)])
    result = outcome.results[0]
    assert outcome.overall is Verdict.FAIL
    assert result.message.startswith("canary mean absolute error") and result.message.endswith(": rollback")
    assert result.interval is not None and result.estimate is not None and result.estimate > 0.05
    equal, _ = run(make_config(margin=0.05), [regression_tick(rng, 0.5, 0.5, labelled=4000) for _ in range(10)])
    assert equal.overall is Verdict.PASS, equal.results[0].message
    assert equal.results[0].interval is not None and equal.results[0].interval[1] < 0.05


def test_ratio_to_stable_and_absolute_bound() -> None:
    rng = np.random.default_rng(12)
    worse = [regression_tick(rng, 0.8, 0.5) for _ in range(20)]
    assert run(make_config(maxRatioToStable=1.2), worse)[0].overall is Verdict.FAIL
    assert run(make_config(max=0.6), worse)[0].overall is Verdict.FAIL
    good = [regression_tick(rng, 0.5, 0.5, labelled=4000) for _ in range(10)]
    outcome, _ = run(make_config(max=0.6), good)
    assert outcome.overall is Verdict.PASS and outcome.results[0].canary_value == pytest.approx(0.5, rel=0.05)


def test_estimate_and_variance_match_a_numpy_oracle() -> None:
    rng = np.random.default_rng(13)
    k_c, k_s = rng.integers(20, 200, 12).astype(float), rng.integers(50, 600, 12).astype(float)
    s_c, s_s = rng.gamma(k_c, 0.6), rng.gamma(k_s, 0.5)
    state = CriterionState()
    for values in zip(s_c, k_c, s_s, k_s, strict=True):
        state = update_mae_comparison(state, *values, 0.05)
    w = k_c * k_s / (k_c + k_s)
    assert state.score / state.weight == pytest.approx(np.sum(w * (s_c / k_c - s_s / k_s)) / np.sum(w), rel=1e-12)
    means = s_c / k_c
    scatter = np.sum(k_c * (means - s_c.sum() / k_c.sum()) ** 2) / (len(k_c) - 1)
    expected = max(scatter, (s_c.sum() / k_c.sum()) ** 2)
    assert row_variance(state.canary_events, state.canary_trials, state.canary_squares, state.ticks) == pytest.approx(
        expected, rel=1e-9
    )


def test_scattered_tick_means_raise_the_variance_above_the_floor() -> None:
    # Two ticks of 100 rows with means 0.2 and 1.8: 100 * 0.8^2 * 2 / (2 - 1) = 128 dwarfs the floor (mean^2 = 1).
    assert row_variance(total=200.0, rows=200.0, squares=20.0**2 / 100 + 180.0**2 / 100, ticks=2) == pytest.approx(
        128.0
    )


def test_equal_versions_are_rarely_failed_over_many_looks() -> None:
    # Heavy-tailed lognormal errors (variance 6.4 mean^2, far above the mean^2 floor, so only the
    # between-tick scatter protects us), 30 looks, share ramped 10% -> 50%, MAE drifting 0.4 -> 0.8 for
    # both versions. The interval is asymptotic, the level 5%: at most that may fail.
    rng = np.random.default_rng(14)
    runs, ticks = 400, 30
    ever_failed = 0
    for _ in range(runs):
        state = CriterionState()
        for t in range(ticks):
            share = 0.1 + 0.4 * t / ticks
            mae = 0.4 + 0.4 * t / ticks
            k_c = max(int(rng.binomial(300, share)), 1)
            errors = rng.lognormal(np.log(mae) - 1.0, np.sqrt(2.0), 300)
            state = update_mae_comparison(state, errors[:k_c].sum(), k_c, errors[k_c:].sum(), 300 - k_c, 0.05)
        ever_failed += state.p_value <= 0.05
    assert ever_failed / runs <= 0.05


def test_negative_increments_are_ignored() -> None:
    config = make_config(margin=0.05)
    bad = Tick(
        VersionCounts(requests=100, abs_error_sum=-5.0, abs_error_count=-10),
        VersionCounts(requests=300, abs_error_sum=50.0, abs_error_count=100),
        0.25,
    )
    outcome, state = run(config, [bad])
    assert outcome.overall is Verdict.INCONCLUSIVE and state.criterion("mae", "margin").ticks == 0
