"""Decision-quality benchmark, both sides: how often each rule rolls back a good canary and how fast it catches a
bad one, and how often the engine, replayed exactly as the operator calls it, promotes, rolls back or pauses.

Part 1 simulates rollouts (400 requests per tick, 40 ticks = 16,000 requests; see streams.py) and runs side by
side the engine's rollback test (the per-tick conditional e-process of `modelrollout.analysis.sequential`,
vectorised over rollouts), a threshold rule per window as Flagger and Argo Rollouts apply it, and a fixed-sample
z-test on cumulative counts checked at every tick. Every rule waits for 200 canary requests, as the operator does.
Part 2 (replay.py) feeds request streams tick by tick through `assess_tick` for every metric type, with the
docs' settings and with the examples' settings: promoted / rolled back / paused, Pass-then-Fail flips, and the
canary requests an equal canary needs to pass, per margin and base error rate. Part 3 (shadow.py) judges a shadow
stage on the same requests with the paired test of `modelrollout.analysis.paired`, beside the unpaired canary test.
Part 4 (abtest.py) runs A/A and A/B experiments through `modelrollout.analysis.abtest`, looked at after every tick,
beside a z-test looked at as often.

    .venv/bin/python bench/decisions/run.py          # bounded (a few minutes): 200 + 50 + 100 rollouts per cell, prints
    .venv/bin/python bench/decisions/run.py --full   # 2,000 + 300 + 1,000 per cell (over an hour), writes the docs
    .venv/bin/python bench/decisions/run.py --full --seed 7 --no-docs   # a second seed, prints only
    .venv/bin/python bench/decisions/run.py --full --only Ratio   # part 2, metrics containing "Ratio", prints only
    .venv/bin/python bench/decisions/run.py --full --table bench-shadow   # part 3 only, rewrites only its table
    .venv/bin/python bench/decisions/run.py --full --table bench-abtest   # part 4 only (seconds)
"""

from __future__ import annotations

import argparse
import math
import platform
import re
import sys
import time
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import numpy as np
from scipy.stats import norm

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "operator"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from abtest import abtest_table
from replay import margin_table, outcome_table, projection_table
from shadow import shadow_table
from streams import ERROR_STREAMS, REQUESTS_PER_TICK, Cell, accuracy_cell, error_cell, latency_cell, mae_cell

from modelrollout.analysis.counts import fails_comparison
from modelrollout.analysis.mean_error import MIXTURE_RHO as MAE_RHO
from modelrollout.analysis.sequential import mixture_log_e_value, one_sided_log_e_value, tick_log_likelihood_ratios

MIN_CANARY_REQUESTS, ALPHA = 200, 0.05
EFFECTS = (0.0, 0.005, 0.01, 0.02, 0.05)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "analysis.md"


def mae_engine_fails(cell: Cell) -> np.ndarray:
    """The engine's meanAbsoluteError comparison (mean_error.py) vectorised: stratified difference, variance
    from the scatter of tick means floored at mean^2, one-sided normal mixture at alpha."""
    k_c, k_s, s_c, s_s = cell.canary_trials, cell.stable_trials, cell.canary_events, cell.stable_events
    both = (k_c > 0) & (k_s > 0)  # the engine skips ticks without labels on both sides
    safe_c, safe_s = np.maximum(k_c, 1.0), np.maximum(k_s, 1.0)
    w = np.where(both, k_c * k_s / np.maximum(k_c + k_s, 1.0), 0.0)
    score = np.cumsum(w * (s_c / safe_c - s_s / safe_s), axis=1)
    units = np.cumsum(np.where(both, w * w / safe_c + w * w / safe_s, 0.0), axis=1)
    ticks = np.cumsum(both, axis=1)

    def row_variance(sums: np.ndarray, rows: np.ndarray) -> np.ndarray:
        total = np.cumsum(np.where(both, sums, 0.0), axis=1)
        count = np.maximum(np.cumsum(np.where(both, rows, 0.0), axis=1), 1.0)
        squares = np.cumsum(np.where(both, sums * sums / np.maximum(rows, 1.0), 0.0), axis=1)
        scatter = np.where(ticks >= 2, (squares - total * total / count) / np.maximum(ticks - 1, 1), 0.0)
        return np.maximum(scatter, (total / count) ** 2)

    spread_c = np.cumsum(np.where(both, w * w / safe_c, 0.0), axis=1)
    spread_s = np.cumsum(np.where(both, w * w / safe_s, 0.0), axis=1)
    variance = row_variance(s_c, k_c) * spread_c + row_variance(s_s, k_s) * spread_s
    scale = np.sqrt(np.maximum(variance, 1e-300) / np.maximum(units, 1e-300))
    log_e = one_sided_log_e_value(score / scale, units, MAE_RHO)
    return np.asarray(np.maximum.accumulate((units > 0) & (log_e > math.log(1 / ALPHA)), axis=1))


