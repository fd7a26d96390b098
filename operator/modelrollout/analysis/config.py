"""The `spec.analysis` block of a ModelRollout, validated and with defaults filled in.

Every field has a safe default, so `AnalysisConfig.from_spec({"metrics": [...]})` is a complete
configuration. Bad input raises ValueError naming the field, e.g. "spec.analysis.metrics[1].margin: ...".
This is the only parser of `spec.analysis`: `RolloutSpec.analysis` is an `AnalysisConfig`, so the
decision core and the analysis engine read the same validated values.

>>> config = AnalysisConfig.from_spec({"metrics": [{"name": "errors", "type": "errorRate", "max": 0.01}]})
>>> config.interval_seconds, config.alpha, config.alpha_for("errors")
(15.0, 0.05, 0.05)
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelrollout.durations import parse_duration


class MetricType(enum.StrEnum):
    ERROR_RATE = "errorRate"
    LATENCY = "latency"
    ACCURACY = "accuracy"
    PREDICTION_SHIFT = "predictionShift"
    MEAN_ABSOLUTE_ERROR = "meanAbsoluteError"


class TimeoutAction(enum.StrEnum):
    PAUSE = "Pause"  # stop the rollout where it is and say why; a human decides
    PROMOTE = "Promote"  # only when the user asked for it explicitly
    ROLLBACK = "Rollback"


# Which criteria each metric type accepts; anything else is a configuration error, not silently ignored.
_ALLOWED_CRITERIA: dict[MetricType, frozenset[str]] = {
    MetricType.ERROR_RATE: frozenset({"max", "margin", "maxRatioToStable"}),
    MetricType.LATENCY: frozenset({"max", "margin", "maxRatioToStable"}),
    MetricType.ACCURACY: frozenset({"min", "margin", "minRatioToStable"}),
    MetricType.PREDICTION_SHIFT: frozenset({"max"}),
    MetricType.MEAN_ABSOLUTE_ERROR: frozenset({"max", "margin", "maxRatioToStable"}),
}
CRITERIA_ORDER = ("max", "min", "margin", "maxRatioToStable", "minRatioToStable")
_LATENCY_QUANTILES = (0.5, 0.9, 0.99)
METRIC_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"  # as the CRD: a label value in metrics and status


@dataclass(frozen=True)
class MetricConfig:
    """One entry of `spec.analysis.metrics`; `criteria` maps a criterion name to its configured value."""

    name: str
    type: MetricType
    criteria: Mapping[str, float]
    quantile: float | None = None
    threshold_seconds: float | None = None
    weight: float = 1.0

    @staticmethod
    def from_spec(raw: Mapping[str, Any], where: str) -> MetricConfig:
        if not isinstance(raw, Mapping):
            raise ValueError(f"{where}: expected an object")
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}.name: required, a non-empty string")
        if not re.fullmatch(METRIC_NAME_PATTERN, name):
            raise ValueError(f"{where}.name: {name!r} does not match {METRIC_NAME_PATTERN} (it becomes a label value)")
        try:
            metric_type = MetricType(str(raw.get("type")))
        except ValueError:
            allowed = ", ".join(t.value for t in MetricType)
            raise ValueError(f"{where}.type: must be one of {allowed}, got {raw.get('type')!r}") from None
        criteria = {key: _number(raw[key], f"{where}.{key}") for key in CRITERIA_ORDER if key in raw}
        if not criteria:
            raise ValueError(f"{where}: needs at least one of max, min, maxRatioToStable, minRatioToStable, margin")
        for key, value in criteria.items():
            _check_criterion(metric_type, key, value, f"{where}.{key}")
        quantile = _optional_number(raw.get("quantile"), f"{where}.quantile")
        threshold = _optional_number(raw.get("thresholdSeconds"), f"{where}.thresholdSeconds")
        _check_latency_shape(metric_type, quantile, threshold, where)
        weight = _number(raw.get("weight", 1.0), f"{where}.weight")
        if weight <= 0:
            raise ValueError(f"{where}.weight: must be positive, got {weight}")
        return MetricConfig(name, metric_type, criteria, quantile, threshold, weight)


def _number(value: Any, field_name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{field_name}: expected a number, got {value!r}")
    return float(value)


def _optional_number(value: Any, field_name: str) -> float | None:
    return None if value is None else _number(value, field_name)


def _check_criterion(metric_type: MetricType, key: str, value: float, field_name: str) -> None:
    if key not in _ALLOWED_CRITERIA[metric_type]:
        allowed = ", ".join(sorted(_ALLOWED_CRITERIA[metric_type]))
        raise ValueError(f"{field_name}: not supported for type {metric_type.value} (use {allowed})")
    if key == "maxRatioToStable" and value <= 1.0:
        raise ValueError(f"{field_name}: must be above 1 (a tolerated worsening), got {value}")
    if key == "minRatioToStable" and not 0.0 < value < 1.0:
        raise ValueError(f"{field_name}: must be between 0 and 1, got {value}")
    if key == "margin" and value < 0:
        raise ValueError(f"{field_name}: must be non-negative, got {value}")
    shares = metric_type in (MetricType.ERROR_RATE, MetricType.ACCURACY, MetricType.PREDICTION_SHIFT)
    if key in ("max", "min") and shares and not 0.0 < value < 1.0:
        raise ValueError(f"{field_name}: a share, must be between 0 and 1 exclusive, got {value}")
    if key in ("max", "min") and value <= 0:
        raise ValueError(f"{field_name}: must be positive, got {value}")


def _check_latency_shape(metric_type: MetricType, quantile: float | None, threshold: float | None, where: str) -> None:
    if metric_type is not MetricType.LATENCY:
        if quantile is not None or threshold is not None:
            raise ValueError(f"{where}: quantile/thresholdSeconds only apply to type latency")
        return
    if (quantile is None) == (threshold is None):
        raise ValueError(f"{where}: a latency metric needs exactly one of quantile or thresholdSeconds")
    if quantile is not None and quantile not in _LATENCY_QUANTILES:
        raise ValueError(f"{where}.quantile: must be one of 0.5, 0.9, 0.99, got {quantile}")
    if threshold is not None and threshold <= 0:
        raise ValueError(f"{where}.thresholdSeconds: must be positive, got {threshold}")


@dataclass(frozen=True)
class TimeoutPolicy:
    """What the decision core does when no verdict arrives in time (the engine itself has no clock)."""

    after_seconds: float = 1800.0
    action: TimeoutAction = TimeoutAction.PAUSE


@dataclass(frozen=True)
class AnalysisConfig:
    """Validated `spec.analysis`. Defaults: interval 15s, minSamples 200, alpha 0.05, failureLimit 1,
    inconclusiveLimit 20, minExposure 1m, timeout 30m then Pause.

    The engine reads the metrics, minSamples, alpha and minExposure; the decision core reads the
    interval (when to tick), failureLimit and inconclusiveLimit (what a streak means) and timeout.
    """

    metrics: tuple[MetricConfig, ...]
    interval_seconds: float = 15.0
    min_samples: int = 200
    alpha: float = 0.05
    failure_limit: int = 1
    inconclusive_limit: int = 20
    min_exposure_seconds: float = 60.0
    timeout: TimeoutPolicy = TimeoutPolicy()

    def alpha_for(self, metric_name: str) -> float:
        """The metric's share of the false-rollback budget: alpha * weight / sum of weights.

        The shares add up to alpha, so by the union bound the chance that *any* metric wrongly
        fails at *any* look stays below alpha.
        """
        total = sum(metric.weight for metric in self.metrics)
        metric = next(m for m in self.metrics if m.name == metric_name)
        return self.alpha * metric.weight / total

    @staticmethod
    def from_spec(spec: Mapping[str, Any] | None, where: str = "spec.analysis") -> AnalysisConfig:
        """Parse the `analysis` object; `where` prefixes field names in errors."""
        spec = spec or {}
        if not isinstance(spec, Mapping):
            raise ValueError(f"{where}: expected an object")
        raw_metrics = spec.get("metrics")
        if not isinstance(raw_metrics, list) or not raw_metrics:
            raise ValueError(f"{where}.metrics: required, a non-empty list")
        metrics = tuple(MetricConfig.from_spec(m, f"{where}.metrics[{i}]") for i, m in enumerate(raw_metrics))
        names = [m.name for m in metrics]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"{where}.metrics: names must be unique, repeated: {', '.join(duplicated)}")
        alpha = _number(spec.get("alpha", AnalysisConfig.alpha), f"{where}.alpha")
        if not 0.0 < alpha < 0.5:
            raise ValueError(f"{where}.alpha: must be between 0 and 0.5, got {alpha}")
        return AnalysisConfig(
            metrics=metrics,
            interval_seconds=_duration(spec, "interval", AnalysisConfig.interval_seconds, where, positive=True),
            min_samples=_positive_int(spec.get("minSamples", AnalysisConfig.min_samples), f"{where}.minSamples"),
            alpha=alpha,
            failure_limit=_positive_int(spec.get("failureLimit", AnalysisConfig.failure_limit),
                                        f"{where}.failureLimit"),
            inconclusive_limit=_positive_int(spec.get("inconclusiveLimit", AnalysisConfig.inconclusive_limit),
                                             f"{where}.inconclusiveLimit"),
            min_exposure_seconds=_duration(spec, "minExposure", AnalysisConfig.min_exposure_seconds, where),
            timeout=_timeout_from_spec(spec.get("timeout"), f"{where}.timeout"),
        )


def _duration(spec: Mapping[str, Any], key: str, default: float, where: str, positive: bool = False) -> float:
    """Seconds of spec[key], or `default` (already seconds) when the key is absent."""
    if key not in spec:
        return default
    seconds = parse_duration(spec[key], f"{where}.{key}")
    if positive and seconds <= 0:
        raise ValueError(f"{where}.{key}: must be positive, got {spec[key]!r}")
    return seconds


def _positive_int(value: Any, field_name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{field_name}: must be a positive integer, got {value!r}")
    return value


def _timeout_from_spec(raw: Any, where: str) -> TimeoutPolicy:
    if raw is None:
        return TimeoutPolicy()
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected an object such as {{after: 10m, action: Pause}}")
    after = _duration(raw, "after", TimeoutPolicy.after_seconds, where)
    try:
        action = TimeoutAction(raw.get("action", TimeoutPolicy.action.value))
    except ValueError:
        raise ValueError(f"{where}.action: must be Pause, Promote or Rollback, got {raw.get('action')!r}") from None
    return TimeoutPolicy(after, action)
