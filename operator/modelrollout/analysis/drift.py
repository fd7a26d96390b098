"""Input drift: is a window of live inputs distributed like the training inputs, feature by feature?

For each feature the live counts per reference bin (modelserver.driftref) are compared with the training
counts in two ways, and a feature drifts only when both say so:

- the **population stability index**, PSI = sum over bins of (live share - reference share) x
  ln(live share / reference share): the size of the shift, the number ML teams know (under 0.1 stable, 0.1-0.2
  moderate, above 0.2 a major shift), blind to sample size;
- a **chi-square test of homogeneity** between the two samples of counts (live window vs training rows): is the
  shift more than the window's noise? Its p-values are adjusted across features by Holm's step-down method, so
  the chance that any feature of a stable input is flagged in a window stays below alpha however many features
  the model has.

The PSI threshold keeps a huge window from flagging a trivial shift; the test keeps a small window's noise from
crossing the threshold. Each window is a fresh test at alpha (windows do not overlap in what they count), so the
operator asks for drift to persist for a `for:` duration before acting, as Prometheus alerts do.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from scipy.stats import chi2

# Shares are floored here in PSI so that an empty bin on either side gives a large, finite term.
PSI_FLOOR = 1e-4


class BinnedFeature(Protocol):
    """One feature of the training reference (modelserver.driftref.FeatureReference has this shape; the
    analysis package stays free of the server's code)."""

    @property
    def name(self) -> str: ...

    @property
    def counts(self) -> Sequence[int]: ...


@dataclass(frozen=True)
class DriftConfig:
    alpha: float = 0.01  # family-wise, across features, per window
    psi_threshold: float = 0.2  # "a major shift"
    min_samples: int = 200  # live inputs in the window before a feature is judged


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    samples: int
    psi: float
    chi_square: float
    p_value: float
    adjusted_p: float  # Holm
    drifted: bool

    def describe(self) -> str:
        return (f"{self.feature}: PSI {self.psi:.3f}, chi-square {self.chi_square:.1f} "
                f"(p {self.adjusted_p:.2g} after Holm) over {self.samples} inputs")


@dataclass(frozen=True)
class DriftReport:
    features: tuple[FeatureDrift, ...]
    judged: bool  # false: too few live inputs in the window to judge any feature

    @property
    def drifted(self) -> tuple[FeatureDrift, ...]:
        return tuple(f for f in self.features if f.drifted)

    def describe(self) -> str:
        if not self.judged:
            samples = max((f.samples for f in self.features), default=0)
            return f"not judged: {samples} live inputs in the window"
        if not self.drifted:
            worst = max(self.features, key=lambda f: f.psi)
            return f"no drift; largest shift {worst.describe()}"
        return "drifted: " + "; ".join(f.describe() for f in sorted(self.drifted, key=lambda f: -f.psi))


def psi(live: Sequence[float], reference: Sequence[float]) -> float:
    """Population stability index between two count vectors over the same bins.

    >>> round(psi([50, 50], [50, 50]), 6)
    0.0
    >>> round(psi([90, 10], [50, 50]), 3)
    0.879
    """
    live_total, ref_total = sum(live), sum(reference)
    out = 0.0
    for lv, rv in zip(live, reference, strict=True):
        p, q = max(lv / live_total, PSI_FLOOR), max(rv / ref_total, PSI_FLOOR)
        out += (p - q) * math.log(p / q)
    return out


def homogeneity(live: Sequence[float], reference: Sequence[float]) -> tuple[float, float]:
    """(chi-square, p-value) of the 2 x k test that both count vectors come from one distribution.

    Bins empty on both sides carry no information and are left out of the degrees of freedom.
    """
    cells = [(lv, rv) for lv, rv in zip(live, reference, strict=True) if lv + rv > 0]
    live_total, ref_total = sum(c[0] for c in cells), sum(c[1] for c in cells)
    total = live_total + ref_total
    if len(cells) < 2 or live_total == 0 or ref_total == 0:
        return 0.0, 1.0
    statistic = 0.0
    for lv, rv in cells:
        column = lv + rv
        for observed, row_total in ((lv, live_total), (rv, ref_total)):
            expected = column * row_total / total
            statistic += (observed - expected) ** 2 / expected
    return statistic, float(chi2.sf(statistic, len(cells) - 1))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (monotone, capped at 1).

    >>> holm([0.01, 0.04, 0.03])
    [0.03, 0.06, 0.06]
    """
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def assess_drift(reference: Sequence[BinnedFeature], live: Mapping[str, Sequence[float]],
                 config: DriftConfig) -> DriftReport:
    """Judge one window: `reference` is the training reference's features, `live` maps each feature name to
    its live counts per reference bin.

    A feature missing from `live`, or with the wrong number of bins, counts as 0 inputs: missing data is
    never "no drift" - the report says it was not judged.
    """
    rows = [_compare(f, live.get(f.name)) for f in reference]
    judged_rows = [r for r in rows if r[1] >= config.min_samples]
    adjusted = iter(holm([r[4] for r in judged_rows]))
    out = []
    for feature, samples, score, statistic, p_value in rows:
        if samples < config.min_samples:
            out.append(FeatureDrift(feature.name, samples, score, statistic, p_value, 1.0, False))
            continue
        p_adj = next(adjusted)
        drifted = p_adj < config.alpha and score >= config.psi_threshold
        out.append(FeatureDrift(feature.name, samples, score, statistic, p_value, p_adj, drifted))
    return DriftReport(tuple(out), bool(judged_rows))


def _compare(feature: BinnedFeature, counts: Sequence[float] | None) -> tuple[BinnedFeature, int, float,
                                                                               float, float]:
    if counts is None or len(counts) != len(feature.counts) or sum(counts) <= 0:
        return feature, 0, 0.0, 0.0, 1.0
    statistic, p_value = homogeneity(counts, feature.counts)
    return feature, int(sum(counts)), psi(counts, feature.counts), statistic, p_value
