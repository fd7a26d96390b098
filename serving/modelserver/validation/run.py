"""`validate`: load both models and the holdout, run the data checks, then (only on good data) the model
checks. Every failure to read something becomes a failed Report with a message, never an exception:
the operator's Job and the CI tool both turn it into a verdict."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelserver.loading import LoadedModel, LoadError, load_model
from modelserver.settings import Settings
from modelserver.validation.config import ValidationConfig
from modelserver.validation.datachecks import data_checks, select_features
from modelserver.validation.holdout import DataError, Holdout, load_holdout
from modelserver.validation.modelchecks import model_checks
from modelserver.validation.report import Report
from modelserver.validation.scores import prediction_shift, scores


@dataclass(frozen=True)
class ModelRef:
    """A model file as the serving pods load it (spec.model: uri, digest, format, allowPickle)."""

    uri: str
    digest: str = ""
    format: str = "auto"
    allow_pickle: bool = False
    trusted_types: str = ""

    def load(self) -> LoadedModel:
        settings = dataclasses.replace(Settings(), model_uri=self.uri, model_digest=self.digest,
                                       model_format=self.format, allow_pickle=self.allow_pickle,
                                       model_trusted_types=self.trusted_types, fast_path=False)
        return load_model(settings)


def validate(baseline: ModelRef, candidate: ModelRef, data: str, config: ValidationConfig,
             data_sha256: str | None = None) -> Report:
    try:
        holdout = load_holdout(data, config, data_sha256)
    except DataError as exc:
        return Report(checks=(), error=str(exc))
    models: dict[str, LoadedModel] = {}
    for role, ref in (("candidate", candidate), ("stable", baseline)):
        try:
            models[role] = ref.load()
        except LoadError as exc:
            return Report(checks=(), rows=len(holdout.x), error=f"{role} model {ref.uri}: {exc}")
    classes = model_classes(models["candidate"].estimator)
    if classes is None:
        return Report(checks=(), rows=len(holdout.x),
                      error="the candidate model has no classes_: validation judges classifiers")
    data_report = data_checks(_canonical(holdout, classes), config, models["candidate"].n_features, classes)
    if any(c.failed for c in data_report):
        return Report(checks=tuple(data_report), rows=len(holdout.x))
    return _judge(holdout, config, models, classes, data_report)


def _judge(holdout: Holdout, config: ValidationConfig, models: dict[str, LoadedModel], classes: list[str],
           data_report: list[Any]) -> Report:
    _, picked = select_features(holdout, config)
    x = holdout.x[:, picked]
    y = [_label(v, classes) for v in holdout.y]
    predictions = {}
    for role, model in models.items():
        try:
            predictions[role] = [_label(v, classes) for v in model.estimator.predict(x)]
        except Exception as exc:  # whatever a model raises on these rows, the gate must report it
            return Report(checks=tuple(data_report), rows=len(x), error=f"{role} model cannot predict: {exc!r}")
    mine, theirs = scores(y, predictions["candidate"], classes), scores(y, predictions["stable"], classes)
    shift = prediction_shift(predictions["candidate"], predictions["stable"])
    return Report(checks=(*data_report, *model_checks(config, mine, theirs, shift)), rows=len(x))


def model_classes(estimator: Any) -> list[str] | None:
    classes = getattr(estimator, "classes_", None)
    if classes is None:
        return None
    return [_class_name(c) for c in np.asarray(classes).tolist()]


def _class_name(value: Any) -> str:
    """Numeric classes by value (1, 1.0 and "1" are one class), others by their text."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float):
        return f"{value:g}" if float(value) != int(value) else str(int(value))
    return str(value)


def _label(value: Any, classes: Sequence[str]) -> str:
    """A holdout label or a prediction as one of the class names, when it means one."""
    text = str(value).strip()
    if text in classes:
        return text
    try:
        return _class_name(float(text))
    except (ValueError, OverflowError):
        return text


def _canonical(holdout: Holdout, classes: Sequence[str]) -> Holdout:
    labels = np.asarray([_label(v, classes) for v in holdout.y], dtype=object)
    return dataclasses.replace(holdout, y=labels)
