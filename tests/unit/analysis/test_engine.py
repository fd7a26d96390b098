"""assess_tick end to end: verdicts a user would see, state that survives restarts and bad ticks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modelrollout.analysis.config import AnalysisConfig
from modelrollout.analysis.engine import assess_tick
from modelrollout.analysis.sequential import mixture_log_e_value, tick_log_likelihood_ratios
from modelrollout.analysis.state import AnalysisState
from modelrollout.analysis.types import Tick, Verdict, VersionCounts
from tests.unit.analysis.replay import run

pytestmark = pytest.mark.unit


def make_config(*metrics: dict[str, object], **fields: object) -> AnalysisConfig:
    return AnalysisConfig.from_spec({"minSamples": 100, "minExposure": "30s", **fields, "metrics": list(metrics)})


ERRORS_VS_STABLE = {"name": "errors", "type": "errorRate", "margin": 0.005}


def error_tick(rng: np.random.Generator, canary_rate: float, stable_rate: float, n: int = 1000) -> Tick:
    n_c = int(rng.binomial(n, 0.25))
    canary = VersionCounts(requests=n_c, errors=float(rng.binomial(n_c, canary_rate)))
    stable = VersionCounts(requests=n - n_c, errors=float(rng.binomial(n - n_c, stable_rate)))
    return Tick(canary=canary, stable=stable, expected_canary_share=0.25)


def test_canary_with_3_percent_errors_against_half_a_percent_is_rolled_back_with_interval() -> None:
    rng = np.random.default_rng(1)
    outcome, _ = run(make_config(ERRORS_VS_STABLE), [error_tick(rng, 0.03, 0.005) for _ in range(8)])
    result = outcome.results[0]
    assert outcome.overall is Verdict.FAIL
    assert result.interval is not None and result.interval[0] > 0
    assert result.message.startswith("canary error rate") and result.message.endswith(": rollback")


def test_identical_canary_passes_with_a_margin_after_enough_traffic() -> None:
    rng = np.random.default_rng(2)
    outcome, _ = run(make_config(ERRORS_VS_STABLE), [error_tick(rng, 0.005, 0.005, n=4000) for _ in range(10)])
    assert outcome.overall is Verdict.PASS
    assert outcome.results[0].interval is not None and outcome.results[0].interval[1] < 0.005


def test_too_few_canary_requests_is_inconclusive_even_with_glaring_errors() -> None:
    tick = Tick(VersionCounts(requests=20, errors=20), VersionCounts(requests=60, errors=0), 0.25)
    outcome, _ = run(make_config(ERRORS_VS_STABLE), [tick])
    assert outcome.overall is Verdict.INCONCLUSIVE
    assert "20 of 100 canary requests" in outcome.results[0].message


def test_missing_scrape_is_inconclusive_and_leaves_the_tests_alone() -> None:
    config = make_config(ERRORS_VS_STABLE)
    rng = np.random.default_rng(3)
    _, state = run(config, [error_tick(rng, 0.01, 0.01) for _ in range(3)])
    outcome, after = assess_tick(config, state, Tick(None, VersionCounts(requests=300), 0.25, errors=("timeout",)))
    assert outcome.overall is Verdict.INCONCLUSIVE and "timeout" in outcome.results[0].message
    assert after.criteria == state.criteria and after.missing_ticks == state.missing_ticks + 1
    outcome, after = assess_tick(config, state, Tick(VersionCounts(requests=100), None, 0.25))
    assert outcome.overall is Verdict.INCONCLUSIVE and after.criteria == state.criteria


def test_inconsistent_increments_do_not_corrupt_the_state() -> None:
    # A counter reset handled badly upstream could hand us negative errors or more errors than requests.
    config = make_config(ERRORS_VS_STABLE)
    bad = Tick(VersionCounts(requests=100, errors=-50), VersionCounts(requests=300, errors=500), 0.25)
    _, state = run(config, [bad])
    criterion = state.criterion("errors", "margin")
    assert all(math.isfinite(x) for x in criterion.log_lr) and math.isfinite(criterion.score)


def test_engine_matches_the_vectorised_benchmark_path() -> None:
    config = make_config(ERRORS_VS_STABLE, minSamples=1)
    rng = np.random.default_rng(4)
    ticks = [error_tick(rng, 0.02, 0.01, n=400) for _ in range(12)]
    _, state = run(config, ticks)
    n_c = np.array([t.canary.requests for t in ticks if t.canary])
    e_c = np.array([t.canary.errors for t in ticks if t.canary])
    e_s = np.array([t.stable.errors for t in ticks if t.stable])
    log_e = mixture_log_e_value(np.cumsum(tick_log_likelihood_ratios(e_c, e_c + e_s, n_c / 400), axis=0))
    expected_p = min(1.0, float(np.min(np.exp(-log_e))))
    assert state.criterion("errors", "margin").p_value == pytest.approx(expected_p, rel=1e-9)


def test_accuracy_waits_when_label_coverage_differs() -> None:
    config = make_config({"name": "acc", "type": "accuracy", "margin": 0.01})
    tick = Tick(
        VersionCounts(requests=1000, feedback_correct=80, feedback_incorrect=20),
        VersionCounts(requests=3000, feedback_correct=2700, feedback_incorrect=300),
        0.25,
    )
    outcome, _ = run(config, [tick] * 5)
    assert outcome.overall is Verdict.INCONCLUSIVE
    assert "label coverage differs" in outcome.results[0].message


def test_accuracy_two_points_lower_fails_and_equal_passes() -> None:
    config = make_config({"name": "acc", "type": "accuracy", "margin": 0.01})
    rng = np.random.default_rng(5)

    def tick(canary_accuracy: float) -> Tick:
        c = float(rng.binomial(2500, canary_accuracy))
        s = float(rng.binomial(7500, 0.95))
        return Tick(
            VersionCounts(requests=2500, feedback_correct=c, feedback_incorrect=2500 - c),
            VersionCounts(requests=7500, feedback_correct=s, feedback_incorrect=7500 - s),
            0.25,
        )

    assert run(config, [tick(0.93) for _ in range(10)])[0].overall is Verdict.FAIL
    assert run(config, [tick(0.95) for _ in range(10)])[0].overall is Verdict.PASS


def test_latency_slow_tail_fails_the_p99_ratio_check() -> None:
    config = make_config({"name": "p99", "type": "latency", "quantile": 0.99, "maxRatioToStable": 1.25})
    stable = ((0.05, 2970.0), (0.1, 2990.0), (0.25, 3000.0), (math.inf, 3000.0))
    slow_canary = ((0.05, 940.0), (0.1, 960.0), (0.25, 970.0), (math.inf, 1000.0))  # 3% slower than 250ms
    tick = Tick(
        VersionCounts(requests=1000, latency_buckets=slow_canary),
        VersionCounts(requests=3000, latency_buckets=stable),
        0.25,
    )
    outcome, _ = run(config, [tick] * 6)
    assert outcome.overall is Verdict.FAIL
    # Stable's p99 bound is 50ms; 1.25 x 50ms rounds down to 50ms again, where stable's share is read at 40ms, below
    # the first bound: the tolerance rounds to stable's share above 50ms itself (never in the canary's favour).
    message = outcome.results[0].message
    assert "canary 6.0% of 6,000 requests slower than 50ms vs stable 1.0% of 18,000 slower than 50ms" in message
    assert "a canary 1.25 x slower would have 1.0% above 50ms" in message


def test_prediction_shift_detects_a_changed_class_mix_and_passes_an_equal_one() -> None:
    config = make_config({"name": "pred", "type": "predictionShift", "max": 0.02})
    changed = Tick(
        VersionCounts(requests=1000, class_counts={"fraud": 300, "ok": 700}),
        VersionCounts(requests=3000, class_counts={"fraud": 300, "ok": 2700}),
        0.25,
    )
    same = Tick(
        VersionCounts(requests=1000, class_counts={"fraud": 100, "ok": 900}),
        VersionCounts(requests=3000, class_counts={"fraud": 300, "ok": 2700}),
        0.25,
    )
    assert run(config, [changed] * 4)[0].overall is Verdict.FAIL
    # Pass needs the total-variation upper bound (which bounds JS) under max: a looser max, more data.
    loose = make_config({"name": "pred", "type": "predictionShift", "max": 0.1})
    assert run(loose, [same] * 10)[0].overall is Verdict.PASS


def test_sample_ratio_mismatch_is_reported() -> None:
    config = make_config(ERRORS_VS_STABLE)
    tick = Tick(VersionCounts(requests=500), VersionCounts(requests=500), expected_canary_share=0.25)
    outcome, _ = run(config, [tick] * 3)
    assert outcome.sample_ratio_warning is not None and "50.0%" in outcome.sample_ratio_warning
    assert outcome.effective_canary_share == 0.5


def test_idle_canary_ticks_do_not_count_towards_min_exposure() -> None:
    # minExposure 30s = two 15s ticks with canary traffic; four idle ticks before one busy tick must not add up.
    config = make_config(ERRORS_VS_STABLE, minSamples=1)
    idle = Tick(VersionCounts(requests=0), VersionCounts(requests=3000, errors=15), 0.25)
    busy = Tick(VersionCounts(requests=20000, errors=100), VersionCounts(requests=60000, errors=300), 0.25)
    alone, _ = run(config, [busy])
    after_idle, state = run(config, [idle] * 4 + [busy])
    assert alone.overall is Verdict.INCONCLUSIVE and "exposure 15s of the minimum 30s" in alone.results[0].message
    assert after_idle.overall is Verdict.INCONCLUSIVE and state.exposure_seconds == 15.0
    assert run(config, [busy, busy])[0].overall is Verdict.PASS


def test_errors_without_requests_are_clipped_and_said_so() -> None:
    # Five scrapes with 0 canary requests but 1 error used to add up to a 16% canary error rate.
    config = make_config(ERRORS_VS_STABLE, minSamples=1)
    good = Tick(VersionCounts(requests=100, errors=1), VersionCounts(requests=300, errors=3), 0.25)
    broken = Tick(VersionCounts(requests=0, errors=1), VersionCounts(requests=300, errors=3), 0.25)
    ticks = [good, good] + [broken] * 5
    outcome, state = run(config, ticks)
    criterion = state.criterion("errors", "margin")
    assert criterion.canary_events / criterion.canary_trials == 0.01  # not (2 + 5) / 200
    assert "canary scrape reported 1 errors for 0 requests this tick, counted as 0" in outcome.results[0].message


def test_a_canary_proven_within_the_margin_passes_and_never_turns_to_fail() -> None:
    # +0.5 pts with margin 2 pts: once the upper end is below +2 the canary is tolerated, even when later
    # ticks also prove it slightly worse than stable (lower end above 0); Pass is never followed by Fail.
    config = make_config({"name": "errors", "type": "errorRate", "margin": 0.02})
    rng = np.random.default_rng(7)
    state = AnalysisState.initial(config)
    verdicts = []
    for _ in range(12):
        outcome, state = assess_tick(config, state, error_tick(rng, 0.015, 0.01, n=20000))
        verdicts.append(outcome.overall)
    first_pass = verdicts.index(Verdict.PASS)
    assert all(v is Verdict.PASS for v in verdicts[first_pass:])
    interval = outcome.results[0].interval
    assert interval is not None and interval[0] > 0 and interval[1] < 0.02


def test_margin_zero_rolls_back_a_worse_canary_as_before() -> None:
    config = make_config({"name": "errors", "type": "errorRate", "margin": 0.0})
    rng = np.random.default_rng(8)
    outcome, _ = run(config, [error_tick(rng, 0.02, 0.01, n=4000) for _ in range(10)])
    assert outcome.overall is Verdict.FAIL and outcome.results[0].message.endswith(": rollback")
