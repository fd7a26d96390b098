"""Both sides of every decision: request streams replayed through `assess_tick` exactly as the operator calls it.

Each rollout is a list of Ticks; the engine's state is carried from tick to tick as the operator carries it in
status. A rollout is decided as the decision core decides it: `failureLimit` consecutive Fail ticks roll back,
a Pass tick promotes (the promotion gate is taken to be open from the start), `inconclusiveLimit`
consecutive Inconclusive ticks pause. Separately every tick's verdict is recorded *without acting on it*,
to count rollouts whose verdict went from Pass to Fail (where the outcome would depend on when the gate is
reached).

    .venv/bin/python bench/decisions/replay.py           # 100 rollouts per cell, a few minutes, prints only
    .venv/bin/python bench/decisions/replay.py --runs 1000 --docs   # the docs/analysis.md tables
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm
from streams import BUCKETS, _bucket_probabilities

from modelrollout.analysis.config import AnalysisConfig
from modelrollout.analysis.engine import assess_tick
from modelrollout.analysis.progress import requests_to_pass
from modelrollout.analysis.state import AnalysisState
from modelrollout.analysis.types import MetricResult, Tick, Verdict, VersionCounts
from modelserver.contract import LATENCY_BUCKETS

TickSource = Callable[[np.random.Generator], list[Tick]]  # one rollout's ticks


@dataclass(frozen=True)
class Rollout:
    """One replayed rollout: what the operator would have done, when, and the verdicts seen at every look."""

    decision: str  # "promoted", "rolled back", "paused" or "undecided" (stream ended first)
    canary_requests: float  # canary requests until the decision (or in all)
    requests: float  # requests to both versions until the decision (or in all)
    pass_then_fail: bool


def replay(config: AnalysisConfig, ticks: Sequence[Tick]) -> Rollout:
    state = AnalysisState.initial(config)
    decision, decided_at = "undecided", (0.0, 0.0)
    fails = inconclusive = 0
    canary = total = 0.0
    passed = pass_then_fail = False
    for tick in ticks:
        outcome, state = assess_tick(config, state, tick)
        canary += tick.canary.requests if tick.canary else 0.0
        total += (tick.canary.requests if tick.canary else 0.0) + (tick.stable.requests if tick.stable else 0.0)
        verdict = outcome.overall
        pass_then_fail |= passed and verdict is Verdict.FAIL
        passed |= verdict is Verdict.PASS
        fails = fails + 1 if verdict is Verdict.FAIL else 0
        inconclusive = inconclusive + 1 if verdict is Verdict.INCONCLUSIVE else 0
        if decision == "undecided":
            decision = _decision(config, verdict, fails, inconclusive)
            decided_at = (canary, total)
    if decision == "undecided":
        decided_at = (canary, total)
    return Rollout(decision, decided_at[0], decided_at[1], pass_then_fail)


def replay_until_decided(
    config: AnalysisConfig, ticks: Sequence[Tick], project_at: float = math.inf
) -> tuple[Rollout, float | None]:
    """As replay(), but stops at the first Pass or rollback and never pauses: for "requests needed to pass".

    Also returns the canary requests in all that the status message projected for a Pass at the first
    Inconclusive tick with at least `project_at` canary requests (None if there was no such tick or no
    projection), so that the projection can be compared with what a Pass really took.
    """
    state = AnalysisState.initial(config)
    canary = total = 0.0
    fails = 0
    projected: float | None = None
    for tick in ticks:
        outcome, state = assess_tick(config, state, tick)
        canary += tick.canary.requests if tick.canary else 0.0
        total += (tick.canary.requests if tick.canary else 0.0) + (tick.stable.requests if tick.stable else 0.0)
        if projected is None and canary >= project_at and outcome.overall is Verdict.INCONCLUSIVE:
            projected = _projected_canary_requests(config, outcome.results[0], canary)
            project_at = math.inf
        fails = fails + 1 if outcome.overall is Verdict.FAIL else 0
        if outcome.overall is Verdict.PASS:
            return Rollout("promoted", canary, total, False), projected
        if fails >= config.failure_limit:
            return Rollout("rolled back", canary, total, False), projected
    return Rollout("undecided", canary, total, False), projected


def _projected_canary_requests(config: AnalysisConfig, result: MetricResult, canary: float) -> float | None:
    """What the message's "a Pass needs about N more canary requests" adds up to (errorRate: samples = requests)."""
    if result.estimate is None or result.interval is None:
        return None
    limit = config.metrics[0].criteria["margin"]
    more = requests_to_pass(result.estimate, result.interval[1], limit, result.canary_samples, 1.0)
    return None if more is None else canary + more


