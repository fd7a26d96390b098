"""The statistics primitives against exact oracles (scipy) and the e-process property by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom

from modelrollout.analysis.sequential import (
    ODDS_RATIOS,
    alternative_share,
    confidence_radius,
    mixture_log_e_value,
    mixture_rho,
    tick_log_likelihood_ratios,
    two_sided_log_e_value,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("successes", "trials", "share"), [(0, 10, 0.25), (3, 7, 0.1), (12, 20, 0.5)])
def test_tick_likelihood_ratio_matches_binomial_pmfs(successes: int, trials: int, share: float) -> None:
    ours = tick_log_likelihood_ratios(successes, trials, share)
    for q, value in zip(ODDS_RATIOS, ours, strict=True):
        theta = float(alternative_share(share, q))
        oracle = binom.logpmf(successes, trials, theta) - binom.logpmf(successes, trials, share)
        assert value == pytest.approx(oracle, rel=1e-9, abs=1e-12)


def test_uninformative_ticks_add_nothing() -> None:
    assert np.all(tick_log_likelihood_ratios(0, 0, 0.25) == 0)
    assert np.all(tick_log_likelihood_ratios(3, 5, 0.0) == 0)
    assert np.all(tick_log_likelihood_ratios(3, 5, 1.0) == 0)


def test_e_process_has_expectation_one_under_the_null() -> None:
    # Five ticks with varying events and shares; the mean of the mixture e-value must be 1 (it is a
    # martingale). The tolerance is 4 standard errors, and the standard error itself is checked to be
    # small, so a biased e-process (say 1.15) cannot pass by luck.
    rng = np.random.default_rng(7)
    runs, ticks = 200_000, 5
    events = rng.integers(0, 6, (runs, ticks))
    share = rng.choice([0.1, 0.25, 0.5], (runs, ticks))
    canary = rng.binomial(events, share)
    e_values = np.exp(mixture_log_e_value(np.sum(tick_log_likelihood_ratios(canary, events, share), axis=1)))
    standard_error = e_values.std() / math.sqrt(runs)
    assert standard_error < 0.02
    assert abs(e_values.mean() - 1.0) < 4 * standard_error


def test_e_process_grows_when_the_canary_is_worse() -> None:
    rng = np.random.default_rng(8)
    events = np.full((2000, 20), 10)
    canary = rng.binomial(events, float(alternative_share(0.25, 2.0)))
    log_e = mixture_log_e_value(np.sum(tick_log_likelihood_ratios(canary, events, 0.25), axis=1))
    assert np.mean(log_e >= math.log(20)) > 0.9


def test_false_rollbacks_stay_below_alpha_when_base_rate_drifts_and_share_ramps() -> None:
    rng = np.random.default_rng(9)
    runs, ticks = 4000, 60
    share = np.repeat([0.05, 0.1, 0.25, 0.5], ticks // 4)
    base = np.linspace(0.005, 0.03, ticks)
    n_c = rng.binomial(400, np.broadcast_to(share, (runs, ticks)))
    e_c, e_s = rng.binomial(n_c, base), rng.binomial(400 - n_c, base)
    log_lr = tick_log_likelihood_ratios(e_c, e_c + e_s, n_c / 400)
    ever = (mixture_log_e_value(np.cumsum(log_lr, axis=1)) >= math.log(20)).any(axis=1)
    assert ever.mean() < 0.05


def test_confidence_radius_is_where_the_two_sided_e_value_reaches_one_over_alpha() -> None:
    for variance in (0.0, 5.0, 300.0):
        radius = float(confidence_radius(variance, 0.05))
        log_e = float(two_sided_log_e_value(radius, variance, mixture_rho(0.05, one_sided=False)))
        assert log_e == pytest.approx(math.log(20), rel=1e-9)


def test_confidence_radius_covers_a_gaussian_walk_at_every_look() -> None:
    rng = np.random.default_rng(10)
    walk = np.cumsum(rng.normal(0, 1, (4000, 200)), axis=1)
    radius = confidence_radius(np.arange(1, 201, dtype=float), 0.05)
    assert (np.abs(walk) > radius).any(axis=1).mean() < 0.05
