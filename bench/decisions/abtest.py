"""A/B experiments in the decision benchmark (part 4): how often a winner is declared when there is none,
and how soon a real lift is found, with `modelrollout.analysis.abtest` looked at after every tick.

Each experiment splits ticks of 400 requests 50/50 at random between A and B (each request's arm is a fair coin,
so the split itself is noisy, as it is with replicas or a gateway), each request has an outcome, and after every
tick the cumulative totals go through the same interval the A/B strategy reads (`interval_arrays`, vectorised
over experiments; `assess` is its one-experiment form). Beside it, the test a team writes by hand: a two-sample
z-test (Welch's t at these sizes) at 95%, also looked at after every tick - it declares the first time it
crosses, as a dashboard watcher would.

Outcomes: a conversion (0/1) at 10% in A, and for a numeric outcome, revenue per request: 0 for 90% of requests
and a log-normal amount for the 10% that buy (mean 50), so the outcome is heavily skewed as real revenue is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modelrollout.analysis.abtest import ABConfig, interval_arrays

TICK = 400
TICKS = 200  # 80,000 requests per experiment
HORIZONS = (5_000, 10_000, 20_000, 40_000, 80_000)
BASE_RATE = 0.10


@dataclass(frozen=True)
class Arm:
    rate: float  # share of requests with a purchase / conversion
    amount: float  # mean purchase (numeric outcomes only); 1.0 with `binary`


def _outcomes(rng: np.random.Generator, n: np.ndarray, arm: Arm, binary: bool) -> tuple[np.ndarray, np.ndarray]:
    """(sum, sum of squares) of the outcomes of n requests per experiment."""
    buyers = rng.binomial(n, arm.rate)
    if binary:
        return buyers.astype(float), buyers.astype(float)
    # Log-normal purchases with sigma 1: mean exp(mu + 1/2) = amount.
    mu = np.log(arm.amount) - 0.5
    most = int(buyers.max()) if buyers.size else 0
    draws = rng.lognormal(mu, 1.0, size=(buyers.size, max(most, 1)))
    mask = np.arange(draws.shape[1])[None, :] < buyers[:, None]
    return (draws * mask).sum(axis=1), (draws * draws * mask).sum(axis=1)


def first_declared(runs: int, a: Arm, b: Arm, binary: bool, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Requests until the first winner per experiment (inf: none in 80,000): always-valid, z-test at every look;
    and which arm the always-valid interval declared (1: B, -1: A, 0: none)."""
    config = ABConfig(binary=binary)
    totals = np.zeros((6, runs))  # n, sum, squares of A then B
    valid, naive, side = np.full(runs, np.inf), np.full(runs, np.inf), np.zeros(runs)
    for t in range(TICKS):
        nb = rng.binomial(TICK, config.split, runs)
        for offset, n, arm in ((0, TICK - nb, a), (3, nb, b)):
            total, squares = _outcomes(rng, n, arm, binary)
            totals[offset:offset + 3] += np.stack([n, total, squares])
        estimate, radius = interval_arrays(*totals, config)
        enough = np.minimum(totals[0], totals[3]) >= config.min_samples
        declared = enough & ((estimate - radius > 0) | (estimate + radius < 0)) & np.isinf(valid)
        side = np.where(declared, np.sign(estimate), side)
        valid = np.where(declared, (t + 1) * TICK, valid)
        naive = np.where(np.isinf(naive) & (np.abs(_z(totals)) > 1.96), (t + 1) * TICK, naive)
    return valid, naive, side


def _z(totals: np.ndarray) -> np.ndarray:
    an, at, aq, bn, bt, bq = totals
    with np.errstate(divide="ignore", invalid="ignore"):
        var_a = np.maximum(aq - at * at / an, 0.0) / np.maximum(an - 1, 1)
        var_b = np.maximum(bq - bt * bt / bn, 0.0) / np.maximum(bn - 1, 1)
        se = np.sqrt(var_a / an + var_b / bn)
        return np.where(se > 0, (bt / bn - at / an) / se, 0.0)


def _share(done: np.ndarray, horizon: int) -> str:
    return f"{(done <= horizon).mean():.1%}"


def _median(done: np.ndarray) -> str:
    found = done[np.isfinite(done)]
    return f"{np.median(found):,.0f}" if found.size else "-"


def abtest_table(runs: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    lines = ["| outcome | experiment | test | " + " | ".join(f"declared by {h:,}" for h in HORIZONS)
             + " | median requests to the declaration | wrong winner |",
             "|---|---|---|" + "---|" * (len(HORIZONS) + 2)]
    cases = (
        ("conversion 0/1", True, "A/A at 10%", Arm(BASE_RATE, 1.0), Arm(BASE_RATE, 1.0), 0),
        ("conversion 0/1", True, "B +2 pts (10% -> 12%)", Arm(BASE_RATE, 1.0), Arm(BASE_RATE + 0.02, 1.0), 1),
        # A model's accuracy from feedback labels: a proportion near 1, where an uncentred estimator's
        # variance is ten times the outcome's own (the interval three times too wide).
        ("accuracy 0/1", True, "A/A at 90%", Arm(0.90, 1.0), Arm(0.90, 1.0), 0),
        ("accuracy 0/1", True, "B +2 pts (90% -> 92%)", Arm(0.90, 1.0), Arm(0.92, 1.0), 1),
        ("revenue, skewed", False, "A/A (mean 5.0 per request)", Arm(BASE_RATE, 50.0), Arm(BASE_RATE, 50.0), 0),
        ("revenue, skewed", False, "B +20% (5.0 -> 6.0 per request)", Arm(BASE_RATE, 50.0), Arm(0.12, 50.0), 1),
    )
    for outcome, binary, name, a, b, truth in cases:
        valid, naive, side = first_declared(runs, a, b, binary, rng)
        wrong = ((side != 0) & (side != truth)).mean() if truth else (side != 0).mean()
        for test, done, wrong_text in (("always-valid interval (modelrollout)", valid, f"{wrong:.1%}"),
                                       ("z-test at every look", naive, "")):
            cells = " | ".join(_share(done, h) for h in HORIZONS)
            lines.append(f"| {outcome} | {name} | {test} | {cells} | {_median(done)} | {wrong_text} |")
    return "\n".join(lines)