def engine_fails(cell: Cell) -> np.ndarray:
    """The engine's Fail per tick: the comparison with stable, plus the guardrail bound when the cell has one
    (each criterion then gets half of alpha, as AnalysisConfig.alpha_for splits it)."""
    if cell.kind == "mae":
        return mae_engine_fails(cell)
    alpha = ALPHA / (2 if cell.guardrail else 1)
    share = cell.canary_trials / np.maximum(cell.canary_trials + cell.stable_trials, 1.0)
    log_lr = tick_log_likelihood_ratios(cell.canary_events, cell.canary_events + cell.stable_events, share)
    # Fail is "the interval lies above 0": the ratio test rejects 1 and one version's rate bound is above 0.
    canary_weighted = np.cumsum((1.0 - share) * cell.canary_events, axis=1)
    stable_weighted = np.cumsum(share * cell.stable_events, axis=1)
    fails = fails_comparison(mixture_log_e_value(np.cumsum(log_lr, axis=1)), canary_weighted, stable_weighted, alpha)
    if cell.guardrail:
        events, trials, bound = cell.guardrail
        bound_lr = tick_log_likelihood_ratios(events, trials, bound)
        fails |= mixture_log_e_value(np.cumsum(bound_lr, axis=1)) > math.log(1 / alpha)
    return np.maximum.accumulate(fails, axis=1)  # running p-value: a Fail persists


def z_test_fails(cell: Cell) -> np.ndarray:
    if cell.kind == "mae":  # means of exponential errors: variance mean^2 per row
        sc, kc, ss, ks = (
            np.cumsum(x, axis=1)
            for x in (cell.canary_events, cell.canary_trials, cell.stable_events, cell.stable_trials)
        )
        m_c, m_s = sc / np.maximum(kc, 1.0), ss / np.maximum(ks, 1.0)
        se = np.sqrt(np.maximum(m_c**2 / np.maximum(kc, 1.0) + m_s**2 / np.maximum(ks, 1.0), 1e-12))
        return np.asarray((kc > 0) & (ks > 0) & ((m_c - m_s) / se > norm.ppf(1 - ALPHA)))
    ec, nc, es, ns = (
        np.cumsum(x, axis=1) for x in (cell.canary_events, cell.canary_trials, cell.stable_events, cell.stable_trials)
    )
    nc, ns = np.maximum(nc, 1.0), np.maximum(ns, 1.0)
    pooled = (ec + es) / (nc + ns)
    se = np.sqrt(np.maximum(pooled * (1 - pooled) * (1 / nc + 1 / ns), 1e-12))
    return (ec / nc - es / ns) / se > norm.ppf(1 - ALPHA)


# (column title, failed checks per tick, consecutive failed checks before rollback)
RULES: tuple[tuple[str, Callable[[Cell], np.ndarray], int], ...] = (
    ("engine, failureLimit 1", engine_fails, 1),
    ("engine, failureLimit 2", engine_fails, 2),
    ("threshold per window, 2 in a row", lambda cell: cell.window_fails, 2),
    ("z-test every tick, 2 in a row", z_test_fails, 2),
)


def canary_rollback(cell: Cell) -> np.ndarray:
    """The engine's rollback tick per rollout (-1: none), failureLimit 1: part 3's unpaired canary column."""
    return rollback_tick(engine_fails(cell), cell.canary_requests, 1)


def rollback_tick(fails: np.ndarray, canary_requests: np.ndarray, failure_limit: int) -> np.ndarray:
    """First tick at which `failure_limit` consecutive failed checks end, after 200 canary requests; else -1."""
    fails = fails & (np.cumsum(canary_requests, axis=1) >= MIN_CANARY_REQUESTS)
    run = np.zeros(fails.shape[0], dtype=int)
    decided = np.full(fails.shape[0], -1)
    for t in range(fails.shape[1]):
        run = np.where(fails[:, t], run + 1, 0)
        decided = np.where((decided < 0) & (run >= failure_limit), t, decided)
    return decided


def cells(rng: np.random.Generator, runs: int) -> Iterator[tuple[str, str, bool, Cell]]:
    """(stream, canary, is the canary worse, cell) for every benchmark cell."""
    for stream, shape in ERROR_STREAMS.items():
        for effect in EFFECTS:
            label = "identical" if effect == 0 else f"+{effect * 100:g} pts errors"
            yield stream, label, effect > 0, error_cell(rng, shape(rng, runs), effect)
    accuracy = "accuracy, labels for 30%, 1-8 ticks late"
    yield accuracy, "identical", False, accuracy_cell(rng, runs, 0.0)
    yield accuracy, "2 pts less accurate", True, accuracy_cell(rng, runs, 0.02)
    regression = "mean absolute error, labels for 30%, 1-8 ticks late"
    yield regression, "identical", False, mae_cell(rng, runs, 0.0)
    yield regression, "10% larger error", True, mae_cell(rng, runs, 0.1)
    latency = "latency: >100 ms share vs stable, p99 <= 250 ms"
    yield latency, "identical", False, latency_cell(rng, runs, 1.0, 0.0)
    yield latency, "10% slower", True, latency_cell(rng, runs, 1.1, 0.0)
    yield latency, "3% slow tail (~400 ms)", True, latency_cell(rng, runs, 1.0, 0.03)


