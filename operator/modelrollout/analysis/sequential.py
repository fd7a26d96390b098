"""Always-valid statistics: e-processes and confidence sequences, usable at every look.

Everything works on numpy arrays (the benchmark runs thousands of rollouts at once) and on plain
floats (the engine runs one rollout). An *e-process* is a running product whose expectation under
"no harm" never exceeds 1; by Ville's inequality it reaches 1/alpha with probability at most alpha,
however many times it is looked at. That is what keeps false rollbacks below alpha.

The rollback test for counts conditions on each tick. Given a tick's total events E (canary plus
stable errors) and the realised canary share r of its requests, "same error rate in this tick"
means the canary's errors are drawn from E like a hypergeometric sample, whatever the rate is and
however it moved since the last tick. Against an alternative "the canary's odds of an error are q
times the stable's", the canary's expected share of the events is theta(q) = r q / (r q + 1 - r).
The per-tick likelihood ratio of Binomial(E, theta) to Binomial(E, r) has expectation exactly 1
under Binomial(E, r), and at most 1 under the hypergeometric (Hoeffding 1963: sampling without
replacement is smaller in convex order) and under any canary rate at or below stable's (monotone
likelihood ratio). Multiplying ticks and averaging over a fixed grid of q keeps that property.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy.special import log_ndtr, logsumexp

from modelrollout.analysis.inversion import ODDS_STEPS, ODDS_WEIGHTS, STEP

FloatArray = npt.NDArray[np.float64]

# Odds ratios the rollback test looks for and their prior weights, fixed in advance. A +1 point change
# on a 1% base is q = 2, +2 points q = 3: the weights favour the changes the benchmark targets. They are
# steps of the ratio lattice of inversion.py (1.54, 2, 3.08, 5.19), so the same test, asked for every ratio,
# gives the interval printed beside the verdict.
ODDS_RATIOS: tuple[float, ...] = tuple(math.exp(STEP * j) for j in ODDS_STEPS)

# The confidence sequences below are tightest near this much variance (in events), where most
# decisions are made in practice (a few thousand requests at a 1% rate).
OPTIMAL_VARIANCE = 30.0


def alternative_share(null_share: npt.ArrayLike, odds_ratio: float) -> FloatArray:
    """theta(q) = p q / (p q + 1 - p): a share whose odds are q times the odds of p.

    >>> float(alternative_share(0.25, 3.0))
    0.5
    """
    p = np.asarray(null_share, dtype=np.float64)
    return np.asarray(p * odds_ratio / (p * odds_ratio + 1.0 - p), dtype=np.float64)


def tick_log_likelihood_ratios(
    successes: npt.ArrayLike, trials: npt.ArrayLike, null_share: npt.ArrayLike
) -> FloatArray:
    """Log likelihood ratio of one tick for every odds ratio of ODDS_RATIOS (last axis).

    successes of trials Bernoulli draws, null probability null_share. A tick with no trials or a
    degenerate share (no canary or no stable requests) carries no information and returns zeros.

    >>> [round(float(x), 3) for x in tick_log_likelihood_ratios(2, 4, 0.25)]  # 2 of 4 errors, canary share 25%
    [0.358, 0.494, 0.575, 0.427]
    """
    s = np.asarray(successes, dtype=np.float64)[..., None]
    n = np.asarray(trials, dtype=np.float64)[..., None]
    p = np.asarray(null_share, dtype=np.float64)[..., None]
    informative = (n > 0) & (p > 0) & (p < 1)
    p_safe = np.where(informative, p, 0.5)
    s = np.clip(s, 0.0, n)  # an inconsistent scrape (more errors than requests) must not explode the LR
    q = np.asarray(ODDS_RATIOS)
    theta = p_safe * q / (p_safe * q + 1.0 - p_safe)
    log_lr = s * np.log(theta / p_safe) + (n - s) * np.log((1.0 - theta) / (1.0 - p_safe))
    return np.asarray(np.where(informative, log_lr, 0.0), dtype=np.float64)


def mixture_log_e_value(cumulative_log_lr: npt.ArrayLike) -> FloatArray:
    """log of sum_q w_q * exp(L_q): the e-process from per-odds-ratio cumulative log LRs (last axis)."""
    return np.asarray(logsumexp(np.asarray(cumulative_log_lr), axis=-1, b=np.asarray(ODDS_WEIGHTS)))


def mixture_rho(alpha: float, one_sided: bool, optimal_variance: float = OPTIMAL_VARIANCE) -> float:
    """Mixing variance rho of the normal-mixture boundary, tuned to be tightest at optimal_variance.

    Howard, Ramdas, McAuliffe, Sekhon (Ann. Statist. 2021), eq. for the two-sided boundary, with
    a = 2 alpha for one-sided use.
    """
    log_inv = math.log(1.0 / (2.0 * alpha if one_sided else alpha))
    return optimal_variance / (2.0 * log_inv + math.log(1.0 + 2.0 * log_inv))


def two_sided_log_e_value(score: npt.ArrayLike, variance: npt.ArrayLike, rho: float) -> FloatArray:
    """ln M for M = sqrt(rho / (V + rho)) exp(S^2 / (2 (V + rho))): a Gaussian mixture over the drift."""
    s = np.asarray(score, dtype=np.float64)
    v = np.asarray(variance, dtype=np.float64)
    return np.asarray(0.5 * np.log(rho / (v + rho)) + s * s / (2.0 * (v + rho)), dtype=np.float64)


def one_sided_log_e_value(score: npt.ArrayLike, variance: npt.ArrayLike, rho: float) -> FloatArray:
    """ln M of the one-sided normal mixture (only positive drifts): the two-sided one times 2 Phi(S/sqrt(V+rho))."""
    s = np.asarray(score, dtype=np.float64)
    v = np.asarray(variance, dtype=np.float64)
    log_phi = log_ndtr(s / np.sqrt(v + rho))
    return np.asarray(math.log(2.0) + two_sided_log_e_value(s, v, rho) + log_phi, dtype=np.float64)


def confidence_radius(variance: npt.ArrayLike, alpha: float, optimal_variance: float = OPTIMAL_VARIANCE) -> FloatArray:
    """Half-width r with |S - E S| <= r at every look with probability >= 1 - alpha (two-sided).

    Solves two_sided_log_e_value(r, V, rho) = ln(1/alpha):
    r = sqrt((V + rho) (2 ln(1/alpha) + ln((V + rho) / rho))).

    >>> round(float(confidence_radius(100.0, 0.05)), 2)  # vs 1.96 * 10 = 19.6 for a single look
    31.07
    """
    return radius_for_rho(variance, alpha, mixture_rho(alpha, one_sided=False, optimal_variance=optimal_variance))


def radius_for_rho(variance: npt.ArrayLike, alpha: float, rho: npt.ArrayLike) -> FloatArray:
    """confidence_radius with the mixing variance given (one per element: rho is linear in the optimal variance)."""
    v = np.maximum(np.asarray(variance, dtype=np.float64), 0.0)
    r = np.asarray(rho, dtype=np.float64)
    return np.asarray(np.sqrt((v + r) * (2.0 * math.log(1.0 / alpha) + np.log((v + r) / r))))


def running_p_value(previous: float, log_e_value: float) -> float:
    """min over looks of 1/E, never above 1: once small, it stays small (so Fail verdicts persist)."""
    return min(previous, 1.0, math.exp(-log_e_value) if log_e_value < 700 else 0.0)
