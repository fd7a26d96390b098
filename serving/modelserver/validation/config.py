"""The thresholds of a validation run, parsed once from the camelCase mapping of `spec.validation.checks`
(or the CI tool's YAML file, which has the same shape). ValueError names the bad field.

    >>> c = ValidationConfig.from_dict({"minAccuracy": 0.9, "maxRegression": {"f1": 2}})
    >>> c.min_scores["accuracy"], c.max_regression["f1"], c.label_column
    (0.9, 2.0, 'label')
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SCORES = ("accuracy", "precision", "recall", "f1")
# camelCase minimum keys of the spec, per score name.
MIN_KEYS = {"accuracy": "minAccuracy", "precision": "minPrecision", "recall": "minRecall", "f1": "minF1"}
DTYPES = ("float", "int")
KNOWN_FIELDS = frozenset({"labelColumn", "features", "allowMissing", "maxDuplicateFraction", "maxRegression",
                          "perClass", "maxPredictionShift", *MIN_KEYS.values()})


@dataclass(frozen=True)
class FeatureRule:
    """One declared feature column: its name, its dtype, and the value range every row must be in."""

    name: str
    dtype: str = "float"
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class ValidationConfig:
    label_column: str = "label"  # CSV only; .npz files carry y
    features: tuple[FeatureRule, ...] = ()  # empty: every column but the label, any range
    allow_missing: bool = False
    max_duplicate_fraction: float = 0.05  # real holdouts repeat a few rows (iris has one duplicate)
    min_scores: Mapping[str, float] = field(default_factory=dict)  # score name -> minimum, in [0, 1]
    max_regression: Mapping[str, float] = field(default_factory=dict)  # score name -> points below stable
    per_class: bool = False  # also check precision / recall / F1 of every class
    max_prediction_shift: float | None = None  # total variation distance of predicted-class shares

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "spec.validation.checks") -> ValidationConfig:
        unknown = sorted(set(d) - KNOWN_FIELDS)
        if unknown:
            raise ValueError(f"{where}.{unknown[0]}: unknown field (known: {', '.join(sorted(KNOWN_FIELDS))})")
        label = d.get("labelColumn", cls.label_column)
        if not isinstance(label, str) or not label:
            raise ValueError(f"{where}.labelColumn: must be a non-empty string")
        shift = d.get("maxPredictionShift")
        return cls(
            label_column=label,
            features=_features(d.get("features") or [], f"{where}.features"),
            allow_missing=_bool(d.get("allowMissing", cls.allow_missing), f"{where}.allowMissing"),
            max_duplicate_fraction=_fraction(d.get("maxDuplicateFraction", cls.max_duplicate_fraction),
                                             f"{where}.maxDuplicateFraction"),
            min_scores={s: _fraction(d[k], f"{where}.{k}") for s, k in MIN_KEYS.items() if d.get(k) is not None},
            max_regression=_regressions(d.get("maxRegression") or {}, f"{where}.maxRegression"),
            per_class=_bool(d.get("perClass", cls.per_class), f"{where}.perClass"),
            max_prediction_shift=None if shift is None else _fraction(shift, f"{where}.maxPredictionShift"),
        )

    def has_model_checks(self) -> bool:
        return bool(self.min_scores or self.max_regression or self.max_prediction_shift is not None)


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name}: must be a finite number, got {value!r}")
    return float(value)


def _fraction(value: Any, name: str) -> float:
    number = _number(value, name)
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"{name}: {number:g} is outside [0, 1]")
    return number


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name}: must be true or false, got {value!r}")
    return value


def _regressions(d: Any, where: str) -> dict[str, float]:
    if not isinstance(d, Mapping):
        raise ValueError(f"{where}: must be an object")
    out = {}
    for key, value in d.items():
        if key not in SCORES:
            raise ValueError(f"{where}.{key}: unknown score (known: {', '.join(SCORES)})")
        points = _number(value, f"{where}.{key}")
        if not 0.0 <= points <= 100.0:
            raise ValueError(f"{where}.{key}: {points:g} points is outside [0, 100]")
        out[key] = points
    return out


def _features(items: Any, where: str) -> tuple[FeatureRule, ...]:
    if not isinstance(items, list):
        raise ValueError(f"{where}: must be a list")
    rules = tuple(_feature(item, f"{where}[{i}]") for i, item in enumerate(items))
    names = [r.name for r in rules]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"{where}: feature {duplicated[0]!r} is declared twice")
    return rules


def _feature(item: Any, where: str) -> FeatureRule:
    if not isinstance(item, Mapping):
        raise ValueError(f"{where}: must be an object")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}.name: required, must be a non-empty string")
    dtype = item.get("dtype", FeatureRule.dtype)
    if dtype not in DTYPES:
        raise ValueError(f"{where}.dtype: {dtype!r} must be one of {', '.join(DTYPES)}")
    low = None if item.get("min") is None else _number(item["min"], f"{where}.min")
    high = None if item.get("max") is None else _number(item["max"], f"{where}.max")
    if low is not None and high is not None and low > high:
        raise ValueError(f"{where}: min {low:g} is above max {high:g}")
    return FeatureRule(name=name, dtype=dtype, min=low, max=high)
