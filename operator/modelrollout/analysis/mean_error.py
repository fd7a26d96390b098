"""meanAbsoluteError: a regressor's mean absolute error from feedback labels, against a bound or vs stable.

The server exports only per-version sums and counts of absolute errors (a Prometheus summary), so per
tick u each version contributes a sum s_u over k_u labelled rows, i.e. a tick mean m_u = s_u / k_u.

* **bound** (`max`): H0 "the canary's MAE is at most max". Score sum_u (s_u - max k_u), variance
  sigma^2 sum_u k_u.
* **comparison** (`margin`, `maxRatioToStable`): per tick with labels on both sides, weight
  w_u = k_c k_s / (k_c + k_s) and difference d_u = m_c - m_s. The estimate sum w d / sum w is the
  stratified difference (ticks are compared only with themselves, so a drifting label mix does not bias
  it), with variance sigma_c^2 sum w^2 / k_c + sigma_s^2 sum w^2 / k_s.

sigma^2 (per labelled row) is not observable from sums alone: it is estimated from how much the tick means
scatter, sum_u k_u (m_u - m)^2 / (ticks - 1), and never taken below m^2 (the variance of an exponential
with mean m; a half-normal error has only 0.57 m^2), so a few calm ticks cannot make the interval
overconfident. With an estimated variance the normal-mixture boundary is *asymptotically* always-valid
(Waudby-Smith et al., "Time-uniform central limit theory and asymptotic confidence sequences", 2021);
unlike the count tests it is not exact, which the docs say.

>>> s = CriterionState()
>>> for canary_sum, stable_sum in [(60.0, 150.0)] * 4:   # 100 canary rows at MAE 0.6, 300 stable at 0.5
...     s = update_mae_comparison(s, canary_sum, 100.0, stable_sum, 300.0, 0.05)
>>> text = describe_mae(s, judge_mae_comparison(s, 0.05), comparison=True, level=0.95)
>>> print(text.replace(", 95%", ",\\n95%"))
canary mean absolute error 0.600 vs stable 0.500, difference +0.100,
95% always-valid interval [+0.008, +0.192], tolerated +0.050: rollback
"""

from __future__ import annotations

import math
from dataclasses import replace

from scipy.optimize import brentq

from modelrollout.analysis.counts import Judgement, verdict_for
from modelrollout.analysis.sequential import mixture_rho, one_sided_log_e_value, running_p_value
from modelrollout.analysis.state import CriterionState
from modelrollout.analysis.types import Verdict

# The boundary is tuned in standardised units (effective labelled rows): tightest near this many.
OPTIMAL_LABELS = 200.0
MIXTURE_RHO = mixture_rho(0.05, one_sided=True, optimal_variance=OPTIMAL_LABELS)


def row_variance(total: float, rows: float, squares: float, ticks: float) -> float:
    """Per-row variance of the absolute error, from between-tick scatter, floored at mean^2.

    >>> row_variance(total=100.0, rows=200.0, squares=50.0, ticks=2)  # both ticks mean 0.5: floor
    0.25
    """
    if rows <= 0:
        return 0.0
    mean = total / rows
    scatter = (squares - total * total / rows) / (ticks - 1.0) if ticks >= 2 else 0.0
    return max(scatter, mean * mean)


def _add(state: CriterionState, canary: tuple[float, float], stable: tuple[float, float]) -> CriterionState:
    (c_sum, c_rows), (s_sum, s_rows) = canary, stable
    return replace(
        state,
        canary_events=state.canary_events + c_sum,
        canary_trials=state.canary_trials + c_rows,
        canary_squares=state.canary_squares + (c_sum * c_sum / c_rows if c_rows > 0 else 0.0),
        stable_events=state.stable_events + s_sum,
        stable_trials=state.stable_trials + s_rows,
        stable_squares=state.stable_squares + (s_sum * s_sum / s_rows if s_rows > 0 else 0.0),
        ticks=state.ticks + 1.0,
    )


def _clean(total: float, rows: float) -> tuple[float, float]:
    # Negative increments can only come from a mishandled counter reset: treat them as no data.
    rows = max(rows, 0.0)
    return (max(total, 0.0), rows) if rows > 0 else (0.0, 0.0)


def _canary_variance(state: CriterionState) -> float:
    return row_variance(state.canary_events, state.canary_trials, state.canary_squares, state.ticks)


def _comparison_variance(state: CriterionState) -> float:
    stable = row_variance(state.stable_events, state.stable_trials, state.stable_squares, state.ticks)
    return _canary_variance(state) * state.canary_spread + stable * state.stable_spread


def standardised_radius(alpha: float, units: float) -> float:
    """The standardised score at which the one-sided mixture e-value reaches 1/alpha after `units` rows.

    The same e-value decides Fail, so an interval end at (score -/+ radius * scale) / weight excludes 0
    exactly when the test rejects (a Fail, unless the canary already passed).

    >>> round(standardised_radius(0.05, 200.0), 2)   # vs 1.645 * sqrt(200) = 23.3 for a single look
    39.12
    """
    threshold = math.log(1.0 / alpha)

    def excess(score: float) -> float:
        return float(one_sided_log_e_value(score, units, MIXTURE_RHO)) - threshold

    high = math.sqrt(units + MIXTURE_RHO) * 4.0 + 10.0
    while excess(high) < 0:
        high *= 2.0
    return float(brentq(excess, 0.0, high, xtol=1e-9))


