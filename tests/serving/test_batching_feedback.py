"""Adaptive batching keeps a bad request alone; feedback moves the accuracy counters."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from modelserver.batching import AdaptiveBatcher
from modelserver.contract_parse import parse_pod_metrics
from modelserver.feedback import FeedbackStore
from modelserver.prediction import ModelRejectedInput, Outputs

from .conftest import ONE_ROW, ExampleModels, RunningServer

pytestmark = pytest.mark.unit


def _doubling(rows: np.ndarray, want_proba: bool) -> Outputs:
    if (rows < 0).any():  # stands for input the model itself refuses
        raise ModelRejectedInput("negative")
    return Outputs(rows[:, 0] * 2)


async def _submit_all(rows: list[float], max_rows: int, wait_s: float) -> tuple[list[object], int]:
    batcher = AdaptiveBatcher(_doubling, max_rows=max_rows, max_wait_s=wait_s)
    batcher.start()
    try:
        results = await asyncio.gather(*(batcher.submit(np.array([[v]]), False) for v in rows),
                                       return_exceptions=True)
    finally:
        await batcher.close()
    return [r.predict.tolist() if isinstance(r, Outputs) else r for r in results], batcher.batches


def test_concurrent_requests_are_merged_and_each_gets_its_own_rows() -> None:
    results, batches = asyncio.run(_submit_all([float(i) for i in range(10)], max_rows=4, wait_s=0.05))
    assert results == [[2.0 * i] for i in range(10)]
    assert batches == 3  # 4 + 4 + 2 rows


def test_a_failing_request_in_a_batch_fails_alone() -> None:
    results, _ = asyncio.run(_submit_all([1.0, 2.0, -1.0, 3.0], max_rows=8, wait_s=0.05))
    assert results[0] == [2.0] and results[1] == [4.0] and results[3] == [6.0]
    assert isinstance(results[2], ModelRejectedInput)


def test_bad_http_request_concurrent_with_good_ones_under_batching_fails_alone(
        models: ExampleModels, start_server: Callable[..., RunningServer]) -> None:
    server = start_server(models.settings("rf.joblib", batching="on", max_batch_wait_ms=20.0))
    expected = server.infer([ONE_ROW], name="rf").json()["outputs"][0]["data"]
    batches_before = server.server.plane.batcher.batches  # type: ignore[union-attr]

    def send(i: int) -> tuple[int, object]:
        if i % 4 == 3:
            response = server.post("/v2/models/rf/infer", {"inputs": [
                {"name": "x", "shape": [1, 20], "datatype": "FP64", "data": ["bad"] * 20}]})
            return response.status_code, None
        response = server.infer([ONE_ROW], name="rf")
        return response.status_code, response.json()["outputs"][0]["data"]

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(send, range(64)))
    assert [status for status, _ in results] == [400 if i % 4 == 3 else 200 for i in range(64)]
    assert all(data == expected for status, data in results if status == 200)
    batches = server.server.plane.batcher.batches - batches_before  # type: ignore[union-attr]
    assert batches < 48  # 48 good requests were merged into fewer predict() calls


def test_feedback_counts_the_worse_model_as_less_accurate(
        models: ExampleModels, start_server: Callable[..., RunningServer]) -> None:
    x, y = models.holdout()
    accuracy = {}
    for file in ("lr.joblib", "lr-bad.joblib"):
        server = start_server(models.settings(file, model_name="lr", model_version=file))
        ids = [server.infer([row], id=f"row-{i}").json()["id"] for i, row in enumerate(x[:200])]
        tally = server.post("/v2/models/lr/feedback", [{"id": i, "label": label} for i, label in
                                                        zip(ids, y[:200], strict=True)]).json()
        m = parse_pod_metrics(server.get("/metrics").text).model("lr", file)
        assert m is not None and (tally["correct"], tally["incorrect"]) == (m.feedback_correct,
                                                                             m.feedback_incorrect)
        assert m.feedback_correct + m.feedback_incorrect == 200
        accuracy[file] = m.feedback_correct / 200
    assert accuracy["lr.joblib"] > 0.8 > 0.65 > accuracy["lr-bad.joblib"]


def test_feedback_for_a_regressor_records_absolute_error(
        models: ExampleModels, start_server: Callable[..., RunningServer]) -> None:
    server = start_server(models.settings("ridge.joblib"))
    predicted = server.infer([ONE_ROW, ONE_ROW], name="ridge", id="two").json()["outputs"][0]["data"]
    tally = server.post("/v2/models/ridge/feedback", {"id": "two", "label": [predicted[0] + 3, predicted[1] - 1]})
    assert tally.json()["scored"] == 2
    again = server.post("/v2/models/ridge/feedback", {"id": "two", "label": [0, 0]}).json()
    assert again["unknown_id"] == 1  # a prediction is scored once
    m = parse_pod_metrics(server.get("/metrics").text).model("ridge", "1")
    assert m is not None and m.absolute_error_count == 2 and m.absolute_error_sum == pytest.approx(4.0)


def test_feedback_label_that_is_not_a_class_is_invalid(lr_server: RunningServer) -> None:
    lr_server.infer([ONE_ROW], id="a")
    assert lr_server.post("/v2/models/lr/feedback", {"id": "a", "label": "cat"}).json()["invalid"] == 1
    assert lr_server.post("/v2/models/lr/feedback", {"label": 1}).status_code == 400


def test_store_is_bounded_and_expires_old_predictions() -> None:
    store = FeedbackStore(capacity=3, ttl_s=10.0)
    for i in range(5):
        store.remember(str(i), ("1",), now=float(i))
    assert len(store) == 3
    assert store.take("0", now=5.0) is None and store.take("1", now=5.0) is None
    assert store.take("2", now=30.0) == "expired"
    assert store.take("4", now=5.0) == ("1",)


def _feedback(server: RunningServer, body: object, name: str = "lr") -> dict[str, int]:
    response = server.post(f"/v2/models/{name}/feedback", body)
    assert response.status_code == 200, response.text
    return {k: v for k, v in response.json().items() if isinstance(v, int) and v}


def test_an_invalid_label_keeps_the_prediction_for_its_real_label(lr_server: RunningServer) -> None:
    predicted = lr_server.infer([ONE_ROW], id="one").json()["outputs"][0]["data"][0]
    assert _feedback(lr_server, {"id": "one", "label": "cat"}) == {"invalid": 1}
    assert _feedback(lr_server, {"id": "one", "label": predicted}) == {"correct": 1}
    assert _feedback(lr_server, {"id": "one", "label": predicted}) == {"unknown_id": 1}  # scored once


def test_invalid_labels_are_counted_per_item_and_keep_a_multi_row_prediction(lr_server: RunningServer) -> None:
    predicted = lr_server.infer([ONE_ROW] * 3, id="three").json()["outputs"][0]["data"]
    bad_items = [{"id": "three", "label": [predicted[0], "cat", predicted[2]]},  # one bad label of three
                 {"id": "three", "label": predicted[:2]}]  # wrong number of labels
    assert _feedback(lr_server, {"feedback": bad_items}) == {"invalid": 2}
    assert _feedback(lr_server, {"id": "three", "label": predicted}) == {"correct": 3}
    m = parse_pod_metrics(lr_server.get("/metrics").text).model("lr", "1")
    assert m is not None and (m.feedback_invalid, m.feedback_correct) == (2, 3)


def test_an_invalid_regressor_label_keeps_the_prediction(models: ExampleModels,
                                                         start_server: Callable[..., RunningServer]) -> None:
    server = start_server(models.settings("ridge.joblib"))
    predicted = server.infer([ONE_ROW], name="ridge", id="r").json()["outputs"][0]["data"][0]
    assert _feedback(server, {"id": "r", "label": "high"}, "ridge") == {"invalid": 1}
    assert _feedback(server, {"id": "r", "label": predicted + 2}, "ridge") == {"scored": 1}


def test_a_request_id_still_awaiting_feedback_is_refused_with_409(lr_server: RunningServer) -> None:
    first = lr_server.infer([ONE_ROW], id="shared-id")
    assert first.status_code == 200
    second = lr_server.infer([ONE_ROW] * 3, id="shared-id")
    assert second.status_code == 409 and "'shared-id'" in second.json()["error"]
    v1 = lr_server.post("/v1/models/lr:predict", {"instances": [ONE_ROW], "id": "shared-id"})
    assert v1.status_code == 409 and v1.json()["error"]
    label = first.json()["outputs"][0]["data"][0]
    assert _feedback(lr_server, {"id": "shared-id", "label": label}) == {"correct": 1}  # joined to the first
    assert lr_server.infer([ONE_ROW], id="shared-id").status_code == 200  # free again once scored
    m = parse_pod_metrics(lr_server.get("/metrics").text).model("lr", "1")
    assert m is not None and m.requests_by_code.get("409") == 2 and m.errors == 0


def test_concurrent_requests_with_one_id_get_one_answer_and_409s(
        models: ExampleModels, start_server: Callable[..., RunningServer]) -> None:
    server = start_server(models.settings("rf.joblib", batching="on", max_batch_wait_ms=20.0))
    body = {"inputs": [{"name": "x", "shape": [1, 20], "datatype": "FP64", "data": ONE_ROW}], "id": "same"}
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: requests.post(server.url + "/v2/models/rf/infer", json=body,
                                                      timeout=10).status_code, range(8)))
    assert sorted(codes) == [200] + [409] * 7
