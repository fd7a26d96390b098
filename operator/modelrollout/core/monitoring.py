"""spec.monitoring: watching a serving version after (and while) it is rolled out.

`drift`: every `interval`, the live inputs the version's pods counted in the last `window` (per bin of the
model's training reference, modelserver.driftref) are compared with the reference, feature by feature
(analysis/drift.py). Defaults live here and nowhere else; tests/unit/test_defaults.py checks the CRD's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelrollout.analysis.drift import DriftConfig
from modelrollout.durations import parse_duration

FEATURE_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"  # a reference's feature names become metric label values


@dataclass(frozen=True)
class DriftWatch:
    enabled: bool = True
    window_seconds: float = 300.0
    interval_seconds: float = 30.0
    psi_threshold: float = DriftConfig.psi_threshold
    alpha: float = DriftConfig.alpha
    min_samples: int = DriftConfig.min_samples
    features: tuple[str, ...] = ()  # empty: every feature of the reference

    @property
    def config(self) -> DriftConfig:
        return DriftConfig(alpha=self.alpha, psi_threshold=self.psi_threshold, min_samples=self.min_samples)


@dataclass(frozen=True)
class RetrainTrigger:
    """spec.monitoring.retrain: a Job made from `job_template` (a Job's metadata + spec, kept as written: the CRD
    checks its shape) once the Drifted condition has been True for `for_seconds`; one at a time, and not again
    until `cooldown_seconds` after the last one ended."""

    job_template: Mapping[str, Any]
    for_seconds: float = 600.0
    cooldown_seconds: float = 3600.0
    # With feedback labels in the drift window: retrain only while a drifted version's accuracy on them is below
    # this. Without labels drift alone triggers (labels are optional, and often late).
    min_accuracy: float | None = None


@dataclass(frozen=True)
class MonitoringSpec:
    drift: DriftWatch | None = None  # None: no drift watch
    retrain: RetrainTrigger | None = None  # None: drift is only reported

    @property
    def drift_watch(self) -> DriftWatch | None:
        """The drift watch in force (None when absent or disabled)."""
        return self.drift if self.drift is not None and self.drift.enabled else None


def parse_monitoring(d: Any) -> MonitoringSpec | None:
    """spec.monitoring, or None when absent; ValueError names the field.

    >>> parse_monitoring({"drift": {"window": "10s", "interval": "2s"}}).drift.window_seconds
    10.0
    >>> parse_monitoring({"drift": {"window": "1s", "interval": "2s"}})
    Traceback (most recent call last):
    ...
    ValueError: spec.monitoring.drift.window: must be at least the interval (2s)
    """
    if d is None:
        return None
    if not isinstance(d, Mapping):
        raise ValueError("spec.monitoring: must be an object")
    drift = d.get("drift")
    retrain = d.get("retrain")
    if retrain is not None and drift is None:
        raise ValueError("spec.monitoring.retrain: needs spec.monitoring.drift, whose Drifted condition triggers it")
    return MonitoringSpec(drift=None if drift is None else _drift(drift),
                          retrain=None if retrain is None else _retrain(retrain))


def _retrain(d: Any) -> RetrainTrigger:
    where = "spec.monitoring.retrain"
    if not isinstance(d, Mapping):
        raise ValueError(f"{where}: must be an object")
    template = d.get("jobTemplate")
    pod = (((template or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
    containers = pod.get("containers") if isinstance(pod, Mapping) else None
    if not isinstance(template, Mapping) or not isinstance(containers, list) or not containers or not all(
            isinstance(c, Mapping) and c.get("name") and c.get("image") for c in containers):
        raise ValueError(f"{where}.jobTemplate.spec.template.spec.containers: required, each with a name and image")
    durations = {}
    for key, default in (("for", RetrainTrigger.for_seconds), ("cooldown", RetrainTrigger.cooldown_seconds)):
        value = d.get(key)
        durations[key] = default if value is None else parse_duration(value, f"{where}.{key}")
    minimum = d.get("minAccuracy")
    if minimum is not None and (isinstance(minimum, bool) or not isinstance(minimum, int | float)
                                or not 0 < minimum <= 1):
        raise ValueError(f"{where}.minAccuracy: must be a number in (0, 1], got {minimum!r}")
    return RetrainTrigger(job_template=dict(template), for_seconds=durations["for"],
                          cooldown_seconds=durations["cooldown"],
                          min_accuracy=None if minimum is None else float(minimum))


def _drift(d: Any) -> DriftWatch:
    where = "spec.monitoring.drift"
    if not isinstance(d, Mapping):
        raise ValueError(f"{where}: must be an object")
    enabled = d.get("enabled", DriftWatch.enabled)
    if not isinstance(enabled, bool):
        raise ValueError(f"{where}.enabled: must be true or false, got {enabled!r}")
    window = _duration(d, "window", DriftWatch.window_seconds)
    interval = _duration(d, "interval", DriftWatch.interval_seconds)
    if window < interval:
        raise ValueError(f"{where}.window: must be at least the interval ({d.get('interval', '30s')})")
    return DriftWatch(
        enabled=enabled, window_seconds=window, interval_seconds=interval,
        psi_threshold=_number(d, "psiThreshold", DriftWatch.psi_threshold, 0.0, 100.0),
        alpha=_number(d, "alpha", DriftWatch.alpha, 0.0, 0.5),
        min_samples=int(_number(d, "minSamples", DriftWatch.min_samples, 1, 100_000_000, integer=True)),
        features=_features(d.get("features")),
    )


def _duration(d: Mapping[str, Any], key: str, default: float) -> float:
    value = d.get(key)
    seconds = default if value is None else parse_duration(value, f"spec.monitoring.drift.{key}")
    if seconds < 1:
        raise ValueError(f"spec.monitoring.drift.{key}: must be at least 1s")
    return seconds


def _number(d: Mapping[str, Any], key: str, default: float, low: float, high: float,
            integer: bool = False) -> float:
    """A number in (low, high] (an integer in [low, high])."""
    value = d.get(key, default)
    number = isinstance(value, int | float) and not isinstance(value, bool) and (
        isinstance(value, int) or not integer)
    if not number or not (low <= value <= high if integer else low < value <= high):
        span = f"[{low}, {high}]" if integer else f"({low}, {high}]"
        raise ValueError(f"spec.monitoring.drift.{key}: must be {'an integer' if integer else 'a number'} "
                         f"in {span}, got {value!r}")
    return float(value)


def _features(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not value:
        raise ValueError("spec.monitoring.drift.features: must be a non-empty list of feature names")
    for i, name in enumerate(value):
        if not isinstance(name, str) or not re.fullmatch(FEATURE_PATTERN, name):
            raise ValueError(f"spec.monitoring.drift.features[{i}]: {name!r} does not match {FEATURE_PATTERN}")
    if len(set(value)) != len(value):
        raise ValueError("spec.monitoring.drift.features: names must be unique")
    return tuple(value)