def _with_evidence(
    state: CriterionState, variance: float, units: float, alpha: float, offset: float = 0.0
) -> CriterionState:
    """Fold the one-sided e-value of `score` (in standardised units) into the running p-value, and this
    tick's interval ends (shifted by `offset`, the bound a bound test is centred on) into the running ones."""
    if variance <= 0 or units <= 0:
        return state
    scale = math.sqrt(variance / units)
    log_e = float(one_sided_log_e_value(state.score / scale, units, MIXTURE_RHO))
    radius = standardised_radius(alpha, units) * scale / state.weight
    estimate = state.score / state.weight + offset
    lower, upper = estimate - radius, estimate + radius
    return replace(
        state,
        p_value=running_p_value(state.p_value, log_e),
        lower=lower if state.lower is None else max(state.lower, lower),
        upper=upper if state.upper is None else min(state.upper, upper),
    )


def update_mae_bound(
    state: CriterionState, canary_sum: float, canary_rows: float, bound: float, alpha: float
) -> CriterionState:
    """Add one tick to "the canary's MAE is at most `bound`"."""
    total, rows = _clean(canary_sum, canary_rows)
    if rows <= 0:
        return state
    updated = _add(state, (total, rows), (0.0, 0.0))
    updated = replace(updated, score=updated.score + total - bound * rows, weight=updated.weight + rows)
    return _with_evidence(updated, _canary_variance(updated) * updated.weight, updated.weight, alpha, bound)


def update_mae_comparison(
    state: CriterionState, canary_sum: float, canary_rows: float, stable_sum: float, stable_rows: float, alpha: float
) -> CriterionState:
    """Add one tick to "the canary's MAE is at most stable's" (the Fail test) and to the estimate."""
    canary, stable = _clean(canary_sum, canary_rows), _clean(stable_sum, stable_rows)
    if canary[1] <= 0 or stable[1] <= 0:
        return state  # nothing to compare this tick; keeping it out keeps the tick count honest
    weight = canary[1] * stable[1] / (canary[1] + stable[1])
    difference = canary[0] / canary[1] - stable[0] / stable[1]
    updated = replace(
        _add(state, canary, stable),
        score=state.score + weight * difference,
        weight=state.weight + weight,
        canary_spread=state.canary_spread + weight * weight / canary[1],
        stable_spread=state.stable_spread + weight * weight / stable[1],
    )
    units = updated.canary_spread + updated.stable_spread
    return _with_evidence(updated, _comparison_variance(updated), units, alpha)


def _judgement(state: CriterionState, estimate: float, harm_above: float, limit: float) -> Judgement:
    if state.weight <= 0 or state.lower is None or state.upper is None:
        return Judgement(Verdict.INCONCLUSIVE, estimate, (-math.inf, math.inf), limit, state.p_value, 1.0)
    interval = (state.lower, state.upper)
    e_value = 1.0 / state.p_value if state.p_value > 0 else math.inf
    return Judgement(verdict_for(interval, harm_above, limit), estimate, interval, limit, state.p_value, e_value)


def judge_mae_bound(state: CriterionState, bound: float) -> Judgement:
    """Canary MAE against `bound`; estimate and interval are the canary's MAE itself."""
    estimate = state.score / state.weight + bound if state.weight > 0 else 0.0
    j = _judgement(state, estimate, bound, bound)
    return replace(j, interval=(max(j.interval[0], 0.0), j.interval[1]))


def judge_mae_comparison(state: CriterionState, limit: float) -> Judgement:
    """Stratified difference canary - stable MAE against the tolerated difference `limit`."""
    return _judgement(state, state.score / state.weight if state.weight > 0 else 0.0, 0.0, limit)


def describe_mae(state: CriterionState, j: Judgement, comparison: bool, level: float) -> str:
    """E.g. "canary mean absolute error 0.600 vs stable 0.500, difference +0.100, 95% always-valid interval
    [-0.008, +0.208], tolerated +0.050: rollback" (three significant digits of the larger MAE)."""
    canary = state.canary_events / state.canary_trials if state.canary_trials else None
    stable = state.stable_events / state.stable_trials if state.stable_trials else None
    scale = max(canary or 0.0, stable or 0.0, abs(j.limit))
    digits = max(0, 2 - math.floor(math.log10(scale))) if scale > 0 else 3
    head = f"canary mean absolute error {_num(canary, digits)} vs stable {_num(stable, digits)}"
    word = {Verdict.FAIL: "rollback", Verdict.PASS: "promote", Verdict.INCONCLUSIVE: "keep collecting"}[j.verdict]
    low, high = j.interval
    if comparison:
        return (
            f"{head}, difference {j.estimate:+.{digits}f}, {level:.0%} always-valid interval "
            f"[{low:+.{digits}f}, {high:+.{digits}f}], tolerated {j.limit:+.{digits}f}: {word}"
        )
    return (
        f"{head}, {level:.0%} always-valid interval for canary [{low:.{digits}f}, {high:.{digits}f}], "
        f"limit {j.limit:.{digits}f}: {word}"
    )


def _num(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"
