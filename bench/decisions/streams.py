"""Simulated request streams for the decision benchmark: what each version sees, tick by tick.

Every cell yields, per rollout and tick, the counts a rule compares (canary and stable events and
trials, e.g. errors among requests, wrong answers among labels, requests slower than 100 ms), the canary's
requests (for the 200-request minimum) and the peers' threshold check for that tick's window.
All arrays have shape (rollouts, ticks); 400 requests per tick, 40 ticks = 16,000 requests.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

TICKS, REQUESTS_PER_TICK = 40, 400
ERROR_THRESHOLD = 0.03  # peers: canary error rate above 3% in a window is a failed check
MAE_THRESHOLD = 0.6  # peers: canary mean absolute error above 0.6 in a window (stable's is 0.5)
ACCURACY_THRESHOLD = 0.90  # peers: accuracy of the window's labels below 90% is a failed check
P99_THRESHOLD = 0.25  # peers: canary p99 above 250 ms in a window (Flagger request-duration style)
LATENCY_SLO = 0.1  # the engine compares the share of requests slower than 100 ms with stable's
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, math.inf)  # Prometheus defaults


@dataclass(frozen=True)
class Cell:
    canary_events: np.ndarray
    canary_trials: np.ndarray
    stable_events: np.ndarray
    stable_trials: np.ndarray
    canary_requests: np.ndarray
    window_fails: np.ndarray  # the peers' per-window threshold check failed
    # An absolute bound the engine also checks: (canary events, canary trials, allowed share), e.g. p99 <= 250 ms
    # is "at most 1% of canary requests slower than 250 ms".
    guardrail: tuple[np.ndarray, np.ndarray, float] | None = None
    # "counts": events among trials; "mae": events are sums of absolute errors over `trials` labelled rows.
    kind: str = "counts"


Shape = tuple[np.ndarray, np.ndarray]  # (canary share per tick, base rate per tick)


def _full(runs: int, value: float | np.ndarray) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, dtype=float), (runs, TICKS)).copy()


def stationary(rng: np.random.Generator, runs: int) -> Shape:
    return _full(runs, 0.25), _full(runs, 0.01)


def ramped(rng: np.random.Generator, runs: int) -> Shape:
    # Share 5% -> 10% -> 25% -> 50% while the base rate climbs 0.5% -> 2%: Simpson's paradox for cumulative tests.
    return _full(runs, np.repeat([0.05, 0.10, 0.25, 0.50], TICKS // 4)), _full(runs, np.linspace(0.005, 0.02, TICKS))


def jump(rng: np.random.Generator, runs: int) -> Shape:
    return _full(runs, 0.25), _full(runs, np.where(np.arange(TICKS) < TICKS // 2, 0.01, 0.03))


def drift(rng: np.random.Generator, runs: int) -> Shape:
    return _full(runs, 0.25), _full(runs, np.linspace(0.005, 0.025, TICKS))


def bursty(rng: np.random.Generator, runs: int) -> Shape:
    # Errors come in bursts that hit both versions: the tick's base rate is 1% times a Gamma(0.5) factor.
    return _full(runs, 0.25), np.minimum(0.01 * rng.gamma(0.5, 2.0, (runs, TICKS)), 0.5)


ERROR_STREAMS: dict[str, Callable[[np.random.Generator, int], Shape]] = {
    "stationary": stationary,
    "ramped share + rising base": ramped,
    "base jumps 1%->3%": jump,
    "base drifts 0.5%->2.5%": drift,
    "bursty errors": bursty,
}


def error_cell(rng: np.random.Generator, shape: Shape, effect: float) -> Cell:
    """Errors among requests; the canary's error rate is the base rate + effect."""
    share, base = shape
    n_c = rng.binomial(REQUESTS_PER_TICK, share).astype(float)
    n_s = REQUESTS_PER_TICK - n_c
    e_c = rng.binomial(n_c.astype(int), np.minimum(base + effect, 1.0)).astype(float)
    e_s = rng.binomial(n_s.astype(int), base).astype(float)
    return Cell(e_c, n_c, e_s, n_s, n_c, e_c / np.maximum(n_c, 1.0) > ERROR_THRESHOLD)


def _delayed(rng: np.random.Generator, counts: np.ndarray, delay_p: np.ndarray) -> np.ndarray:
    """Spread each tick's labels over the following ticks; labels due after the last tick never arrive."""
    spread = rng.multinomial(counts.astype(np.int64), delay_p)  # (runs, ticks, delays)
    arrived = np.zeros(counts.shape)
    for delay in range(delay_p.size):
        arrived[:, delay + 1 :] += spread[:, : TICKS - delay - 1, delay]
    return arrived


