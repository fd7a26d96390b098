"""Calling the estimator: one blocking function from a validated matrix to the requested outputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.utils import get_tags

from modelserver.feedback import class_key
from modelserver.loading import LoadedModel


class ModelRejectedInput(Exception):
    """The estimator refused input that passed validation (answered 422: still the input's fault)."""


@dataclass(frozen=True)
class Outputs:
    predict: np.ndarray
    proba: np.ndarray | None = None

    def rows(self, start: int, stop: int) -> Outputs:
        proba = None if self.proba is None else self.proba[start:stop]
        return Outputs(self.predict[start:stop], proba)


class Predictor:
    """A loaded estimator with what the server needs to know about it."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.estimator: Any = loaded.estimator
        self.loaded = loaded
        classes = getattr(self.estimator, "classes_", None)
        self.is_classifier = classes is not None
        self.class_keys: tuple[str, ...] = tuple(class_key(c) for c in classes) if classes is not None else ()
        self.has_proba = self.is_classifier and callable(getattr(self.estimator, "predict_proba", None))
        self.allow_nan = _allows_nan(self.estimator)
        self.fast_path = loaded.fast_path

    def predict(self, rows: np.ndarray, want_proba: bool) -> Outputs:
        """Blocking. ValueError/TypeError from the estimator mean it refused these values."""
        fast = self.fast_path
        # The fast path was verified on finite rows only; NaN (for models that take it) goes the long way.
        if fast is not None and not (self.allow_nan and np.isnan(rows).any()):
            if not want_proba:
                return Outputs(fast.predict(rows))
            both = fast.predict_with_proba(rows)
            if both is not None:
                return Outputs(*both)
        try:
            predicted = np.asarray(self.estimator.predict(rows))
            proba = np.asarray(self.estimator.predict_proba(rows)) if want_proba else None
        except (ValueError, TypeError) as exc:
            raise ModelRejectedInput(f"the model refused the input: {exc}") from exc
        return Outputs(predicted, proba)

    def remembered(self, outputs: Outputs) -> tuple[Any, ...]:
        """What the feedback store keeps: class keys for classifiers, floats for regressors."""
        if self.is_classifier:
            return tuple(class_key(v) for v in outputs.predict.tolist())
        return tuple(float(v) for v in outputs.predict.ravel().tolist())


def _allows_nan(estimator: Any) -> bool:
    try:
        return bool(get_tags(estimator).input_tags.allow_nan)
    except Exception:  # an estimator without sklearn tags: assume the strict case
        return False