def _decision(config: AnalysisConfig, verdict: Verdict, fails: int, inconclusive: int) -> str:
    if fails >= config.failure_limit:
        return "rolled back"
    if verdict is Verdict.PASS:
        return "promoted"
    if inconclusive >= config.inconclusive_limit:
        return "paused"
    return "undecided"


# --- streams, as Ticks -----------------------------------------------------------------------------------


def error_ticks(ticks: int, per_tick: int, share: float, base: float, effect: float) -> TickSource:
    """Errors among requests; the canary's rate is base + effect."""

    def source(rng: np.random.Generator) -> list[Tick]:
        n_c = rng.binomial(per_tick, share, ticks)
        e_c = rng.binomial(n_c, min(base + effect, 1.0))
        e_s = rng.binomial(per_tick - n_c, base)
        return [
            Tick(
                VersionCounts(requests=float(c), errors=float(ec)),
                VersionCounts(requests=float(per_tick - c), errors=float(es)),
                share,
            )
            for c, ec, es in zip(n_c, e_c, e_s, strict=True)
        ]

    return source


def accuracy_ticks(ticks: int, per_tick: int, share: float, stable_accuracy: float, drop: float) -> TickSource:
    """Labels for 30% of predictions, every label arriving 2 ticks after its prediction."""
    delay = 2

    def source(rng: np.random.Generator) -> list[Tick]:
        n_c = rng.binomial(per_tick, share, ticks)
        n_s = per_tick - n_c
        labelled_c, labelled_s = rng.binomial(n_c, 0.3), rng.binomial(n_s, 0.3)
        wrong_c = rng.binomial(labelled_c, 1.0 - stable_accuracy + drop)
        wrong_s = rng.binomial(labelled_s, 1.0 - stable_accuracy)
        out = []
        for t in range(ticks):
            u = t - delay  # the tick whose labels arrive now
            lc, wc, ls, ws = (float(x[u]) if u >= 0 else 0.0 for x in (labelled_c, wrong_c, labelled_s, wrong_s))
            canary = VersionCounts(requests=float(n_c[t]), feedback_correct=lc - wc, feedback_incorrect=wc)
            stable = VersionCounts(requests=float(n_s[t]), feedback_correct=ls - ws, feedback_incorrect=ws)
            out.append(Tick(canary, stable, share))
        return out

    return source


SERVER_BUCKETS = (*LATENCY_BUCKETS, math.inf)  # the model server's own histogram (dense from 0.5 ms to 25 ms)
SERVER_MEDIAN, SERVER_SIGMA = 0.002, 0.35  # a linear model answering in about 2 ms, p99 about 4.5 ms


def _lognormal_probabilities(buckets: Sequence[float], median: float, sigma: float) -> np.ndarray:
    bounds = np.log(np.asarray(buckets[:-1]))
    return np.diff(np.append(norm.cdf((bounds - math.log(median)) / sigma), 1.0), prepend=0.0)


def latency_ticks(ticks: int, per_tick: int, share: float, slowdown: float, server_buckets: bool = False) -> TickSource:
    """Lognormal latencies, the canary x slowdown: median 50 ms, sigma 0.5 (p99 160 ms) in Prometheus' default
    buckets, or with server_buckets median 2 ms, sigma 0.35 (p99 4.5 ms) in the model server's buckets."""
    if server_buckets:
        buckets: Sequence[float] = SERVER_BUCKETS
        canary_p = _lognormal_probabilities(buckets, SERVER_MEDIAN * slowdown, SERVER_SIGMA)
        stable_p = _lognormal_probabilities(buckets, SERVER_MEDIAN, SERVER_SIGMA)
    else:
        buckets = BUCKETS
        canary_p, stable_p = _bucket_probabilities(slowdown, 0.0), _bucket_probabilities(1.0, 0.0)

    def histogram(counts: np.ndarray) -> tuple[tuple[float, float], ...]:
        return tuple((bound, float(c)) for bound, c in zip(buckets, np.cumsum(counts), strict=True))

    def source(rng: np.random.Generator) -> list[Tick]:
        n_c = rng.binomial(per_tick, share, ticks)
        out = []
        for c in n_c:
            canary = rng.multinomial(c, canary_p)
            stable = rng.multinomial(per_tick - c, stable_p)
            out.append(
                Tick(
                    VersionCounts(requests=float(c), latency_buckets=histogram(canary)),
                    VersionCounts(requests=float(per_tick - c), latency_buckets=histogram(stable)),
                    share,
                )
            )
        return out

    return source


