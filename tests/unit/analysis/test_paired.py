"""The shadow stage's paired analysis: verdicts with their numbers, edge cases, settings, and the interval's
coverage under repeated looks (simulation, fixed seeds)."""

from __future__ import annotations

import doctest
import json
import math

import numpy as np
import pytest
from scipy.stats import binom

from modelrollout.analysis import paired, pairedconfig
from modelrollout.analysis.paired import (
    BET_WEIGHTS,
    BETS,
    PairedCounts,
    PairedState,
    RunningInterval,
    assess_paired,
    difference_interval,
    log_e_value_above,
    log_e_value_below,
)
from modelrollout.analysis.pairedconfig import PairedConfig
from modelrollout.analysis.types import Verdict

pytestmark = pytest.mark.unit
ALPHA = 0.05


def _counts(pairs: float, stable_only: float, candidate_only: float, disagree: float | None = None,
            compared: float | None = None, both_wrong: float = 0.0) -> PairedCounts:
    """Labelled pairs with the given discordant counts; compared predictions default to 3x the pairs."""
    disagree = stable_only + candidate_only + both_wrong if disagree is None else disagree
    compared = 3 * pairs if compared is None else compared
    return PairedCounts(
        agree=compared - disagree, disagree=disagree, both_right=pairs - stable_only - candidate_only - both_wrong,
        stable_only=stable_only, candidate_only=candidate_only, both_wrong=both_wrong,
    )


def test_the_module_examples_hold() -> None:
    assert doctest.testmod(paired).failed == 0
    assert doctest.testmod(pairedconfig).failed == 0


def test_at_zero_the_test_is_mcnemars_likelihood_ratio_on_the_discordant_pairs() -> None:
    # Given b stable-only and c candidate-only pairs, the e-value at delta = 0 is the mixture over bets of
    # Binomial(b + c, (1 + bet) / 2) against Binomial(b + c, 1/2) at b; concordant pairs do not count.
    for b, c in ((30, 10), (12, 41), (0, 5), (7, 0)):
        expected = sum(
            w * binom.pmf(b, b + c, (1 + bet) / 2) / binom.pmf(b, b + c, 0.5)
            for bet, w in zip(BETS, BET_WEIGHTS, strict=True)
        )
        for concordant in (0, 2_000):
            assert float(log_e_value_below(b, c, concordant, 0.0)) == pytest.approx(math.log(expected), rel=1e-9)


def test_with_a_margin_concordant_pairs_dilute_the_difference() -> None:
    # 30 vs 10 discordant: against "at most 1 point worse", 40 pairs in all are strong evidence (delta = -50 pts),
    # the same discordant pairs among 4,000 are none (delta = -0.5 pts).
    assert float(log_e_value_below(30, 10, 0, -0.01)) > math.log(1 / ALPHA)
    assert float(log_e_value_below(30, 10, 3_960, -0.01)) < 0.0


@pytest.mark.parametrize(
    ("settings", "counts", "verdict", "estimate", "interval"),
    [
        # 2.7 points worse on 3,000 pairs, margin 1 point: the whole interval lies below -1 point
        ({"margin": 0.01}, _counts(3_000, 120, 40), Verdict.FAIL, -0.0267, (-0.0388, -0.0155)),
        # equal on 3,000 pairs (75 vs 75): inside the margin of 1 point on neither side yet
        ({"margin": 0.01}, _counts(3_000, 75, 75), Verdict.INCONCLUSIVE, 0.0, (-0.0114, 0.0114)),
        # equal on 12,000 pairs: confidently not worse than -1 point
        ({"margin": 0.01}, _counts(12_000, 300, 300), Verdict.PASS, 0.0, (-0.0061, 0.0061)),
        # 2 points better on 6,000 pairs, improvement of at least 0.5 point required
        ({"minImprovement": 0.005}, _counts(6_000, 90, 210), Verdict.PASS, 0.02, (0.0119, 0.0285)),
        # equal on 12,000 pairs: not yet shown to miss an improvement of 0.5 point; on 24,000 it is
        ({"minImprovement": 0.005}, _counts(12_000, 300, 300), Verdict.INCONCLUSIVE, 0.0, (-0.0061, 0.0061)),
        ({"minImprovement": 0.005}, _counts(24_000, 600, 600), Verdict.FAIL, 0.0, (-0.0043, 0.0043)),
    ],
)
def test_verdicts_come_with_their_numbers(
    settings: dict[str, float],
    counts: PairedCounts,
    verdict: Verdict,
    estimate: float,
    interval: tuple[float, float],
) -> None:
    outcome, _ = assess_paired(PairedConfig.from_spec(settings), PairedState(), counts)
    result = outcome.difference
    assert (result.verdict, outcome.overall) == (verdict, verdict)
    assert result.estimate == pytest.approx(estimate, abs=1e-4)
    assert result.interval == pytest.approx(interval, abs=1e-4)
    assert (result.samples, result.stable_only, result.candidate_only) == (
        counts.labelled, counts.stable_only, counts.candidate_only,
    )
    assert f"discordant {counts.stable_only:,.0f} stable-only vs {counts.candidate_only:,.0f} candidate-only" in (
        result.message
    )
    word = {Verdict.FAIL: "rollback", Verdict.PASS: "promote", Verdict.INCONCLUSIVE: "keep collecting"}[verdict]
    assert result.message.endswith(f": {word}")


