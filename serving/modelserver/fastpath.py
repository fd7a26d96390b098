"""Direct predict paths for the commonest scikit-learn models, used only where they agree exactly.

Why: for small models scikit-learn's per-call machinery costs far more than the arithmetic. Measured on
the benchmark machine, a LogisticRegression(20 features) `predict` of one row takes ~100 us, of which
the matrix product is ~3 us (the rest is input validation, array-API namespace and dataframe checks);
a RandomForestClassifier(50) takes ~2.3 ms, of which the 50 tree lookups are ~0.13 ms (the rest is
joblib's Parallel dispatch, even with n_jobs=None). The server has already validated every request
(2-D float64, right feature count, finite), so it can skip straight to the arithmetic.

Safety: a path is offered only for exact estimator types whose predict is the library code this
module mirrors, and only after it reproduced the estimator's own output on probe rows at load time
(`agrees_with`): identical predicted classes, probabilities equal to the last bit. Anything else keeps
calling the estimator. `MODELSERVER_FAST_PATH=false` turns it off.

>>> from sklearn.linear_model import LogisticRegression
>>> x = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0], [-1.0, 0.5]])
>>> model = LogisticRegression().fit(x, [0, 1, 1, 0])
>>> path = fast_path_for(model, n_features=2)
>>> type(path).__name__, path.predict(x).tolist() == model.predict(x).tolist()
('LinearClassifierPath', True)
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression, RidgeClassifier, SGDClassifier
from sklearn.linear_model._base import LinearClassifierMixin
from sklearn.svm import LinearSVC

# Types whose predict() is LinearClassifierMixin's: scores = X @ coef_.T + intercept_, then argmax.
_LINEAR_CLASSIFIERS = (LogisticRegression, RidgeClassifier, SGDClassifier, LinearSVC)
# Types whose predict_proba() averages the trees' leaf fractions in estimator order.
_FOREST_CLASSIFIERS = (RandomForestClassifier, ExtraTreesClassifier)
_PROBE_ROWS = 256


class FastPath(Protocol):
    def predict(self, rows: np.ndarray) -> np.ndarray: ...

    def predict_with_proba(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(predict, predict_proba) in one pass, or None when this path has no probabilities."""


class LinearClassifierPath:
    """LinearClassifierMixin.predict without validation: the same product, sum and argmax."""

    def __init__(self, estimator: Any) -> None:
        coef = np.asarray(estimator.coef_)
        self._coef_t = coef.T if coef.ndim == 2 else coef
        self._intercept = np.asarray(estimator.intercept_)
        self._classes = np.asarray(estimator.classes_)

    def predict(self, rows: np.ndarray) -> np.ndarray:
        scores = rows @ self._coef_t + self._intercept
        if scores.ndim > 1 and scores.shape[1] == 1:
            scores = scores.reshape(-1)
        indices = (scores > 0).astype(np.intp) if scores.ndim == 1 else scores.argmax(axis=1)
        return self._classes.take(indices, axis=0)

    def predict_with_proba(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        return None  # LogisticRegression's probabilities differ by solver and class count: ask it


class ForestClassifierPath:
    """ForestClassifier.predict_proba/predict without joblib: the trees' fractions summed in order."""

    def __init__(self, estimator: Any) -> None:
        self._trees = [tree.tree_ for tree in estimator.estimators_]
        self._n_classes = int(estimator.n_classes_)
        self._classes = np.asarray(estimator.classes_)

    def _proba(self, rows: np.ndarray) -> np.ndarray:
        # Trees compare float32 thresholds; the forest casts its input the same way.
        x = np.ascontiguousarray(rows, dtype=np.float32)
        proba = np.zeros((x.shape[0], self._n_classes), dtype=np.float64)
        for tree in self._trees:
            proba += tree.predict(x)[:, : self._n_classes]
        proba /= len(self._trees)
        return proba

    def predict(self, rows: np.ndarray) -> np.ndarray:
        return self._classes.take(np.argmax(self._proba(rows), axis=1), axis=0)

    def predict_with_proba(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        proba = self._proba(rows)
        return self._classes.take(np.argmax(proba, axis=1), axis=0), proba


def _candidate(estimator: Any) -> FastPath | None:
    kind = type(estimator)
    if kind in _LINEAR_CLASSIFIERS and kind.predict is LinearClassifierMixin.predict:
        return LinearClassifierPath(estimator)
    if kind in _FOREST_CLASSIFIERS and getattr(estimator, "n_outputs_", 0) == 1:
        return ForestClassifierPath(estimator)
    return None


def probe_rows(n_features: int, seed: int = 0) -> np.ndarray:
    """Rows at several scales around zero, plus the zero row, to cross decision boundaries.

    >>> probe_rows(3).shape
    (256, 3)
    """
    rng = np.random.default_rng(seed)
    scales = np.repeat([0.01, 0.3, 1.0, 3.0, 100.0], -(-(_PROBE_ROWS - 1) // 5))[: _PROBE_ROWS - 1]
    rows = rng.standard_normal((_PROBE_ROWS - 1, n_features)) * scales[:, None]
    return np.vstack([np.zeros((1, n_features)), rows])


def agrees_with(estimator: Any, path: FastPath, rows: np.ndarray) -> bool:
    """True when `path` gives exactly the estimator's predictions (and probabilities) on `rows`."""
    try:
        if not np.array_equal(path.predict(rows), np.asarray(estimator.predict(rows))):
            return False
        both = path.predict_with_proba(rows)
        return both is None or (np.array_equal(both[0], np.asarray(estimator.predict(rows)))
                                and np.array_equal(both[1], np.asarray(estimator.predict_proba(rows))))
    except (ValueError, TypeError, AttributeError, IndexError):
        return False


def fast_path_for(estimator: Any, n_features: int) -> FastPath | None:
    """A direct path for `estimator` that reproduced its output on probe rows, else None."""
    try:
        path = _candidate(estimator)
    except (AttributeError, TypeError, ValueError):  # a fitted-looking object missing an attribute
        return None
    if path is None or not agrees_with(estimator, path, probe_rows(n_features)):
        return None
    return path
