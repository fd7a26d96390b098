"""A/B statistics: the estimate is the difference of the arms' means, the interval holds at every look (a
small simulation of A/A experiments looked at after every tick), a real lift is declared for the right arm,
the effect size is Cohen's d for numeric outcomes, and a broken split blocks any winner."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modelrollout.analysis.abtest import ABConfig, ArmTotals, Winner, assess, difference_interval, interval_arrays

pytestmark = pytest.mark.unit


def totals(values: np.ndarray) -> ArmTotals:
    return ArmTotals(float(values.size), float(values.sum()), float((values * values).sum()))


def test_the_estimate_is_the_difference_of_means_and_cohens_d_uses_the_pooled_deviation() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(5.0, 2.0, 900), rng.normal(5.5, 2.0, 1100)
    result = assess(totals(a), totals(b), ABConfig(binary=False))
    assert result.estimate == pytest.approx(b.mean() - a.mean())
    pooled = math.sqrt(((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2))
    assert result.effect_size == pytest.approx((b.mean() - a.mean()) / pooled)
    lo, hi = result.interval
    assert lo < result.estimate < hi
    # Wider than a single look's 95% interval: the price of looking as often as one likes.
    single = 1.96 * math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    assert hi - result.estimate > single


def test_a_lift_is_declared_for_b_and_a_loss_for_a_with_the_numbers() -> None:
    config = ABConfig()
    a, b = ArmTotals(20_000, 2_000, 2_000), ArmTotals(20_000, 2_500, 2_500)  # 10% vs 12.5%
    won = assess(a, b, config)
    assert won.winner is Winner.B and won.interval[0] > 0
    assert won.effect_size == pytest.approx(0.025)
    text = won.describe(config)
    assert "B wins" in text and "+0.025" in text and "over 20000" in text and "B's share 0.500" in text
    assert assess(b, a, config).winner is Winner.A
    # Not by more than minEffect: no winner, however clear the difference is.
    assert assess(a, b, ABConfig(min_effect=0.03)).winner is Winner.NONE


def test_no_winner_before_min_samples_or_with_an_empty_arm() -> None:
    config = ABConfig()
    assert assess(ArmTotals(150, 0, 0), ArmTotals(150, 150, 150), config).winner is Winner.NONE
    empty = assess(ArmTotals(0, 0, 0), ArmTotals(500, 50, 50), config)
    assert empty.winner is Winner.NONE and empty.interval == (-math.inf, math.inf)


def test_a_broken_split_blocks_the_winner_and_says_so() -> None:
    config = ABConfig()
    a, b = ArmTotals(9_000, 900, 900), ArmTotals(11_000, 1_650, 1_650)  # 45/55 where 50/50 was asked
    result = assess(a, b, config)
    assert result.srm_broken and result.winner is Winner.NONE and result.interval[0] > 0
    assert "the split is broken" in result.describe(config)
    assert not assess(ArmTotals(10_050, 900, 900), ArmTotals(9_950, 1_500, 1_500), config).srm_broken


def test_a_a_experiments_looked_at_every_tick_rarely_declare_a_winner() -> None:
    """400 experiments, 100 looks of 400 requests each: at most about alpha declare a winner at any look."""
    rng = np.random.default_rng(11)
    runs, config = 400, ABConfig()
    sums = np.zeros((6, runs))
    declared = np.zeros(runs, dtype=bool)
    naive = np.zeros(runs, dtype=bool)
    for _ in range(100):
        nb = rng.binomial(400, 0.5, runs)
        for offset, n in ((0, 400 - nb), (3, nb)):
            hits = rng.binomial(n, 0.1)
            sums[offset:offset + 3] += np.stack([n, hits, hits])
        estimate, radius = interval_arrays(*sums, config)
        enough = np.minimum(sums[0], sums[3]) >= config.min_samples
        declared |= enough & (np.abs(estimate) > radius)
        p_a, p_b = sums[1] / sums[0], sums[4] / sums[3]
        se = np.sqrt(p_a * (1 - p_a) / sums[0] + p_b * (1 - p_b) / sums[3])
        naive |= np.abs(p_b - p_a) > 1.96 * se
    assert declared.mean() <= 0.05, declared.mean()
    assert naive.mean() > 0.2  # the same looks with a fixed-sample test: why the sequential interval exists


@pytest.mark.parametrize("shift", [-0.9, 5.0, 1000.0])
def test_the_interval_does_not_depend_on_the_outcomes_level(shift: float) -> None:
    # Uncentred, adding a constant to every outcome widened the interval: at 90% accuracy it was three
    # times wider than the difference of two proportions needs (make bench-decisions part 4).
    def shifted(arm: ArmTotals) -> ArmTotals:
        return ArmTotals(arm.n, arm.total + shift * arm.n,
                         arm.squares + 2 * shift * arm.total + shift * shift * arm.n)

    a, b, config = ArmTotals(5_000, 4_500, 4_500), ArmTotals(5_100, 4_692, 4_692), ABConfig()
    estimate, (lo, hi) = difference_interval(a, b, config)
    moved, (mlo, mhi) = difference_interval(shifted(a), shifted(b), config)
    assert moved == pytest.approx(estimate) and (mlo, mhi) == (pytest.approx(lo), pytest.approx(hi))
    # Near 90% accuracy with 5,000 per arm the radius is that of two proportions, about 0.02 here.
    assert (hi - lo) / 2 < 0.03