def test_the_message_states_agreement_discordant_counts_difference_and_interval() -> None:
    config = PairedConfig.from_spec({"minAgreement": 0.95, "margin": 0.01})
    counts = PairedCounts(agree=9_610, disagree=390, both_right=2_800, stable_only=120, candidate_only=40,
                          both_wrong=40)
    outcome, _ = assess_paired(config, PairedState(), counts)
    assert outcome.agreement.message == (
        "agreement 96.1% [95.1%, 96.7%] of 10,000 mirrored predictions (97.5% always-valid interval), "
        "minimum 95.0%: promote"
    )
    assert outcome.difference.message == (
        "paired accuracy on 3,000 labelled pairs: candidate 94.7% vs stable 97.3%, discordant 120 stable-only vs "
        "40 candidate-only, paired difference -2.7 pts, 97.5% always-valid interval [-4.0, -1.4], "
        "tolerated -1.0 pts: rollback"
    )
    assert outcome.overall is Verdict.FAIL
    assert outcome.message == f"{outcome.agreement.message}; {outcome.difference.message}"


def test_agreement_below_the_minimum_fails_and_above_passes() -> None:
    config = PairedConfig.from_spec({"minAgreement": 0.95})
    low, _ = assess_paired(config, PairedState(), PairedCounts(agree=9_000, disagree=1_000))
    high, _ = assess_paired(config, PairedState(), PairedCounts(agree=9_900, disagree=100))
    assert (low.agreement.verdict, low.overall) == (Verdict.FAIL, Verdict.FAIL)
    assert (high.agreement.verdict, high.overall) == (Verdict.PASS, Verdict.PASS)
    assert low.agreement.interval is not None and low.agreement.interval[1] < 0.95
    # no margin or minImprovement: the difference is reported but does not hold the verdict back
    assert high.difference.verdict is Verdict.INCONCLUSIVE


# --- edge cases: missing data is never Pass ------------------------------------------------------------------


def test_no_counts_is_inconclusive_and_leaves_the_state_alone() -> None:
    config = PairedConfig.from_spec({"minAgreement": 0.9, "margin": 0.01})
    state = PairedState(difference=RunningInterval(-0.02, 0.01, 0.5))
    outcome, after = assess_paired(config, state, None, "candidate pod scrape timed out")
    assert outcome.overall is Verdict.INCONCLUSIVE
    assert after == state
    assert outcome.difference.message == "no shadow data (candidate pod scrape timed out): keep collecting"


def test_zero_pairs_is_inconclusive_even_when_agreement_passes() -> None:
    config = PairedConfig.from_spec({"minAgreement": 0.9, "margin": 0.01})
    outcome, state = assess_paired(config, PairedState(), PairedCounts(agree=5_000, disagree=0))
    assert outcome.agreement.verdict is Verdict.PASS
    assert outcome.difference.verdict is Verdict.INCONCLUSIVE
    assert outcome.overall is Verdict.INCONCLUSIVE
    assert "0 labelled pairs so far" in outcome.difference.message
    assert state.difference == RunningInterval()


def test_zero_predictions_is_inconclusive() -> None:
    outcome, _ = assess_paired(PairedConfig.from_spec({"minAgreement": 0.9}), PairedState(), PairedCounts())
    assert outcome.overall is Verdict.INCONCLUSIVE
    assert "0 mirrored predictions compared so far" in outcome.agreement.message


def test_all_agree_passes_a_margin_and_fails_a_required_improvement() -> None:
    # Identical answers on every row: the candidate is as accurate as stable, no more, no less.
    counts = PairedCounts(agree=30_000, both_right=9_500, both_wrong=500)
    for settings, verdict in (({"margin": 0.005}, Verdict.PASS), ({"minImprovement": 0.005}, Verdict.FAIL)):
        outcome, _ = assess_paired(PairedConfig.from_spec(settings), PairedState(), counts)
        assert outcome.difference.verdict is verdict
        assert outcome.difference.estimate == 0.0
        assert outcome.difference.interval is not None
        assert -0.005 < outcome.difference.interval[0] < 0.0 < outcome.difference.interval[1] < 0.005


