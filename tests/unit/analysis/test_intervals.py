"""The interval printed beside a verdict comes from the test that decides: they never disagree, and the
interval covers the true effect at every look (simulation, fixed seeds)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from scipy.stats import binom

from modelrollout.analysis.config import AnalysisConfig
from modelrollout.analysis.counts import (
    CountObservation,
    judge_bound,
    judge_comparison,
    update_bound,
    update_comparison,
)
from modelrollout.analysis.inversion import LATTICE, log_ratio_interval, rate_interval, tick_log_likelihood
from modelrollout.analysis.mean_error import judge_mae_comparison, update_mae_comparison
from modelrollout.analysis.rules import describe
from modelrollout.analysis.state import CriterionState
from modelrollout.analysis.types import Verdict

pytestmark = pytest.mark.unit
ALPHA, MARGIN = 0.05, 0.005
# (canary rate, stable rate): equal, worse, much worse, better, and a higher base rate
RATES = ((0.01, 0.01), (0.02, 0.01), (0.03, 0.005), (0.005, 0.01), (0.06, 0.05))


def _stream(rng: np.random.Generator, canary_rate: float, stable_rate: float, ticks: int) -> list[CountObservation]:
    observations = []
    for t in range(ticks):
        share = (0.05, 0.1, 0.25, 0.5)[min(t * 4 // ticks, 3)]  # a ramped share, as a canary walk does
        n_c = int(rng.binomial(400, share))
        n_s = 400 - n_c
        observations.append(CountObservation(rng.binomial(n_c, canary_rate), n_c, rng.binomial(n_s, stable_rate), n_s))
    return observations


def test_verdict_and_interval_never_disagree_and_the_interval_covers_the_true_difference() -> None:
    rng = np.random.default_rng(2024)
    runs, ticks = 30, 20
    for canary_rate, stable_rate in RATES:
        missed_low = missed_high = 0
        for _ in range(runs):
            state, low_missed, high_missed = CriterionState(), False, False
            for obs in _stream(rng, canary_rate, stable_rate, ticks):
                state = update_comparison(state, obs, ALPHA)
                j = judge_comparison(state, MARGIN, ALPHA)
                low, high = j.interval
                assert (j.verdict is Verdict.FAIL) == (low > 0)
                assert (j.verdict is Verdict.PASS) == (high < MARGIN and low <= 0)
                assert (j.verdict is Verdict.FAIL) == (state.p_value <= ALPHA)  # the rollback test itself
                low_missed |= low > canary_rate - stable_rate
                high_missed |= high < canary_rate - stable_rate
            missed_low += low_missed
            missed_high += high_missed
        # Each end is an always-valid 1 - alpha bound (ratio test + two rate bounds at alpha/10 each: at most
        # 1.2 alpha by the union bound); a per-look interval would miss in about a third of the runs.
        assert missed_low / runs <= ALPHA and missed_high / runs <= ALPHA, (canary_rate, stable_rate)
        assert (missed_low + missed_high) / runs <= 2 * ALPHA


def test_ratio_interval_covers_the_true_ratio_at_every_look() -> None:
    # Vectorised over rollouts: the running ends of the ratio interval, against the true ratio 2.
    rng = np.random.default_rng(7)
    runs, ticks = 400, 30
    missed = 0
    for _ in range(runs):
        log_likelihood = np.zeros(LATTICE.size)
        lower, upper = -math.inf, math.inf
        base = rng.uniform(0.005, 0.02)
        for _ in range(ticks):
            n_c = int(rng.binomial(400, 0.25))
            e_c, e_s = rng.binomial(n_c, 2 * base), rng.binomial(400 - n_c, base)
            log_likelihood += tick_log_likelihood(e_c, e_c + e_s, n_c / 400)
            low, high = log_ratio_interval(log_likelihood, ALPHA)
            lower, upper = max(lower, low), min(upper, high)
        missed += not lower < math.log(2.0) < upper
    assert missed / runs <= ALPHA


def test_rate_interval_covers_a_binomial_rate_like_an_exact_clopper_pearson_bound_would() -> None:
    # Always-valid bounds must be wider than the single-look exact (Clopper-Pearson) ones at the same level.
    for events, trials in ((0, 500), (3, 500), (40, 2000)):
        low, high = rate_interval(float(events), float(trials), ALPHA)
        exact_high = 1.0 if events == trials else float(binom.ppf(1 - ALPHA, trials, events / trials))
        assert low <= events / trials <= high
        assert high >= (events + 0.5) / trials or events == 0
        assert exact_high / trials <= max(high, 3.0 / trials)


def test_a_bound_fails_exactly_when_its_interval_lies_above_the_bound() -> None:
    rng = np.random.default_rng(3)
    for rate in (0.005, 0.01, 0.02):
        state = CriterionState()
        for _ in range(30):
            n = int(rng.integers(50, 400))
            state = update_bound(state, CountObservation(rng.binomial(n, rate), n, 0, 0), 0.01, ALPHA)
            j = judge_bound(state, 0.01, ALPHA)
            assert (j.verdict is Verdict.FAIL) == (j.interval[0] > 0.01) == (state.p_value <= ALPHA)
            assert (j.verdict is Verdict.PASS) == (j.interval[1] < 0.01)


def test_mean_absolute_error_fails_exactly_when_its_interval_lies_above_zero() -> None:
    rng = np.random.default_rng(4)
    for canary_mae in (0.5, 0.55, 0.65):
        state = CriterionState()
        for _ in range(25):
            k_c, k_s = int(rng.integers(20, 100)), int(rng.integers(60, 300))
            state = update_mae_comparison(state, rng.gamma(k_c, canary_mae), k_c, rng.gamma(k_s, 0.5), k_s, ALPHA)
            j = judge_mae_comparison(state, 0.05)
            assert (j.verdict is Verdict.FAIL) == (j.interval[0] > 0) == (state.p_value <= ALPHA)


def test_the_cluster_case_prints_an_interval_above_zero_beside_its_rollback() -> None:
    # 3% canary errors against 0.5% stable (the e2e case that printed [-0.7, +4.7]: rollback).
    rng = np.random.default_rng(5)
    metric = AnalysisConfig.from_spec({"metrics": [{"name": "e", "type": "errorRate", "margin": MARGIN}]}).metrics[0]
    state = CriterionState()
    for obs in _stream(rng, 0.03, 0.005, 40):
        state = update_comparison(state, obs, ALPHA)
        j = judge_comparison(state, MARGIN, ALPHA)
        message = describe(metric, "margin", state, j, 1 - ALPHA)
        shown = re.search(r"interval \[([-+][\d.]+), ([-+][\d.]+)\]", message)
        assert shown is not None
        if j.verdict is Verdict.FAIL:
            assert float(shown.group(1)) > 0 and message.endswith(": rollback"), message
    assert j.verdict is Verdict.FAIL
