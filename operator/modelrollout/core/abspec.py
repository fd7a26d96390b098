"""spec.strategy.abTest as typed, frozen values (its own module: spec.py parses every other section).

The CRD validates the same ranges at admission; this parser gives the core one typed shape and a ValueError
naming the field for anything that slips through. Defaults live here and nowhere else (test_defaults.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelrollout.durations import parse_duration

WHERE = "spec.strategy.abTest"
# modelserver.contract.OUTCOME_NAME_PATTERN (the core imports no server module; test_abtest_strategy compares
# them, and the CRD's pattern): the server counts only names of this shape, as label values.
OUTCOME_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
COOKIE_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"  # an RFC 6265 token without the characters a regex would need
ACCURACY = "accuracy"
OUTCOME = "outcome"


@dataclass(frozen=True)
class ABGoal:
    """What an A/B experiment compares: accuracy from feedback labels (correct / judged, per arm), or the mean
    of a numeric outcome clients post with feedback (`outcome` names it: revenue, a rating, a conversion 0/1).
    min_effect: a winner must beat the other by more than this (accuracy: a share, 0.02 is 2 points; an
    outcome: in its own units). binary: the outcome is 0/1, so the effect size is the difference in
    proportions rather than Cohen's d."""

    type: str = ACCURACY
    min_effect: float = 0.0
    alpha: float = 0.05
    outcome: str = ""
    binary: bool = False

    @property
    def is_binary(self) -> bool:
        return self.type == ACCURACY or self.binary


@dataclass(frozen=True)
class StickySplit:
    """Keep each user on one arm (with the gatewayAPI router): the version that answers a user's first request
    sets the cookie `cookie` to its own version for `max_age_seconds`, and the operator's route rules send every
    request carrying it to that version. The user, not the request, is then the unit of the experiment, so the
    goal must be an outcome posted once per user (docs/modelrollout.md, "Sticky split")."""

    cookie: str = "modelrollout-arm"
    max_age_seconds: float = 86400.0


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
    sticky: StickySplit | None = None
    has_shadow = False  # no shadow stage in an A/B experiment

    @property
    def outcome_names(self) -> tuple[str, ...]:
        """The numeric outcomes the rollout's pods must count: the goal's, when it is one."""
        return (self.goal.outcome,) if self.goal.type == OUTCOME else ()

    def shadow_at(self, index: int) -> None:
        return None


def parse_ab_test(d: Mapping[str, Any]) -> ABTestStrategy:
    """Parse spec.strategy.abTest; ValueError names the first bad field.

    >>> parse_ab_test({"weight": 30, "maxDuration": "20m", "goal": {"minEffect": 0.02}}).max_duration_seconds
    1200.0
    >>> parse_ab_test({"goal": {"type": "outcome", "outcome": "revenue", "minEffect": 2.5}}).goal.min_effect
    2.5
    >>> parse_ab_test({"goal": {"type": "outcome"}})
    Traceback (most recent call last):
    ...
    ValueError: spec.strategy.abTest.goal.outcome: required with type outcome (the name clients post it under)
    """
    duration = d.get("maxDuration")
    goal = _goal(d.get("goal", {}))
    return ABTestStrategy(
        goal=goal,
        sticky=None if "sticky" not in d else _sticky(d["sticky"], goal),
        weight=_int(d.get("weight", ABTestStrategy.weight), f"{WHERE}.weight", 1, 99),
        min_samples_per_arm=_int(d.get("minSamplesPerArm", ABTestStrategy.min_samples_per_arm),
                                 f"{WHERE}.minSamplesPerArm", 1, 100_000_000),
        max_samples=_int(d.get("maxSamples", ABTestStrategy.max_samples), f"{WHERE}.maxSamples", 2, 1_000_000_000),
        max_duration_seconds=ABTestStrategy.max_duration_seconds if duration is None else parse_duration(
            duration, f"{WHERE}.maxDuration"),
    )


def _sticky(d: Any, goal: ABGoal) -> StickySplit:
    where = f"{WHERE}.sticky"
    if not isinstance(d, Mapping):
        raise ValueError(f"{where}: must be an object")
    if goal.type != OUTCOME:
        raise ValueError(f"{where}: needs goal.type outcome (posted once per user: with a sticky split the user "
                         "is the unit, and per-prediction accuracy would count one user many times)")
    cookie = d.get("cookie", StickySplit.cookie)
    if not isinstance(cookie, str) or not re.fullmatch(COOKIE_NAME_PATTERN, cookie):
        raise ValueError(f"{where}.cookie: {cookie!r} must match {COOKIE_NAME_PATTERN}")
    age = StickySplit.max_age_seconds if d.get("maxAge") is None else parse_duration(d["maxAge"], f"{where}.maxAge")
    if age < 1:
        raise ValueError(f"{where}.maxAge: at least 1s")
    return StickySplit(cookie=cookie, max_age_seconds=age)


def _goal(goal: Any) -> ABGoal:
    if not isinstance(goal, Mapping):
        raise ValueError(f"{WHERE}.goal: must be an object")
    kind = goal.get("type", ABGoal.type)
    if kind not in (ACCURACY, OUTCOME):
        raise ValueError(f"{WHERE}.goal.type: {kind!r} must be {ACCURACY} or {OUTCOME}")
    name, binary = goal.get("outcome", ""), goal.get("binary", False)
    if kind == OUTCOME and not name:
        raise ValueError(f"{WHERE}.goal.outcome: required with type outcome (the name clients post it under)")
    if kind == ACCURACY and ("outcome" in goal or "binary" in goal):
        raise ValueError(f"{WHERE}.goal: outcome and binary only go with type outcome")
    if name and (not isinstance(name, str) or not re.fullmatch(OUTCOME_NAME_PATTERN, name)):
        raise ValueError(f"{WHERE}.goal.outcome: {name!r} must match {OUTCOME_NAME_PATTERN}")
    if not isinstance(binary, bool):
        raise ValueError(f"{WHERE}.goal.binary: must be true or false, got {binary!r}")
    # An outcome's effect is in its own units (revenue); accuracy's is a share below 1.
    top = 1.0 if kind == ACCURACY else float("inf")
    return ABGoal(type=kind, outcome=name, binary=binary,
                  min_effect=_number(goal.get("minEffect", ABGoal.min_effect), f"{WHERE}.goal.minEffect", 0.0, top),
                  alpha=_number(goal.get("alpha", ABGoal.alpha), f"{WHERE}.goal.alpha", 0.0, 0.5, positive=True))


def _int(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name}: {value} is outside [{low}, {high}]")
    return value


def _number(value: Any, name: str, low: float, high_open: float, positive: bool = False) -> float:
    """A number in [low, high_open) ((low, high_open) when positive), as the CRD's CEL rule says."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or value == float("inf"):
        raise ValueError(f"{name}: must be a number, got {value!r}")
    if value < low or value >= high_open or (positive and value == low):
        raise ValueError(f"{name}: {value} must be in {'(' if positive else '['}{low:g}, {high_open:g})")
    return float(value)