def test_only_one_discordant_side() -> None:
    config = PairedConfig.from_spec({"margin": 0.0})
    worse, _ = assess_paired(config, PairedState(), _counts(500, 12, 0))
    better, _ = assess_paired(config, PairedState(), _counts(500, 0, 12))
    assert worse.difference.verdict is Verdict.FAIL
    assert better.difference.verdict is Verdict.PASS
    assert worse.difference.interval is not None and better.difference.interval is not None
    assert worse.difference.interval[1] < 0.0 < better.difference.interval[0]
    assert "discordant 12 stable-only vs 0 candidate-only" in worse.difference.message


def test_too_few_mirrored_predictions_keep_collecting_whatever_the_evidence() -> None:
    config = PairedConfig.from_spec({"margin": 0.0, "minSamples": 500})
    outcome, state = assess_paired(config, PairedState(), _counts(100, 12, 0, compared=300))
    assert outcome.overall is Verdict.INCONCLUSIVE
    assert outcome.difference.message.endswith("keep collecting (300 of 500 mirrored predictions so far)")
    # the interval still tightens, so the Fail shows at the first look past minSamples
    assert state.difference.upper is not None and state.difference.upper < 0.0
    later, _ = assess_paired(config, state, _counts(200, 12, 0, compared=600))
    assert later.overall is Verdict.FAIL


@pytest.mark.parametrize(
    "counts",
    [
        PairedCounts(agree=10, disagree=2, both_right=5, stable_only=2, candidate_only=1),  # 3 discordant of 2
        PairedCounts(agree=3, disagree=1, both_right=5),  # 5 labelled pairs of 4 predictions
        PairedCounts(agree=-1, disagree=5),
        PairedCounts(agree=math.nan, disagree=5),
    ],
)
def test_inconsistent_counts_are_inconclusive(counts: PairedCounts) -> None:
    config = PairedConfig.from_spec({"minAgreement": 0.5, "margin": 0.01})
    outcome, state = assess_paired(config, PairedState(), counts)
    assert outcome.overall is Verdict.INCONCLUSIVE
    assert state == PairedState()
    assert "shadow counts" in outcome.difference.message


def test_a_fail_persists_when_later_counts_alone_would_not_fail() -> None:
    config = PairedConfig.from_spec({"margin": 0.0})
    first, state = assess_paired(config, PairedState(), _counts(500, 12, 0))
    # A restarted counter or a new candidate pod: the later counts alone show no difference.
    later, state = assess_paired(config, state, _counts(500, 3, 3))
    assert (first.overall, later.overall) == (Verdict.FAIL, Verdict.FAIL)
    assert later.difference.p_value is not None and later.difference.p_value <= ALPHA


def test_state_round_trips_through_json() -> None:
    config = PairedConfig.from_spec({"minAgreement": 0.9, "margin": 0.01})
    _, state = assess_paired(config, PairedState(), _counts(3_000, 120, 40))
    assert PairedState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
    assert PairedState.from_dict(None) == PairedState()


def test_results_fit_the_status_shape_of_metrics() -> None:
    config = PairedConfig.from_spec({"minAgreement": 0.9, "margin": 0.01})
    outcome, _ = assess_paired(config, PairedState(), _counts(3_000, 120, 40))
    agreement, difference = outcome.agreement.as_metric_result(), outcome.difference.as_metric_result()
    assert (agreement.name, difference.name) == ("agreement", "paired-accuracy")
    assert difference.canary_value == pytest.approx(outcome.difference.candidate_value)
    assert difference.stable_value == pytest.approx(outcome.difference.stable_value)
    assert (difference.canary_samples, difference.stable_samples) == (3_000, 3_000)
    assert agreement.canary_samples == 9_000


# --- settings -----------------------------------------------------------------------------------------------


def test_settings_defaults_and_boundary() -> None:
    config = PairedConfig.from_spec({"margin": 0.01})
    assert (config.min_samples, config.alpha, config.boundary, config.alpha_share) == (200, 0.05, -0.01, 0.05)
    both = PairedConfig.from_spec({"minAgreement": 0.9, "minImprovement": 0.02, "alpha": 0.1})
    assert (both.boundary, both.alpha_share) == (0.02, 0.05)


