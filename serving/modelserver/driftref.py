"""The training-input reference a model ships with, for drift watching (issue 15 item 2).

Per feature: quantile bin edges from the training inputs and how many training rows fell in each bin. The
server counts live inputs into the same bins and the operator compares the two distributions, so both sides
must assign a value to a bin the same way: `bin_index` is that one rule, used by both.

The file is JSON, published beside the model and covered by its own digest:

    {"format": "modelrollout.drift-reference/v1", "rows": 2000,
     "features": [{"name": "f0", "edges": [-1.2, -0.5, ...], "counts": [200, 201, ...]}, ...]}

`edges` has one value fewer than `counts`: bin 0 holds values below edges[0], bin i values in
[edges[i-1], edges[i]), the last bin values at or above edges[-1]. A NaN goes to no bin (the server
refuses NaN inputs unless the model accepts them, and then it is counted apart).
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

FORMAT = "modelrollout.drift-reference/v1"
MAX_BINS = 20  # bounds the series a server exports: features x bins (the server also caps features)


class ReferenceError(ValueError):
    """The reference file is not one this code can use; the message says which field."""


@dataclass(frozen=True)
class FeatureReference:
    name: str
    edges: tuple[float, ...]
    counts: tuple[int, ...]

    @property
    def bins(self) -> int:
        return len(self.counts)


@dataclass(frozen=True)
class DriftReference:
    rows: int
    features: tuple[FeatureReference, ...]

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "rows": self.rows, "features": [
            {"name": f.name, "edges": list(f.edges), "counts": list(f.counts)} for f in self.features]}, indent=1)


def bin_index(edges: Sequence[float], value: float) -> int:
    """The bin a value falls in: the number of edges at or below it.

    >>> [bin_index([0.0, 1.0], v) for v in (-5.0, 0.0, 0.5, 1.0, 9.0)]
    [0, 1, 1, 2, 2]
    """
    return bisect.bisect_right(edges, value)


def typical_row(reference: DriftReference) -> list[float]:
    """One training-like input: per feature, the lower edge of the bin holding the median (edges are observed
    training values), for warming a model up on a row it was trained to accept.

    >>> f0, f1 = FeatureReference("f0", (2.0, 5.0), (2, 6, 2)), FeatureReference("f1", (1.0,), (7, 3))
    >>> typical_row(DriftReference(10, (f0, f1)))
    [2.0, 1.0]
    """
    return [_median_edge(f) for f in reference.features]


def _median_edge(feature: FeatureReference) -> float:
    if not feature.edges:
        return 0.0
    total, seen = sum(feature.counts), 0
    for i, count in enumerate(feature.counts):
        seen += count
        if 2 * seen >= total:
            return feature.edges[max(i - 1, 0)]
    return feature.edges[-1]


def build(rows: Any, names: Sequence[str] | None = None, bins: int = 10) -> DriftReference:
    """Quantile bins of each column of `rows` (n x d). Repeated quantiles (a discrete feature) merge into one
    edge, so such a feature has fewer bins."""
    if not 2 <= bins <= MAX_BINS:
        raise ReferenceError(f"bins must be between 2 and {MAX_BINS}, got {bins}")
    x = np.asarray(rows, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < bins:
        raise ReferenceError(f"need a 2-D array with at least {bins} rows, got shape {x.shape}")
    labels = list(names) if names is not None else [f"f{i}" for i in range(x.shape[1])]
    if len(labels) != x.shape[1]:
        raise ReferenceError(f"{len(labels)} names for {x.shape[1]} features")
    features = []
    for name, column in zip(labels, x.T, strict=True):
        finite = column[np.isfinite(column)]
        # Edges are observed values (not interpolated), so a discrete feature keeps its own values as edges.
        inner = np.quantile(finite, np.arange(1, bins) / bins, method="inverted_cdf")
        edges = tuple(sorted({float(e) for e in inner}))
        counts = np.bincount(np.searchsorted(edges, finite, side="right"), minlength=len(edges) + 1)
        features.append(FeatureReference(name, edges, tuple(int(c) for c in counts)))
    return DriftReference(int(x.shape[0]), tuple(features))


def parse(text: str) -> DriftReference:
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ReferenceError(f"not JSON: {exc}") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ReferenceError(f"format must be {FORMAT!r}")
    raw = document.get("features")
    if not isinstance(raw, list) or not raw:
        raise ReferenceError("features must be a non-empty list")
    features = tuple(_feature(i, f) for i, f in enumerate(raw))
    if len({f.name for f in features}) != len(features):
        raise ReferenceError("features[].name must be unique")
    return DriftReference(int(document.get("rows") or 0), features)


def _feature(i: int, raw: Any) -> FeatureReference:
    where = f"features[{i}]"
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
        raise ReferenceError(f"{where}.name must be a non-empty string")
    edges, counts = raw.get("edges"), raw.get("counts")
    if not isinstance(edges, list) or not all(isinstance(e, int | float) and math.isfinite(e) for e in edges):
        raise ReferenceError(f"{where}.edges must be a list of finite numbers")
    if list(edges) != sorted(set(edges)):
        raise ReferenceError(f"{where}.edges must be strictly increasing")
    if not isinstance(counts, list) or len(counts) != len(edges) + 1 or len(counts) > MAX_BINS:
        raise ReferenceError(f"{where}.counts must have len(edges) + 1 entries, at most {MAX_BINS}")
    if not all(isinstance(c, int) and c >= 0 for c in counts) or sum(counts) == 0:
        raise ReferenceError(f"{where}.counts must be non-negative integers, not all 0")
    return FeatureReference(raw["name"], tuple(float(e) for e in edges), tuple(counts))
