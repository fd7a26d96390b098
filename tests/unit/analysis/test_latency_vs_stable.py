"""Latency quantile against stable (`maxRatioToStable`, `margin`): a two-sample test on tail counts.

Before, the threshold was stable's interpolated p99 x the ratio rounded up to a bucket bound: with Prometheus'
default buckets a true stable p99 of 160 ms was tested at 500 ms, and canaries 1.5x and 2x slower were promoted.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from modelrollout.analysis.config import AnalysisConfig
from modelrollout.analysis.engine import assess_tick
from modelrollout.analysis.latency import bound_at_or_below, share_slower
from modelrollout.analysis.rules import tolerated_ratio
from modelrollout.analysis.state import CriterionState, criterion_key
from modelrollout.analysis.types import Tick, Verdict, VersionCounts
from tests.unit.analysis.replay import run

pytestmark = pytest.mark.unit

DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, math.inf)


def lognormal_probabilities(slowdown: float) -> np.ndarray:
    """Per-bucket probabilities of a lognormal latency, median 50 ms x slowdown, sigma 0.5 (stable p99 160 ms)."""
    bounds = np.log(np.array(DEFAULT_BUCKETS[:-1]))
    cumulative = np.append(norm.cdf((bounds - math.log(0.05 * slowdown)) / 0.5), 1.0)
    return np.diff(cumulative, prepend=0.0)


def histogram(counts: np.ndarray) -> tuple[tuple[float, float], ...]:
    return tuple((bound, float(c)) for bound, c in zip(DEFAULT_BUCKETS, np.cumsum(counts), strict=True))


def latency_ticks(seed: int, slowdown: float, ticks: int = 40, per_tick: int = 400) -> list[Tick]:
    rng = np.random.default_rng(seed)
    canary_p, stable_p = lognormal_probabilities(slowdown), lognormal_probabilities(1.0)
    out = []
    for _ in range(ticks):
        n_c = int(rng.binomial(per_tick, 0.25))
        out.append(
            Tick(
                VersionCounts(requests=n_c, latency_buckets=histogram(rng.multinomial(n_c, canary_p))),
                VersionCounts(
                    requests=per_tick - n_c, latency_buckets=histogram(rng.multinomial(per_tick - n_c, stable_p))
                ),
                0.25,
            )
        )
    return out


P99_RATIO = AnalysisConfig.from_spec(
    {"metrics": [{"name": "p99", "type": "latency", "quantile": 0.99, "maxRatioToStable": 1.2}]}
)


def first_decision(config: AnalysisConfig, ticks: list[Tick]) -> tuple[Verdict, int, str]:
    """(first Pass or Fail, canary requests until then, its message); Inconclusive if neither came."""
    requests = 0.0
    for t in range(1, len(ticks) + 1):
        outcome, _ = run(config, ticks[:t])
        requests += ticks[t - 1].canary.requests if ticks[t - 1].canary else 0.0
        if outcome.overall is not Verdict.INCONCLUSIVE:
            return outcome.overall, int(requests), outcome.results[0].message
    return Verdict.INCONCLUSIVE, int(requests), outcome.results[0].message


@pytest.mark.parametrize("seed", range(8))
def test_a_canary_1_5x_slower_is_rolled_back_with_p99_ratio_1_2(seed: int) -> None:
    verdict, canary_requests, message = first_decision(P99_RATIO, latency_ticks(seed, 1.5, ticks=12))
    assert verdict is Verdict.FAIL, message
    assert canary_requests <= 3000
    # Which bound, both shares with their samples, the interval and the tolerance are in status.
    assert message.startswith("canary share slower than 100ms (the bucket bound at or below stable's p99) ")
    assert " requests vs stable " in message and "always-valid interval [" in message
    assert "tolerated 1." in message and "(1.2 x slower: stable's share above 83.3ms / above 100ms)" in message


@pytest.mark.parametrize("seed", range(4))
def test_an_equal_canary_is_promoted_and_never_failed(seed: int) -> None:
    ticks = latency_ticks(100 + seed, 1.0)
    verdicts = [run(P99_RATIO, ticks[:t])[0].overall for t in range(1, len(ticks) + 1)]
    assert Verdict.FAIL not in verdicts
    assert verdicts[-1] is Verdict.PASS


def test_a_2x_slower_canary_is_rolled_back_and_max_still_works_beside_the_ratio() -> None:
    config = AnalysisConfig.from_spec(
        {"metrics": [{"name": "p99", "type": "latency", "quantile": 0.99, "maxRatioToStable": 1.2, "max": 0.25}]}
    )
    verdict, _, _ = first_decision(config, latency_ticks(7, 2.0, ticks=12))
    assert verdict is Verdict.FAIL
    p99_max = {"name": "p99", "type": "latency", "quantile": 0.99, "max": 0.25}
    only_max = AnalysisConfig.from_spec({"metrics": [p99_max]})
    verdict, _, message = first_decision(only_max, latency_ticks(7, 1.0, ticks=20))
    assert verdict is Verdict.PASS and "share slower than 250ms" in message


def test_share_slower_is_exact_on_a_power_law_tail_and_rounds_up_below_the_first_bound() -> None:
    # A Pareto tail, share above t = (0.01 / t)^2 beyond 10 ms: log-log interpolation is exact.
    bounds = (0.01, 0.05, 0.1, 0.25, math.inf)
    buckets = tuple((b, 1e6 * (1.0 - (0.01 / b) ** 2)) if math.isfinite(b) else (b, 1e6) for b in bounds)
    for t in (0.02, 0.07, 0.2):
        assert share_slower(buckets, t) == pytest.approx((0.01 / t) ** 2, rel=1e-3)
    assert share_slower(buckets, 0.005) == share_slower(buckets, 0.01)  # never more than the next bound up shows
    assert bound_at_or_below(buckets, 0.233) == 0.1


def test_tolerated_ratio_reads_stable_tail_at_bound_over_ratio_or_minus_margin() -> None:
    stable = histogram(np.round(1e6 * lognormal_probabilities(1.0)))
    ratio = P99_RATIO.metrics[0]
    margin = AnalysisConfig.from_spec(
        {"metrics": [{"name": "p99", "type": "latency", "quantile": 0.99, "margin": 0.05}]}
    ).metrics[0]
    above = share_slower(stable, 0.1)
    assert tolerated_ratio(ratio, "maxRatioToStable", 0.1, stable) == pytest.approx(
        share_slower(stable, 0.1 / 1.2) / above
    )
    assert tolerated_ratio(margin, "margin", 0.1, stable) == pytest.approx(share_slower(stable, 0.05) / above)
    # The power-law chord is below a lognormal tail: the tolerance is stricter than the truth (1.85), not looser.
    truth = float(norm.sf(math.log(0.1 / 1.2 / 0.05) / 0.5) / norm.sf(math.log(0.1 / 0.05) / 0.5))
    assert 1.0 < tolerated_ratio(ratio, "maxRatioToStable", 0.1, stable) < truth  # type: ignore[operator]


def test_a_state_from_the_rounded_threshold_release_starts_the_test_over_instead_of_passing() -> None:
    ticks = latency_ticks(11, 1.5, ticks=3)
    _, state = run(P99_RATIO, ticks[:2])
    # What the old release stored: a 500 ms threshold and canary-rate ends of a bound test, read now as log ratios.
    legacy = CriterionState(threshold=0.5, lower=0.0, upper=0.01, canary_trials=200.0, canary_events=0.0)
    state = state.with_criteria({criterion_key("p99", "maxRatioToStable"): legacy})
    outcome, new_state = assess_tick(P99_RATIO, state, ticks[2])
    assert outcome.overall is not Verdict.PASS
    assert new_state.criterion("p99", "maxRatioToStable").threshold == 0.1