WHERE = r"^spec\.strategy\.canary\.steps\[0\]\.shadow\.analysis"  # the field the default `where` names


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ({}, WHERE + r": needs at least one of minAgreement, margin, minImprovement$"),
        ({"margin": 0.01, "minImprovement": 0.01}, WHERE + r"\.minImprovement: .*not both"),
        ({"margin": -0.01}, WHERE + r"\.margin: a share"),
        ({"minAgreement": 1.0}, WHERE + r"\.minAgreement: a share"),
        ({"minAgreement": 0}, WHERE + r"\.minAgreement: a share"),
        ({"minImprovement": "1pt"}, WHERE + r"\.minImprovement: expected a number"),
        ({"margin": True}, WHERE + r"\.margin: expected a number"),
        ({"margin": 0.01, "minSamples": 0}, WHERE + r"\.minSamples: must be a positive"),
        ({"margin": 0.01, "minSamples": 2.5}, WHERE + r"\.minSamples: must be a positive"),
        ({"margin": 0.01, "alpha": 0.5}, WHERE + r"\.alpha: must be between 0 and 0\.5"),
        ({"margin": 0.01, "maxDisagreement": 0.1}, WHERE + r"\.maxDisagreement: unknown"),
        ([0.01], WHERE + r": expected an object$"),
    ],
)
def test_bad_settings_name_the_field(raw: object, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        PairedConfig.from_spec(raw)  # type: ignore[arg-type]


# --- coverage under repeated looks ------------------------------------------------------------------------------

RUNS, LOOKS = 2_000, 60
# (stable-only, candidate-only) probabilities per pair: equal, 2 points worse, 2 points better on 5% discordance,
# and a discordance rate that moves from 2% to 20% during the run.
SCENARIOS = ((0.025, 0.025), (0.035, 0.015), (0.015, 0.035), "moving")


def _pair_stream(rng: np.random.Generator, scenario: tuple[float, float] | str) -> tuple[np.ndarray, ...]:
    """Cumulative (stable-only, candidate-only, concordant) counts per run and look (100 pairs per look), and the
    true paired difference delta (the same at every pair, even where the discordance rate moves)."""
    if scenario == "moving":
        discordant = np.linspace(0.02, 0.2, LOOKS)
        b_p, c_p = discordant / 2 + 0.001, discordant / 2 - 0.001  # delta = -0.2 points at every look
        delta = -0.002
    else:
        b_p, c_p = np.full(LOOKS, scenario[0]), np.full(LOOKS, scenario[1])
        delta = scenario[1] - scenario[0]
    probabilities = np.stack([b_p, c_p, 1.0 - b_p - c_p], axis=-1)
    counts = np.stack([rng.multinomial(100, p, RUNS) for p in probabilities], axis=1)  # (runs, looks, 3)
    cumulative = np.cumsum(counts, axis=1)
    return cumulative[..., 0], cumulative[..., 1], cumulative[..., 2], np.asarray(delta)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_interval_covers_the_true_difference_at_every_look(scenario: tuple[float, float] | str) -> None:
    # By monotonicity the true delta lies outside the interval at a look exactly when one of the two tests rejects
    # it there; each side may miss in at most alpha of the runs over all 60 looks together.
    b, c, n0, delta = _pair_stream(np.random.default_rng(7), scenario)
    threshold = math.log(1 / ALPHA)
    above_missed = np.any(log_e_value_below(b, c, n0, float(delta)) >= threshold, axis=1)  # upper end below delta
    below_missed = np.any(log_e_value_above(b, c, n0, float(delta)) >= threshold, axis=1)  # lower end above delta
    slack = 3 * math.sqrt(ALPHA * (1 - ALPHA) / RUNS)
    assert above_missed.mean() <= ALPHA + slack
    assert below_missed.mean() <= ALPHA + slack


def test_a_fixed_sample_interval_looked_at_every_time_does_not_cover() -> None:
    # The same data with a Wald interval at 95% (one side at 5%): looked at 60 times it misses far more often, which
    # is what the always-valid interval is for (and shows the coverage check above can fail).
    b, c, n0, delta = _pair_stream(np.random.default_rng(7), (0.025, 0.025))
    pairs = b + c + n0
    estimate = (c - b) / pairs
    standard_error = np.sqrt(np.maximum((b + c) / pairs - estimate**2, 1e-12) / pairs)
    missed = np.any(estimate - 1.645 * standard_error > delta, axis=1)
    assert missed.mean() > 2 * ALPHA


def test_the_interval_ends_are_where_the_tests_stop_rejecting() -> None:
    rng = np.random.default_rng(11)
    for _ in range(20):
        pairs = int(rng.integers(50, 5_000))
        b, c = (int(x) for x in rng.multinomial(pairs, [0.03, 0.02, 0.95])[:2])
        counts = _counts(pairs, b, c)
        low, high = difference_interval(counts, ALPHA)
        threshold = math.log(1 / ALPHA)
        for m, rejected in ((low - 1e-4, True), (low + 1e-4, False), (high - 1e-4, False), (high + 1e-4, True)):
            if not -1.0 < m < 1.0:
                continue
            below = float(log_e_value_below(b, c, counts.concordant, m)) >= threshold
            above = float(log_e_value_above(b, c, counts.concordant, m)) >= threshold
            assert (below or above) is rejected, (pairs, b, c, m)
