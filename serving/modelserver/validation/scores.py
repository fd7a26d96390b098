"""Classification scores from a confusion matrix, with scikit-learn's conventions (labels fixed to the
model's classes, zero_division=0): tests/serving/validation pins each against sklearn.metrics.

    >>> s = scores(["a", "a", "b", "b"], ["a", "b", "b", "b"], ("a", "b"))
    >>> round(s.accuracy, 3), round(s.macro["precision"], 3), s.per_class["a"]["recall"]
    (0.75, 0.833, 0.5)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Scores:
    accuracy: float
    macro: dict[str, float]  # precision, recall, f1 averaged over classes with equal weight
    per_class: dict[str, dict[str, float]]  # class -> precision, recall, f1


def confusion(y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """counts[i, j]: rows of class i predicted as class j; labels outside `classes` are not counted."""
    index = {c: i for i, c in enumerate(classes)}
    counts = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for t, p in zip(y_true, y_pred, strict=True):
        if t in index and p in index:
            counts[index[t], index[p]] += 1
    return counts


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros(len(num)), where=den > 0)


def scores(y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str]) -> Scores:
    counts = confusion(y_true, y_pred, classes)
    hits = np.diag(counts).astype(np.float64)
    precision = _ratio(hits, counts.sum(axis=0).astype(np.float64))
    recall = _ratio(hits, counts.sum(axis=1).astype(np.float64))
    f1 = _ratio(2 * precision * recall, precision + recall)
    n = len(y_true)
    accuracy = sum(1 for t, p in zip(y_true, y_pred, strict=True) if t == p) / n if n else 0.0
    per_class = {c: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i])}
                 for i, c in enumerate(classes)}
    macro = {"precision": float(precision.mean()), "recall": float(recall.mean()), "f1": float(f1.mean())}
    return Scores(accuracy=accuracy, macro=macro, per_class=per_class)


def prediction_shift(a: Sequence[str], b: Sequence[str]) -> float:
    """Total variation distance between the shares of predicted classes, in [0, 1]: half the sum of the
    absolute differences, i.e. the share of predictions that would have to change class.

    >>> prediction_shift(["x", "x", "y", "y"], ["x", "y", "y", "y"])
    0.25
    """
    count_a, count_b = Counter(a), Counter(b)
    labels = sorted(set(count_a) | set(count_b))
    share_a = np.array([count_a[c] for c in labels], dtype=np.float64) / max(len(a), 1)
    share_b = np.array([count_b[c] for c in labels], dtype=np.float64) / max(len(b), 1)
    return float(0.5 * np.abs(share_a - share_b).sum())
