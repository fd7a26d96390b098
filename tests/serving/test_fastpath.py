"""The direct predict paths give exactly the estimator's answers, and are refused wherever they might not."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression, Ridge, SGDClassifier

from modelserver.batching import AdaptiveBatcher
from modelserver.fastpath import (
    ForestClassifierPath,
    LinearClassifierPath,
    agrees_with,
    fast_path_for,
    probe_rows,
)
from modelserver.loading import LoadedModel, load_model
from modelserver.prediction import Outputs, Predictor

from .conftest import ExampleModels

pytestmark = pytest.mark.unit


def _data(n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    return make_classification(300, 8, n_informative=5, n_classes=n_classes, random_state=7)


def _fitted(factory: Callable[[], Any], n_classes: int, labels: list[Any] | None = None) -> tuple[Any, np.ndarray]:
    x, y = _data(n_classes)
    if labels is not None:  # string or float class labels must come back as themselves
        y = np.asarray(labels)[y]
    return factory().fit(x, y), x


CASES = [
    ("logistic, binary", lambda: LogisticRegression(), 2, None, LinearClassifierPath),
    ("logistic, 3 classes, string labels", lambda: LogisticRegression(), 3, ["a", "b", "c"], LinearClassifierPath),
    ("sgd, 3 classes", lambda: SGDClassifier(random_state=0), 3, None, LinearClassifierPath),
    ("forest, binary", lambda: RandomForestClassifier(20, random_state=0), 2, None, ForestClassifierPath),
    ("forest, 4 classes, float labels", lambda: RandomForestClassifier(20, random_state=0), 4,
     [-1.0, 2.0, 10.0, 40.0], ForestClassifierPath),
    ("extra trees, 3 classes", lambda: ExtraTreesClassifier(20, random_state=0), 3, None, ForestClassifierPath),
]


@pytest.mark.parametrize(("factory", "n_classes", "labels", "kind"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_the_fast_path_answers_exactly_as_the_estimator(factory: Callable[[], Any], n_classes: int,
                                                         labels: list[Any] | None, kind: type) -> None:
    estimator, x = _fitted(factory, n_classes, labels)
    path = fast_path_for(estimator, x.shape[1])
    assert isinstance(path, kind)
    rows = np.vstack([x, probe_rows(x.shape[1], seed=3)])  # training-like rows and unseen ones
    assert np.array_equal(path.predict(rows), estimator.predict(rows))
    assert path.predict(rows).dtype == estimator.predict(rows).dtype
    both = path.predict_with_proba(rows)
    if both is not None:
        assert np.array_equal(both[0], estimator.predict(rows))
        assert np.array_equal(both[1], estimator.predict_proba(rows))


class _ShiftedLogistic(LogisticRegression):
    """A subclass with its own predict: the fast path would silently ignore the override."""

    def predict(self, X: Any) -> Any:
        return super().predict(X)[::-1]


def test_estimators_it_does_not_mirror_keep_their_own_predict() -> None:
    x, y = _data(2)
    multi_output = RandomForestClassifier(5, random_state=0).fit(x, np.column_stack([y, 1 - y]))
    for estimator in (Ridge().fit(x, y), RandomForestRegressor(5, random_state=0).fit(x, y),
                      _ShiftedLogistic().fit(x, y), multi_output):
        assert fast_path_for(estimator, x.shape[1]) is None, type(estimator).__name__


def test_a_path_that_disagrees_with_its_estimator_is_refused() -> None:
    estimator, x = _fitted(LogisticRegression, 2)
    path = LinearClassifierPath(estimator)
    path._intercept = path._intercept + 5.0  # stands for a library change the mirror missed
    assert not agrees_with(estimator, path, probe_rows(x.shape[1]))


def _predictor(estimator: Any, x: np.ndarray) -> Predictor:
    return Predictor(LoadedModel(estimator, x.shape[1], "joblib", "sha256:0", 0.0,
                                 fast_path_for(estimator, x.shape[1])))


def test_rows_with_nan_take_the_estimators_own_path() -> None:
    estimator, x = _fitted(lambda: RandomForestClassifier(20, random_state=0), 3)
    predictor = _predictor(estimator, x)
    assert predictor.allow_nan and predictor.fast_path is not None
    rows = x[:50].copy()
    rows[::3, 2] = np.nan
    outputs = predictor.predict(rows, want_proba=True)
    assert np.array_equal(outputs.predict, estimator.predict(rows))
    assert outputs.proba is not None and np.array_equal(outputs.proba, estimator.predict_proba(rows))


def test_probabilities_of_a_linear_model_come_from_the_estimator() -> None:
    estimator, x = _fitted(LogisticRegression, 3)
    outputs = _predictor(estimator, x).predict(x[:20], want_proba=True)
    assert np.array_equal(outputs.predict, estimator.predict(x[:20]))
    assert outputs.proba is not None and np.array_equal(outputs.proba, estimator.predict_proba(x[:20]))


def test_the_setting_turns_the_fast_path_off(models: ExampleModels) -> None:
    on = load_model(models.settings("rf.joblib"))
    off = load_model(dataclasses.replace(models.settings("rf.joblib"), fast_path=False))
    assert isinstance(on.fast_path, ForestClassifierPath) and off.fast_path is None


async def _batches_for(arrivals: list[list[float]], wait_s: float) -> tuple[int, float]:
    """Submit groups of requests (each group concurrently, one group after another); (batches, seconds)."""
    batcher = AdaptiveBatcher(lambda rows, _: Outputs(rows[:, 0]), max_rows=64, max_wait_s=wait_s)
    batcher.start()
    started = time.perf_counter()
    try:
        for group in arrivals:
            await asyncio.gather(*(batcher.submit(np.array([[v]]), False) for v in group))
    finally:
        await batcher.close()
    return batcher.batches, time.perf_counter() - started


def test_a_lone_client_is_not_held_for_the_batch_wait() -> None:
    batches, seconds = asyncio.run(_batches_for([[1.0], [2.0], [3.0]], wait_s=2.0))
    assert batches == 3
    assert seconds < 2.0  # waiting even once would have taken 2 s


async def _late_arrival_joins(wait_s: float) -> int:
    """After a merged batch, a request arriving 50 ms after another still shares its predict() call."""
    batcher = AdaptiveBatcher(lambda rows, _: Outputs(rows[:, 0]), max_rows=64, max_wait_s=wait_s)
    batcher.start()
    try:
        await asyncio.gather(*(batcher.submit(np.array([[v]]), False) for v in (1.0, 2.0, 3.0)))
        before = batcher.batches

        async def late() -> Outputs:
            await asyncio.sleep(0.05)
            return await batcher.submit(np.array([[5.0]]), False)

        await asyncio.gather(batcher.submit(np.array([[4.0]]), False), late())
        return batcher.batches - before
    finally:
        await batcher.close()


def test_once_requests_overlap_the_batcher_waits_for_more() -> None:
    assert asyncio.run(_late_arrival_joins(wait_s=1.0)) == 1
