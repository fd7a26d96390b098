"""Data shapes shared by the metric sources, the analysis engine and the decision core.

Everything here is plain data: no I/O, no clock. A *tick* is one analysis interval; the
metric source turns the pods' cumulative Prometheus counters into per-tick increments
(per pod, treating a counter that went down as a reset) and sums them per version.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field


class Verdict(enum.StrEnum):
    """What one metric says after a tick."""

    PASS = "Pass"  # evidence of no harm: the canary may be promoted as far as this metric goes
    FAIL = "Fail"  # evidence of harm: counts towards failureLimit / rollback
    INCONCLUSIVE = "Inconclusive"  # not enough evidence either way (or data missing): keep collecting


# How a verdict ends a status message.
VERDICT_WORDS = {Verdict.FAIL: "rollback", Verdict.PASS: "promote", Verdict.INCONCLUSIVE: "keep collecting"}


@dataclass(frozen=True)
class ArmTotals:
    """Totals of a per-request outcome: how many requests had one (n), their sum and sum of squares. An A/B
    arm's cumulative totals (analysis/abtest.py), or one tick's numeric outcomes of a version."""

    n: float = 0.0
    total: float = 0.0
    squares: float = 0.0

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else math.nan

    @property
    def variance(self) -> float:
        """The outcome's sample variance in this arm (0 below two samples)."""
        if self.n < 2:
            return 0.0
        return max(self.squares - self.total * self.total / self.n, 0.0) / (self.n - 1)


@dataclass(frozen=True)
class VersionCounts:
    """Increments for one model version over one tick, summed over its ready pods.

    latency_buckets holds (upper bound in seconds, cumulative count increment) pairs sorted by the
    bound, the last bound being +inf, exactly as a Prometheus histogram's `_bucket{le=...}` series.
    class_counts maps a predicted class label to how many rows were predicted as that class.
    Feedback: labels joined to earlier predictions (classifiers count correct/incorrect; regressors
    sum absolute errors over abs_error_count labelled rows).
    """

    requests: float = 0.0
    errors: float = 0.0
    latency_buckets: tuple[tuple[float, float], ...] = ()
    class_counts: Mapping[str, float] = field(default_factory=dict)
    feedback_correct: float = 0.0
    feedback_incorrect: float = 0.0
    abs_error_sum: float = 0.0
    abs_error_count: float = 0.0
    # Numeric outcomes posted with feedback, by declared name (docs/metrics.md, "Numeric outcomes").
    outcomes: Mapping[str, ArmTotals] = field(default_factory=dict)
    pods: int = 0  # how many pods' scrapes contributed


@dataclass(frozen=True)
class Tick:
    """One analysis interval's observations of both versions.

    A version whose scrape failed (any of its ready pods timed out, errored or answered garbage) is
    None, with the reason in `errors`; missing data is never success. expected_canary_share is what
    the replica counts imply (canary ready pods / all ready pods), used for the sample-ratio check.
    """

    canary: VersionCounts | None
    stable: VersionCounts | None
    expected_canary_share: float
    errors: tuple[str, ...] = ()
    # Seconds this tick covers (a missed scrape makes the next tick cover two intervals); None means
    # one configured analysis interval. Counts towards the minimum exposure before promotion.
    duration_seconds: float | None = None


@dataclass(frozen=True)
class MetricResult:
    """One metric's verdict after a tick, with the numbers behind it (they go into status)."""

    name: str
    verdict: Verdict
    message: str  # one human sentence: "canary error rate 2.1% vs stable 1.0%, ... : rollback"
    canary_value: float | None = None
    stable_value: float | None = None
    estimate: float | None = None  # e.g. difference canary - stable
    interval: tuple[float, float] | None = None  # always-valid confidence interval of `estimate`
    p_value: float | None = None  # running (anytime-valid) p-value
    e_value: float | None = None
    canary_samples: float = 0.0
    stable_samples: float = 0.0


@dataclass(frozen=True)
class AnalysisOutcome:
    """All metrics after one tick plus the overall verdict the decision core acts on.

    overall: FAIL if any metric failed; PASS only if every metric passed; otherwise INCONCLUSIVE.
    """

    results: tuple[MetricResult, ...]
    overall: Verdict
    effective_canary_share: float | None = None  # canary share of requests measured this tick
    sample_ratio_warning: str | None = None
