"""predictionShift: has the distribution of predicted classes changed between the versions?

Under random routing both versions see the same inputs, so any difference in what they predict is the
model's doing (or a routing / feature-pipeline bug). Per class j and tick, conditional on the tick's
count of class j over both versions (T) and the realised canary share r, the canary's count has mean
r T under "same distribution"; score_j = sum (c_j - r T) is tested with a two-sided normal mixture.
Classes are combined by Bonferroni over the classes seen so far (their running p-values times K).

The effect size in status is the Jensen-Shannon divergence (base 2, between 0 and 1) of the
cumulative class shares. `max` bounds it: Fail needs the test to reject *and* JS above max; Pass
needs the always-valid upper bound of the total variation distance below max (JS <= TV in bits).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from modelrollout.analysis.counts import Judgement
from modelrollout.analysis.sequential import confidence_radius, mixture_rho, running_p_value, two_sided_log_e_value
from modelrollout.analysis.state import CriterionState
from modelrollout.analysis.types import Verdict


def update_shift(state: CriterionState, canary: Mapping[str, float], stable: Mapping[str, float]) -> CriterionState:
    n_c, n_s = sum(canary.values()), sum(stable.values())
    if n_c <= 0 or n_s <= 0:
        return state
    share = n_c / (n_c + n_s)
    rho = mixture_rho(0.05, one_sided=False)
    classes = dict(state.classes)
    for label in sorted(set(canary) | set(stable) | set(classes)):
        c, s = max(canary.get(label, 0.0), 0.0), max(stable.get(label, 0.0), 0.0)
        score, variance, total_c, total_s, p_value = classes.get(label, (0.0, 0.0, 0.0, 0.0, 1.0))
        score += (1.0 - share) * c - share * s
        variance += share * (1.0 - share) * (c + s)
        p_value = running_p_value(p_value, float(two_sided_log_e_value(score, variance, rho)))
        classes[label] = (score, variance, total_c + c, total_s + s, p_value)
    return CriterionState(
        weight=state.weight + n_c * n_s / (n_c + n_s),
        canary_trials=state.canary_trials + n_c,
        stable_trials=state.stable_trials + n_s,
        p_value=min(1.0, len(classes) * min(entry[4] for entry in classes.values())),
        classes=classes,
    )


def jensen_shannon(canary: Mapping[str, float], stable: Mapping[str, float]) -> float:
    """JS divergence in bits between two count vectors (0 = identical, 1 = disjoint).

    >>> jensen_shannon({"a": 10, "b": 0}, {"a": 0, "b": 5}), jensen_shannon({"a": 3}, {"a": 7})
    (1.0, 0.0)
    """
    labels = sorted(set(canary) | set(stable))
    p = np.array([canary.get(k, 0.0) for k in labels], dtype=np.float64)
    q = np.array([stable.get(k, 0.0) for k in labels], dtype=np.float64)
    if p.sum() <= 0 or q.sum() <= 0:
        return 0.0
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2.0

    def kl(a: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / m[mask])))

    return max(0.0, 0.5 * kl(p) + 0.5 * kl(q))


def judge_shift(state: CriterionState, bound: float, alpha: float) -> Judgement:
    canary = {label: entry[2] for label, entry in state.classes.items()}
    stable = {label: entry[3] for label, entry in state.classes.items()}
    divergence = jensen_shannon(canary, stable)
    if state.weight <= 0:
        return Judgement(Verdict.INCONCLUSIVE, divergence, (0.0, 1.0), bound, state.p_value, 1.0)
    per_class_alpha = alpha / max(len(state.classes), 1)
    upper_tv = 0.0
    for score, variance, _, _, _ in state.classes.values():
        upper_tv += abs(score) + float(confidence_radius(variance, per_class_alpha))
    upper_tv = min(1.0, 0.5 * upper_tv / state.weight)
    if state.p_value <= alpha and divergence > bound:
        verdict = Verdict.FAIL
    elif upper_tv < bound:
        verdict = Verdict.PASS
    else:
        verdict = Verdict.INCONCLUSIVE
    e_value = 1.0 / state.p_value if state.p_value > 0 else math.inf
    return Judgement(verdict, divergence, (0.0, upper_tv), bound, state.p_value, e_value)


def describe_shift(state: CriterionState, j: Judgement, level: float) -> str:
    verdict = {Verdict.FAIL: "rollback", Verdict.PASS: "promote", Verdict.INCONCLUSIVE: "keep collecting"}[j.verdict]
    return (
        f"prediction classes: Jensen-Shannon divergence {j.estimate:.3f} (limit {j.limit:g}), "
        f"{level:.0%} always-valid upper bound {j.interval[1]:.3f}, change test p={j.p_value:.3g}: {verdict}"
    )