# --- summaries --------------------------------------------------------------------------------------------


def rate(rollouts: Sequence[Rollout], decision: str) -> float:
    return sum(r.decision == decision for r in rollouts) / len(rollouts)


def median_requests(rollouts: Sequence[Rollout], decision: str, canary_only: bool = False) -> float:
    values = [r.canary_requests if canary_only else r.requests for r in rollouts if r.decision == decision]
    return float(np.median(values)) if values else math.nan


def flips(rollouts: Sequence[Rollout]) -> float:
    return sum(r.pass_then_fail for r in rollouts) / len(rollouts)


# --- the cells --------------------------------------------------------------------------------------------

TICKS, PER_TICK, SHARE = 40, 400, 0.25  # as the vectorised table: 16,000 requests, a quarter to the canary
# What docs/analysis.md's configuration table defaults to, and what examples/ use.
DEFAULTS: dict[str, object] = {}
EXAMPLES: dict[str, object] = {
    "interval": "5s",
    "minSamples": 50,
    "minExposure": "10s",
    "failureLimit": 2,
    "inconclusiveLimit": 24,
}


@dataclass(frozen=True)
class Cell:
    metric: str  # the metric as configured, for the table
    settings: str  # "defaults" or "examples"
    canary: str
    worse: bool  # the canary is worse than the configured tolerance allows (it should be rolled back)
    config: AnalysisConfig
    ticks: TickSource


def _config(settings: dict[str, object], metric: dict[str, object]) -> AnalysisConfig:
    return AnalysisConfig.from_spec({**settings, "metrics": [{"name": "m", **metric}]})


def outcome_cells() -> list[Cell]:
    """Every metric type, both sides, with the docs' settings and with the examples' settings."""
    cells: list[Cell] = []
    for settings_name, settings, error_margin, accuracy_margin in (
        ("defaults", DEFAULTS, 0.005, 0.01),
        ("examples", EXAMPLES, 0.02, 0.08),
    ):
        errors = {"type": "errorRate", "margin": error_margin}
        for effect in (0.0, 0.005, 0.01, 0.02, 0.03, 0.05):
            label = "equal" if effect == 0 else f"+{effect * 100:g} pts errors"
            cells.append(
                Cell(
                    f"errorRate margin {error_margin:g}",
                    settings_name,
                    label,
                    effect > error_margin,
                    _config(settings, errors),
                    error_ticks(TICKS, PER_TICK, SHARE, 0.01, effect),
                )
            )
        accuracy = {"type": "accuracy", "margin": accuracy_margin}
        for drop in (0.0, 0.02, 0.1):
            label = "equal" if drop == 0 else f"{drop * 100:g} pts less accurate"
            cells.append(
                Cell(
                    f"accuracy margin {accuracy_margin:g}",
                    settings_name,
                    label,
                    drop > accuracy_margin,
                    _config(settings, accuracy),
                    accuracy_ticks(TICKS, PER_TICK, SHARE, 0.95, drop),
                )
            )
    return cells + latency_cells()


@dataclass(frozen=True)
class LatencyMetric:
    settings: str
    title: str
    metric: dict[str, object]
    slowdowns: tuple[float, ...]
    tolerated: float  # the largest slowdown the criterion allows (a slower canary should be rolled back)
    server_buckets: bool = False  # the model server's millisecond stream instead of the 50 ms one


P99 = {"type": "latency", "quantile": 0.99}
# A canary's true p99 is 160 ms x slowdown (lognormal), so `max: 0.25` tolerates 1.56x and `max: 0.2` 1.25x; more
# than 5% of requests above 250 ms starts at about 2.2x.
LATENCY_METRICS = (
    LatencyMetric("defaults", "p99 max 250ms", {**P99, "max": 0.25}, (1, 1.5, 2), 1.56),
    LatencyMetric("defaults", "p99 max 200ms", {**P99, "max": 0.2}, (1, 1.5, 2), 1.25),
    LatencyMetric("defaults", "p99 maxRatioToStable 1.2", {**P99, "maxRatioToStable": 1.2}, (1, 1.2, 1.5, 2), 1.2),
    LatencyMetric(
        "examples", "p99 maxRatioToStable 3, 2 ms server", {**P99, "maxRatioToStable": 3}, (1, 2, 3, 4.5), 3.0, True
    ),
    LatencyMetric(
        "examples", ">250ms share max 5%", {"type": "latency", "thresholdSeconds": 0.25, "max": 0.05}, (1, 1.5, 2), 2.19
    ),
)