def summary(tick: np.ndarray, worse: bool) -> str:
    """ "2.5%" for a good canary; "96.9% · 4,800 / 10,800" (rolled back, median / p90 requests) for a worse one."""
    rate = f"{np.mean(tick >= 0):.1%}"
    requests = (tick[tick >= 0] + 1) * REQUESTS_PER_TICK
    if not worse or requests.size == 0:
        return rate
    return f"{rate} · {np.median(requests):,.0f} / {np.percentile(requests, 90):,.0f}"


def table(runs: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    head = "| stream | canary | " + " | ".join(title for title, _, _ in RULES) + " |"
    lines = [head, "|---|---|" + "---|" * len(RULES)]
    for stream, label, worse, cell in cells(rng, runs):
        columns = [summary(rollback_tick(rule(cell), cell.canary_requests, limit), worse) for _, rule, limit in RULES]
        lines.append(f"| {stream} | {label} | " + " | ".join(columns) + " |")
    return "\n".join(lines)


MARGINS, BASE_RATES = (0.005, 0.01, 0.02), (0.005, 0.01, 0.02)
TABLES = ("bench-decisions", "bench-replay", "bench-margins", "bench-projection", "bench-shadow", "bench-abtest")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="the big run (2,000 / 300 / 1,000 per cell), writes docs")
    parser.add_argument("--runs", type=int, help="rollouts per cell of part 1 (default 200, --full 2,000)")
    parser.add_argument("--replay-runs", type=int, help="rollouts per cell of part 2 (default 50, --full 300)")
    parser.add_argument("--shadow-runs", type=int, help="rollouts per cell of part 3 (default 100, --full 1,000)")
    parser.add_argument("--ab-runs", type=int, help="experiments per row of part 4 (default 200, --full 2,000)")
    parser.add_argument("--seed", type=int, default=20240607)
    parser.add_argument("--no-docs", action="store_true", help="print only, also with --full")
    parser.add_argument("--only", default="", help="only part 2's cells whose metric contains this text (prints only)")
    parser.add_argument(
        "--table", action="append", choices=TABLES, help="only this table (repeatable); --full then rewrites only it"
    )
    args = parser.parse_args()
    runs = args.runs or (2000 if args.full else 200)
    replay_runs = args.replay_runs or (300 if args.full else 50)
    shadow_runs = args.shadow_runs or (1000 if args.full else 100)
    ab_runs = args.ab_runs or (2000 if args.full else 200)
    sections = {}
    builders: tuple[tuple[str, Callable[[], str]], ...] = (
        ("bench-decisions", lambda: table(runs, args.seed)),
        ("bench-replay", lambda: outcome_table(replay_runs, args.seed, args.only)),
        ("bench-margins", lambda: margin_table(replay_runs, args.seed, MARGINS, BASE_RATES)),
        ("bench-projection", lambda: projection_table(replay_runs, args.seed, MARGINS)),
        ("bench-shadow", lambda: shadow_table(shadow_runs, args.seed, canary_rollback)),
        ("bench-abtest", lambda: abtest_table(ab_runs, args.seed)),
    )
    runs_of = {"bench-decisions": runs, "bench-shadow": shadow_runs, "bench-abtest": ab_runs}
    for name, build in builders:
        if (args.only and name != "bench-replay") or (args.table and name not in args.table):
            continue
        started = time.perf_counter()
        text = build()
        elapsed = time.perf_counter() - started
        rollouts = runs_of.get(name, replay_runs)
        unit = "experiments" if name == "bench-abtest" else "rollouts"
        sections[name] = (
            f"{rollouts:,} {unit} per cell, seed {args.seed}, run on {date.today().isoformat()} on "
            f"{platform.machine()} {platform.system()} with {_cpus()} CPUs, Python {platform.python_version()}, "
            f"{elapsed:.0f} s.\n\n{text}"
        )
        print(f"{sections[name]}\n", flush=True)
    if args.full and not args.no_docs and not args.only and DOCS.exists():
        _write_docs(sections)


def _write_docs(sections: dict[str, str]) -> None:
    body = DOCS.read_text()
    for name, text in sections.items():
        begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
        body = re.sub(f"{begin}.*?{end}", lambda _, b=begin, e=end, t=text: f"{b}\n{t}\n{e}", body, flags=re.S)
    DOCS.write_text(body)


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    main()
