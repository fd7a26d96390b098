"""The settings of a shadow stage's paired analysis, validated (see paired.py for what they mean).

A shadow step's `analysis` block (spec.strategy.canary.steps[].shadow.analysis) is parsed here, so these defaults
are the ones the CRD's defaults equal (tests/unit/test_defaults.py). Bad input raises ValueError naming the field:

>>> PairedConfig.from_spec({"margin": 0.01}).boundary
-0.01
>>> PairedConfig.from_spec({"margin": 0.01, "minImprovement": 0.01})
Traceback (most recent call last):
...
ValueError: spec.strategy.canary.steps[0].shadow.analysis.minImprovement: give either margin or minImprovement, not both
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PairedConfig:
    """The shadow stage's analysis settings, validated (a shadow step's `analysis` block).

    margin: Fail when the candidate is confidently less accurate than stable by more than `margin` (points as a
    fraction), Pass when confidently not. min_improvement: Pass only when confidently better by at least that,
    Fail when confidently not. At most one of the two; with neither the difference is reported, not judged.
    """

    min_agreement: float | None = None
    margin: float | None = None
    min_improvement: float | None = None
    min_samples: int = 200  # mirrored predictions compared before any verdict other than Inconclusive
    alpha: float = 0.05  # false-verdict budget over both checks and all looks

    @staticmethod
    def from_spec(raw: Mapping[str, Any] | None,
                  where: str = "spec.strategy.canary.steps[0].shadow.analysis") -> PairedConfig:
        """Parse the settings; errors name the field, e.g. "spec.strategy.canary.steps[0].shadow.analysis.margin"."""
        raw = raw or {}
        if not isinstance(raw, Mapping):
            raise ValueError(f"{where}: expected an object")
        known = {"minAgreement", "margin", "minImprovement", "minSamples", "alpha"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"{where}.{unknown[0]}: unknown field (use {', '.join(sorted(known))})")
        if "margin" in raw and "minImprovement" in raw:
            raise ValueError(f"{where}.minImprovement: give either margin or minImprovement, not both")
        if not {"minAgreement", "margin", "minImprovement"} & set(raw):
            raise ValueError(f"{where}: needs at least one of minAgreement, margin, minImprovement")
        config = PairedConfig(
            min_agreement=_share(raw, "minAgreement", where, allow_zero=False),
            margin=_share(raw, "margin", where, allow_zero=True),
            min_improvement=_share(raw, "minImprovement", where, allow_zero=True),
            min_samples=_positive_int(raw.get("minSamples", PairedConfig.min_samples), f"{where}.minSamples"),
            alpha=_number(raw.get("alpha", PairedConfig.alpha), f"{where}.alpha"),
        )
        if not 0.0 < config.alpha < 0.5:
            raise ValueError(f"{where}.alpha: must be between 0 and 0.5, got {config.alpha}")
        return config

    @property
    def boundary(self) -> float | None:
        """The paired difference that separates Pass from Fail: -margin, +minImprovement, or None (not judged)."""
        if self.min_improvement is not None:
            return self.min_improvement
        return None if self.margin is None else -self.margin

    @property
    def alpha_share(self) -> float:
        """Each judged check's share of alpha (union bound over the checks)."""
        judged = (self.min_agreement is not None) + (self.boundary is not None)
        return self.alpha / max(judged, 1)


def _number(value: Any, field_name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{field_name}: expected a number, got {value!r}")
    return float(value)


def _share(raw: Mapping[str, Any], key: str, where: str, allow_zero: bool) -> float | None:
    if key not in raw:
        return None
    value = _number(raw[key], f"{where}.{key}")
    if not (0.0 <= value < 1.0 if allow_zero else 0.0 < value < 1.0):
        low = "0 (inclusive)" if allow_zero else "0"
        raise ValueError(f"{where}.{key}: a share, must be between {low} and 1, got {value}")
    return value


def _positive_int(value: Any, field_name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{field_name}: must be a positive integer, got {value!r}")
    return value