def latency_cells() -> list[Cell]:
    """Latency cells: absolute p99 bounds (on a bucket bound and between two), p99 against stable's, an SLO share."""
    cells: list[Cell] = []
    for m in LATENCY_METRICS:
        settings = DEFAULTS if m.settings == "defaults" else EXAMPLES
        for slowdown in m.slowdowns:
            label = "equal" if slowdown == 1 else f"{slowdown:g}x slower"
            ticks = latency_ticks(TICKS, PER_TICK, SHARE, slowdown, m.server_buckets)
            cells.append(Cell(m.title, m.settings, label, slowdown > m.tolerated, _config(settings, m.metric), ticks))
    return cells


def outcome_table(runs: int, seed: int, only: str = "") -> str:
    """Both sides per cell; `only` keeps the cells whose metric title contains it."""
    head = (
        "| metric | settings | canary | promoted | rolled back | paused | Pass then Fail "
        "| median requests to promote / roll back |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for cell in (c for c in outcome_cells() if only in c.metric):
        rng = np.random.default_rng(seed)
        rollouts = [replay(cell.config, cell.ticks(rng)) for _ in range(runs)]
        medians = " / ".join(_median_text(rollouts, decision) for decision in ("promoted", "rolled back"))
        canary = f"**{cell.canary}**" if cell.worse else cell.canary
        lines.append(
            f"| {cell.metric} | {cell.settings} | {canary} | {rate(rollouts, 'promoted'):.0%} | "
            f"{rate(rollouts, 'rolled back'):.0%} | {rate(rollouts, 'paused'):.0%} | {flips(rollouts):.0%} | "
            f"{medians} |"
        )
    return "\n".join(lines)


def _median_text(rollouts: Sequence[Rollout], decision: str) -> str:
    """The median requests to this outcome, or "-" when under 5% of rollouts had it (too few for a median)."""
    if rate(rollouts, decision) < 0.05:
        return "-"
    return f"{median_requests(rollouts, decision):,.0f}"


MARGIN_TICKS, MARGIN_PER_TICK = 100, 1000  # up to 100,000 requests, 25,000 to the canary


def margin_table(runs: int, seed: int, margins: Sequence[float], bases: Sequence[float]) -> str:
    """Requests until an equal canary passes, per margin and base error rate (defaults otherwise)."""
    head = "| margin | " + " | ".join(f"base {b * 100:g}%" for b in bases) + " |"
    lines = [head, "|---|" + "---|" * len(bases)]
    for margin in margins:
        config = _config(DEFAULTS, {"type": "errorRate", "margin": margin})
        columns = []
        for base in bases:
            rng = np.random.default_rng(seed)
            source = error_ticks(MARGIN_TICKS, MARGIN_PER_TICK, SHARE, base, 0.0)
            rollouts = [replay_until_decided(config, source(rng))[0] for _ in range(runs)]
            passed = rate(rollouts, "promoted")
            median = median_requests(rollouts, "promoted", canary_only=True)
            median_text = "-" if passed < 0.5 else f"{median:,.0f}"
            columns.append(f"{median_text} ({passed:.0%})")
        lines.append(f"| {margin:g} | " + " | ".join(columns) + " |")
    return "\n".join(lines)


def projection_table(runs: int, seed: int, margins: Sequence[float], project_at: float = 1000.0) -> str:
    """How the status message's projection compares with the canary requests a Pass really took (base 1%)."""
    head = "| margin | projected at 1,000 canary requests (median) | a Pass took (median) | Pass later than projected |"
    lines = [head, "|---|---|---|---|"]
    for margin in margins:
        config = _config(DEFAULTS, {"type": "errorRate", "margin": margin})
        rng = np.random.default_rng(seed)
        source = error_ticks(MARGIN_TICKS, MARGIN_PER_TICK, SHARE, 0.01, 0.0)
        pairs = [replay_until_decided(config, source(rng), project_at) for _ in range(runs)]
        both = [(p, r.canary_requests) for r, p in pairs if r.decision == "promoted" and p is not None]
        if not both:
            lines.append(f"| {margin:g} | - | - | - |")
            continue
        projected, took = np.array(both).T
        lines.append(
            f"| {margin:g} | {np.median(projected):,.0f} | {np.median(took):,.0f} | {np.mean(took > projected):.0%} |"
        )
    return "\n".join(lines)
