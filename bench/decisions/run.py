"""Decision-quality benchmark: how often each rule rolls back a good canary, and how fast it catches a bad one.

Simulates rollouts on request streams (400 requests per tick, 40 ticks = 16,000 requests) and runs, side by
side, the project's engine (the same per-tick conditional e-process `modelrollout.analysis.sequential`
provides, vectorised over rollouts), a threshold rule as Flagger and Argo Rollouts apply it, and a
fixed-sample z-test checked at every tick. Every rule rolls back after `--failure-limit` consecutive failed
ticks and waits for 200 canary requests, as the operator does.

    .venv/bin/python bench/decisions/run.py            # 2,000 rollouts per cell, writes docs/analysis.md table
    .venv/bin/python bench/decisions/run.py --quick    # 200 per cell, prints only
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy.stats import norm

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "operator"))
from modelrollout.analysis.sequential import mixture_log_e_value, tick_log_likelihood_ratios

TICKS, REQUESTS_PER_TICK, MIN_CANARY_REQUESTS, ALPHA = 40, 400, 200, 0.05
THRESHOLD_RULE = 0.03  # as in the peers' docs: canary error rate above 3% in a window is a failed check
EFFECTS = (0.0, 0.005, 0.01, 0.02, 0.05)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "analysis.md"
Stream = tuple[np.ndarray, np.ndarray]  # (canary share per tick, base error rate per tick), shape (R, T)


def stationary(rng: np.random.Generator, runs: int) -> Stream:
    return np.full((runs, TICKS), 0.25), np.full((runs, TICKS), 0.01)


def ramped(rng: np.random.Generator, runs: int) -> Stream:
    # Share 5% -> 10% -> 25% -> 50% while the base rate climbs 0.5% -> 2%: Simpson's paradox for cumulative tests.
    share = np.repeat(np.array([0.05, 0.10, 0.25, 0.50]), TICKS // 4)
    return np.broadcast_to(share, (runs, TICKS)).copy(), np.broadcast_to(
        np.linspace(0.005, 0.02, TICKS), (runs, TICKS)
    ).copy()


def jump(rng: np.random.Generator, runs: int) -> Stream:
    base = np.where(np.arange(TICKS) < TICKS // 2, 0.01, 0.03)
    return np.full((runs, TICKS), 0.25), np.broadcast_to(base, (runs, TICKS)).copy()


def drift(rng: np.random.Generator, runs: int) -> Stream:
    return np.full((runs, TICKS), 0.25), np.broadcast_to(np.linspace(0.005, 0.025, TICKS), (runs, TICKS)).copy()


def bursty(rng: np.random.Generator, runs: int) -> Stream:
    # Errors come in bursts that hit both versions: the tick's base rate is 1% times a Gamma(0.5) factor.
    return np.full((runs, TICKS), 0.25), np.minimum(0.01 * rng.gamma(0.5, 2.0, (runs, TICKS)), 0.5)


STREAMS: dict[str, Callable[[np.random.Generator, int], Stream]] = {
    "stationary": stationary,
    "ramped share + rising base": ramped,
    "base jumps 1%->3%": jump,
    "base drifts 0.5%->2.5%": drift,
    "bursty errors": bursty,
}


def simulate(rng: np.random.Generator, stream: Stream, effect: float) -> tuple[np.ndarray, ...]:
    share, base = stream
    n_c = rng.binomial(REQUESTS_PER_TICK, share)
    n_s = REQUESTS_PER_TICK - n_c
    e_c = rng.binomial(n_c, np.minimum(base + effect, 1.0))
    e_s = rng.binomial(n_s, base)
    return n_c.astype(float), n_s.astype(float), e_c.astype(float), e_s.astype(float)


def engine_fails(n_c: np.ndarray, n_s: np.ndarray, e_c: np.ndarray, e_s: np.ndarray) -> np.ndarray:
    log_lr = tick_log_likelihood_ratios(e_c, e_c + e_s, n_c / (n_c + n_s))
    log_e = mixture_log_e_value(np.cumsum(log_lr, axis=1))
    return np.maximum.accumulate(log_e >= math.log(1 / ALPHA), axis=1)  # running p-value: a Fail persists


def threshold_fails(n_c: np.ndarray, n_s: np.ndarray, e_c: np.ndarray, e_s: np.ndarray) -> np.ndarray:
    return e_c / np.maximum(n_c, 1.0) > THRESHOLD_RULE


def z_test_fails(n_c: np.ndarray, n_s: np.ndarray, e_c: np.ndarray, e_s: np.ndarray) -> np.ndarray:
    nc, ns, ec, es = (np.cumsum(x, axis=1) for x in (n_c, n_s, e_c, e_s))
    pooled = (ec + es) / (nc + ns)
    se = np.sqrt(np.maximum(pooled * (1 - pooled) * (1 / nc + 1 / ns), 1e-12))
    return (ec / nc - es / ns) / se > norm.ppf(1 - ALPHA)


RULES = {
    "engine (per-tick e-process)": engine_fails,
    "threshold 3% per window": threshold_fails,
    "z-test every tick": z_test_fails,
}


def rollback_tick(fails: np.ndarray, n_c: np.ndarray, failure_limit: int) -> np.ndarray:
    """First tick at which `failure_limit` consecutive failed checks end, after 200 canary requests; else -1."""
    fails = fails & (np.cumsum(n_c, axis=1) >= MIN_CANARY_REQUESTS)
    run = np.zeros(fails.shape[0], dtype=int)
    decided = np.full(fails.shape[0], -1)
    for t in range(fails.shape[1]):
        run = np.where(fails[:, t], run + 1, 0)
        decided = np.where((decided < 0) & (run >= failure_limit), t, decided)
    return decided


def run_cells(runs: int, failure_limit: int, seed: int) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    rows: list[dict[str, object]] = []
    for stream_name, make in STREAMS.items():
        for effect in EFFECTS:
            data = simulate(rng, make(rng, runs), effect)
            for rule_name, rule in RULES.items():
                tick = rollback_tick(rule(*data), data[0], failure_limit)
                requests = (tick[tick >= 0] + 1) * REQUESTS_PER_TICK
                rows.append(
                    {
                        "stream": stream_name,
                        "effect": effect,
                        "rule": rule_name,
                        "rate": float(np.mean(tick >= 0)),
                        "median": float(np.median(requests)) if requests.size else math.nan,
                        "p90": float(np.percentile(requests, 90)) if requests.size else math.nan,
                    }
                )
    return rows


def table(rows: list[dict[str, object]]) -> str:
    lines = ["| stream | canary | rule | rolled back | median requests | p90 requests |", "|---|---|---|---|---|---|"]
    for row in rows:
        effect = float(row["effect"])  # type: ignore[arg-type]
        label = "identical" if effect == 0 else f"+{effect * 100:g} pts"
        median, p90 = (
            f"{float(row[k]):,.0f}" if effect and not math.isnan(float(row[k])) else "" for k in ("median", "p90")
        )  # type: ignore[arg-type]
        lines.append(f"| {row['stream']} | {label} | {row['rule']} | {float(row['rate']):.1%} | {median} | {p90} |")  # type: ignore[arg-type]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 rollouts per cell, do not write the docs")
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--failure-limit", type=int, default=2)
    parser.add_argument("--seed", type=int, default=20240607)
    args = parser.parse_args()
    runs = 200 if args.quick else args.runs
    text = table(run_cells(runs, args.failure_limit, args.seed))
    print(text)
    if not args.quick and DOCS.exists():
        begin, end = "<!-- bench-decisions:begin -->", "<!-- bench-decisions:end -->"
        header = f"{runs:,} rollouts per cell, failureLimit {args.failure_limit}, seed {args.seed}.\n\n"
        body = DOCS.read_text()
        DOCS.write_text(re.sub(f"{begin}.*?{end}", lambda _: f"{begin}\n{header}{text}\n{end}", body, flags=re.S))


if __name__ == "__main__":
    main()
