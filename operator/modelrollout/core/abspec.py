"""spec.strategy.abTest as typed, frozen values (its own module: spec.py parses every other section).

The CRD validates the same ranges at admission; this parser gives the core one typed shape and a ValueError
naming the field for anything that slips through. Defaults live here and nowhere else (test_defaults.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelrollout.durations import parse_duration

WHERE = "spec.strategy.abTest"


@dataclass(frozen=True)
class ABGoal:
    """What an A/B experiment compares: accuracy from feedback labels (correct / judged, per arm).
    min_effect: a winner must beat the other by more than this (a share: 0.02 is 2 points)."""

    type: str = "accuracy"
    min_effect: float = 0.0
    alpha: float = 0.05


@dataclass(frozen=True)
class ABTestStrategy:
    """An A/B experiment (core/abtest.py): the stable version (A) and the new one (B) serve side by side,
    B on `weight` percent of the pods, until the goal's always-valid interval names a winner, or
    `max_samples` judged predictions (both arms together) or `max_duration_seconds` pass without one.
    spec.analysis is its guard-rail (error rate, latency), judged as in a canary."""

    goal: ABGoal = field(default_factory=ABGoal)
    weight: int = 50
    min_samples_per_arm: int = 200
    max_samples: int = 20_000
    max_duration_seconds: float = 3600.0
    has_shadow = False  # no shadow stage in an A/B experiment

    def shadow_at(self, index: int) -> None:
        return None


def parse_ab_test(d: Mapping[str, Any]) -> ABTestStrategy:
    """Parse spec.strategy.abTest; ValueError names the first bad field.

    >>> parse_ab_test({"weight": 30, "maxDuration": "20m", "goal": {"minEffect": 0.02}}).max_duration_seconds
    1200.0
    >>> parse_ab_test({"goal": {"type": "outcome"}})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: spec.strategy.abTest.goal.type: 'outcome' is not supported (accuracy only: ...
    """
    goal = d.get("goal", {})
    if not isinstance(goal, Mapping):
        raise ValueError(f"{WHERE}.goal: must be an object")
    kind = goal.get("type", ABGoal.type)
    if kind != "accuracy":
        raise ValueError(f"{WHERE}.goal.type: {kind!r} is not supported (accuracy only: the server does not count "
                         "numeric outcomes yet)")
    duration = d.get("maxDuration")
    return ABTestStrategy(
        goal=ABGoal(type=kind,
                    min_effect=_number(goal.get("minEffect", ABGoal.min_effect), f"{WHERE}.goal.minEffect", 0.0, 1.0),
                    alpha=_number(goal.get("alpha", ABGoal.alpha), f"{WHERE}.goal.alpha", 0.0, 0.5, positive=True)),
        weight=_int(d.get("weight", ABTestStrategy.weight), f"{WHERE}.weight", 1, 99),
        min_samples_per_arm=_int(d.get("minSamplesPerArm", ABTestStrategy.min_samples_per_arm),
                                 f"{WHERE}.minSamplesPerArm", 1, 100_000_000),
        max_samples=_int(d.get("maxSamples", ABTestStrategy.max_samples), f"{WHERE}.maxSamples", 2, 1_000_000_000),
        max_duration_seconds=ABTestStrategy.max_duration_seconds if duration is None else parse_duration(
            duration, f"{WHERE}.maxDuration"),
    )


def _int(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name}: {value} is outside [{low}, {high}]")
    return value


def _number(value: Any, name: str, low: float, high_open: float, positive: bool = False) -> float:
    """A number in [low, high_open) ((low, high_open) when positive), as the CRD's CEL rule says."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}: must be a number, got {value!r}")
    if value < low or value >= high_open or (positive and value == low):
        raise ValueError(f"{name}: {value} must be in {'(' if positive else '['}{low:g}, {high_open:g})")
    return float(value)