def accuracy_cell(rng: np.random.Generator, runs: int, drop: float) -> Cell:
    """Labels for 30% of predictions, arriving 1-8 ticks later (mostly 1-3); stable accuracy 95%."""
    n_c = rng.binomial(REQUESTS_PER_TICK, np.full((runs, TICKS), 0.25)).astype(float)
    n_s = REQUESTS_PER_TICK - n_c
    delay_p = _label_delays()
    arrivals = []
    for n, wrong_rate in ((n_c, 0.05 + drop), (n_s, 0.05)):
        labelled = rng.binomial(n.astype(int), 0.3)
        wrong = rng.binomial(labelled, wrong_rate)
        arrivals.append((_delayed(rng, wrong, delay_p), _delayed(rng, labelled - wrong, delay_p)))
    (w_c, r_c), (w_s, r_s) = arrivals
    labels_c = w_c + r_c
    window_accuracy = 1.0 - w_c / np.maximum(labels_c, 1.0)
    return Cell(w_c, labels_c, w_s, w_s + r_s, n_c, (labels_c > 0) & (window_accuracy < ACCURACY_THRESHOLD))


def _label_delays() -> np.ndarray:
    delay_p = 0.6 ** np.arange(1, 9)
    return np.asarray(delay_p / delay_p.sum())


def mae_cell(rng: np.random.Generator, runs: int, increase: float) -> Cell:
    """A regressor: labels for 30% of predictions, 1-8 ticks late; absolute errors exponential with mean 0.5
    (stable) and 0.5 x (1 + increase) (canary), so each tick exports a Gamma(labels, MAE) error sum."""
    n_c = rng.binomial(REQUESTS_PER_TICK, np.full((runs, TICKS), 0.25)).astype(float)
    n_s = REQUESTS_PER_TICK - n_c
    sums, labels = [], []
    for n, mae in ((n_c, 0.5 * (1.0 + increase)), (n_s, 0.5)):
        arrived = _delayed(rng, rng.binomial(n.astype(int), 0.3), _label_delays())
        sums.append(np.where(arrived > 0, rng.gamma(np.maximum(arrived, 1.0), mae), 0.0))
        labels.append(arrived)
    window_mae = sums[0] / np.maximum(labels[0], 1.0)
    window_fails = (labels[0] > 0) & (window_mae > MAE_THRESHOLD)
    return Cell(sums[0], labels[0], sums[1], labels[1], n_c, window_fails, kind="mae")


def _bucket_probabilities(slowdown: float, tail: float) -> np.ndarray:
    """Per-bucket probabilities: lognormal latency (median 50 ms, sigma 0.5) x slowdown, plus a `tail` share
    of requests around 400 ms (sigma 0.3)."""
    bounds = np.log(np.array(BUCKETS[:-1]))
    main = norm.cdf((bounds - math.log(0.05 * slowdown)) / 0.5)
    slow = norm.cdf((bounds - math.log(0.4)) / 0.3)
    cumulative = np.append((1.0 - tail) * main + tail * slow, 1.0)
    return np.diff(cumulative, prepend=0.0)


def latency_cell(rng: np.random.Generator, runs: int, slowdown: float, tail: float) -> Cell:
    n_c = rng.binomial(REQUESTS_PER_TICK, np.full((runs, TICKS), 0.25))
    n_s = REQUESTS_PER_TICK - n_c
    canary = rng.multinomial(n_c, _bucket_probabilities(slowdown, tail))
    stable = rng.multinomial(n_s, _bucket_probabilities(1.0, 0.0))
    slo, p99_bound = BUCKETS.index(LATENCY_SLO), BUCKETS.index(P99_THRESHOLD)
    slow_c = canary[..., slo + 1 :].sum(axis=-1).astype(float)
    slow_s = stable[..., slo + 1 :].sum(axis=-1).astype(float)
    # histogram_quantile(0.99) exceeds a bucket bound exactly when more than 1% of the window is above it.
    above_p99_bound = canary[..., p99_bound + 1 :].sum(axis=-1).astype(float)
    p99_fails = above_p99_bound > 0.01 * n_c
    trials = n_c.astype(float)
    return Cell(slow_c, trials, slow_s, n_s.astype(float), trials, p99_fails, (above_p99_bound, trials, 0.01))
