"""The engine's memory between ticks: running sums only, small enough for status.analysis.engineState.

The operator may restart at any moment, so all progress lives in the resource's status. The state
holds, per metric criterion, cumulative log likelihood ratios, score sums and counts; never the
tick history. It round-trips through plain JSON types:

>>> state = AnalysisState(ticks=3, canary_requests=120.0)
>>> AnalysisState.from_dict(state.to_dict()) == state
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from modelrollout.analysis.config import AnalysisConfig
from modelrollout.analysis.inversion import LATTICE
from modelrollout.analysis.latency import Buckets
from modelrollout.analysis.sequential import ODDS_RATIOS

STATE_VERSION = 1


@dataclass(frozen=True)
class CriterionState:
    """Running sums of one criterion of one metric (e.g. error-rate `margin`).

    Counts: `score`/`weight` give the estimate (canary rate for a bound, stratified difference for a
    comparison with stable), `canary_spread`/`stable_spread` the variance weights of the interval.
    meanAbsoluteError reuses the same sums with events = absolute-error sum, trials = labelled rows.
    Prediction shift keeps per-class sums in `classes`: label -> [score, variance, canary, stable, p].
    """

    log_lr: tuple[float, ...] = (0.0,) * len(ODDS_RATIOS)
    score: float = 0.0
    weight: float = 0.0
    canary_spread: float = 0.0
    stable_spread: float = 0.0
    canary_events: float = 0.0
    canary_trials: float = 0.0
    stable_events: float = 0.0
    stable_trials: float = 0.0
    canary_squares: float = 0.0  # meanAbsoluteError: sum over ticks of (tick sum)^2 / tick count
    stable_squares: float = 0.0
    ticks: float = 0.0  # ticks that contributed (meanAbsoluteError's between-tick variance)
    p_value: float = 1.0
    threshold: float | None = None
    classes: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    # Comparisons of counts: cumulative log likelihood at every ratio of inversion.LATTICE (empty until the
    # first tick with both versions) and sum of r * stable events (the stable side of `score`).
    log_likelihood: tuple[float, ...] = ()
    weighted_stable_events: float = 0.0
    # Running ends of the always-valid interval, None while unbounded: the log rate ratio for comparisons
    # of counts, the canary's rate for bounds, the difference (or the canary's MAE) for meanAbsoluteError.
    lower: float | None = None
    upper: float | None = None
    # Comparisons of counts: running ends of the difference interval. The rate bounds that turn the ratio into a
    # difference move from tick to tick, so without these a Pass (upper end below the margin) could turn back.
    difference_lower: float | None = None
    difference_upper: float | None = None
    # Latency quantile vs stable (tail.py), as used in the last tested tick: `threshold` is stable's bound,
    # `canary_bound` the canary's, `tolerance` the ratio rho of the canary's share above its bound to stable's share
    # above its own that "k times slower" allows. None: no tick tested yet by this release's test.
    tolerance: float | None = None
    canary_bound: float | None = None
    # Latency quantile `max` between two bucket bounds: `threshold` is the bound above it (rollback side),
    # `pass_threshold` the bound below it (promotion side), `pass_extra_events` the canary requests between the two,
    # counted as slower than `max` for a Pass only (never rounded in the canary's favour).
    pass_threshold: float | None = None
    pass_extra_events: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        data["log_lr"] = list(self.log_lr)
        data["log_likelihood"] = list(self.log_likelihood)
        data["classes"] = {label: list(sums) for label, sums in self.classes.items()}
        return data

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> CriterionState:
        known = {f.name for f in fields(CriterionState)}
        values = {key: value for key, value in data.items() if key in known}
        if len(values.get("log_lr", ())) != len(ODDS_RATIOS):
            values.pop("log_lr", None)  # a different grid in an older release: start that test over
        else:
            values["log_lr"] = tuple(float(x) for x in values["log_lr"])
        log_likelihood = tuple(float(x) for x in values.get("log_likelihood", ()))
        # A different lattice in an older release: that interval starts over (the p-value is kept).
        values["log_likelihood"] = log_likelihood if len(log_likelihood) == LATTICE.size else ()
        values["classes"] = {str(k): tuple(float(x) for x in v) for k, v in values.get("classes", {}).items()}
        return CriterionState(**values)


def criterion_key(metric_name: str, criterion: str) -> str:
    return f"{metric_name}/{criterion}"


@dataclass(frozen=True)
class AnalysisState:
    """Everything the engine remembers. `criteria` is keyed by criterion_key(metric, criterion)."""

    ticks: int = 0
    missing_ticks: int = 0
    canary_requests: float = 0.0
    stable_requests: float = 0.0
    exposure_seconds: float = 0.0
    ratio_score: float = 0.0  # sample-ratio check: sum of (canary requests - expected share * all)
    ratio_variance: float = 0.0
    expected_requests: float = 0.0  # sum of expected share * all requests
    canary_latency: Buckets = ()
    stable_latency: Buckets = ()
    criteria: Mapping[str, CriterionState] = field(default_factory=dict)

    @staticmethod
    def initial(config: AnalysisConfig) -> AnalysisState:
        return AnalysisState(
            criteria={criterion_key(m.name, c): CriterionState() for m in config.metrics for c in m.criteria}
        )

    def criterion(self, metric_name: str, criterion: str) -> CriterionState:
        return self.criteria.get(criterion_key(metric_name, criterion), CriterionState())

    def with_criteria(self, updates: Mapping[str, CriterionState]) -> AnalysisState:
        return replace(self, criteria={**self.criteria, **updates})

    def to_dict(self) -> dict[str, Any]:
        scalars = {f.name: getattr(self, f.name) for f in fields(self)}
        scalars["canary_latency"] = _buckets_to_json(self.canary_latency)
        scalars["stable_latency"] = _buckets_to_json(self.stable_latency)
        scalars["criteria"] = {key: value.to_dict() for key, value in self.criteria.items()}
        return {"version": STATE_VERSION, **scalars}

    @staticmethod
    def from_dict(data: Mapping[str, Any] | None, config: AnalysisConfig | None = None) -> AnalysisState:
        """Rebuild from status; with `config`, criteria added since start fresh and removed ones are dropped."""
        if not data:
            return AnalysisState.initial(config) if config else AnalysisState()
        known = {f.name for f in fields(AnalysisState)}
        values = {key: value for key, value in data.items() if key in known}
        values["canary_latency"] = _buckets_from_json(values.get("canary_latency", []))
        values["stable_latency"] = _buckets_from_json(values.get("stable_latency", []))
        criteria = {key: CriterionState.from_dict(raw) for key, raw in values.get("criteria", {}).items()}
        if config is not None:
            wanted = AnalysisState.initial(config).criteria
            criteria = {key: criteria.get(key, fresh) for key, fresh in wanted.items()}
        values["criteria"] = criteria
        return AnalysisState(**values)


def _buckets_to_json(buckets: Buckets) -> list[list[float | str]]:
    # JSON has no infinity; Prometheus spells the last bound "+Inf", so do we.
    return [["+Inf" if math.isinf(bound) else bound, count] for bound, count in buckets]


def _buckets_from_json(raw: Any) -> Buckets:
    return tuple((float(bound), float(count)) for bound, count in raw)
