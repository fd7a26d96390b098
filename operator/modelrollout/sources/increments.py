"""Turn cumulative counters of pods into per-tick increments per version (pure).

Per pod: delta = now - before, or `now` itself when a counter went down (the pod restarted and
its counters began again, as Prometheus treats resets). Never difference a sum across pods: a
pod that vanished is not a reset. Pods are summed per version only after differencing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from modelrollout.analysis.types import ArmTotals, VersionCounts
from modelserver.contract_parse import ModelMetrics, OutcomeTotals


def _is_reset(before: ModelMetrics, now: ModelMetrics) -> bool:
    # An outcome's count, not its sum: the sum falls with a negative outcome (a refund), the count only on a reset.
    return (now.requests < before.requests or now.latency_count < before.latency_count
            or now.feedback_correct + now.feedback_incorrect < before.feedback_correct + before.feedback_incorrect
            or any(totals.count < before.outcomes.get(name, OutcomeTotals()).count
                   for name, totals in now.outcomes.items()))


def _outcome_delta(before: ModelMetrics, now: ModelMetrics) -> dict[str, ArmTotals]:
    """Each declared outcome's increment (the sum may be negative: outcomes can be)."""
    out = {}
    for name, totals in now.outcomes.items():
        old = before.outcomes.get(name, OutcomeTotals())
        out[name] = ArmTotals(totals.count - old.count, totals.sum - old.sum, totals.squares - old.squares)
    return out


def _bucket_delta(before: tuple[tuple[float, float], ...],
                  now: tuple[tuple[float, float], ...]) -> dict[float, float]:
    old = dict(before)
    return {le: max(0.0, count - old.get(le, 0.0)) for le, count in now}


def _class_delta(before: dict[str, float], now: dict[str, float]) -> dict[str, float]:
    return {k: max(0.0, v - before.get(k, 0.0)) for k, v in now.items()}


def pod_increment(before: ModelMetrics | None, now: ModelMetrics) -> VersionCounts:
    """One pod's increment since the previous scrape.

    >>> from modelserver.contract_parse import ModelMetrics
    >>> a = ModelMetrics("m", "1", requests=100, errors=2)
    >>> pod_increment(a, ModelMetrics("m", "1", requests=150, errors=3)).requests
    50.0
    >>> pod_increment(a, ModelMetrics("m", "1", requests=7, errors=1)).requests  # restarted pod
    7.0
    """
    if before is None or _is_reset(before, now):
        before = ModelMetrics(now.model, now.version)
    return VersionCounts(
        requests=now.requests - before.requests,
        errors=max(0.0, now.errors - before.errors),
        latency_buckets=tuple(sorted(_bucket_delta(before.latency_buckets, now.latency_buckets).items())),
        class_counts=_class_delta(dict(before.predicted_classes), dict(now.predicted_classes)),
        feedback_correct=now.feedback_correct - before.feedback_correct,
        feedback_incorrect=now.feedback_incorrect - before.feedback_incorrect,
        abs_error_sum=max(0.0, now.absolute_error_sum - before.absolute_error_sum),
        abs_error_count=max(0.0, now.absolute_error_count - before.absolute_error_count),
        outcomes=_outcome_delta(before, now),
        pods=1,
    )


def sum_counts(parts: Iterable[VersionCounts]) -> VersionCounts | None:
    """Add pods' increments of one version; None when no pod contributed."""
    parts = list(parts)
    if not parts:
        return None
    buckets: dict[float, float] = defaultdict(float)
    classes: dict[str, float] = defaultdict(float)
    outcomes: dict[str, ArmTotals] = {}
    for p in parts:
        for name, t in p.outcomes.items():
            o = outcomes.get(name, ArmTotals())
            outcomes[name] = ArmTotals(o.n + t.n, o.total + t.total, o.squares + t.squares)
        for le, n in p.latency_buckets:
            buckets[le] += n
        for k, n in p.class_counts.items():
            classes[k] += n
    return VersionCounts(
        requests=sum(p.requests for p in parts), errors=sum(p.errors for p in parts),
        latency_buckets=tuple(sorted(buckets.items())), class_counts=dict(classes),
        feedback_correct=sum(p.feedback_correct for p in parts),
        feedback_incorrect=sum(p.feedback_incorrect for p in parts),
        abs_error_sum=sum(p.abs_error_sum for p in parts), abs_error_count=sum(p.abs_error_count for p in parts),
        outcomes=outcomes, pods=sum(p.pods for p in parts),
    )
