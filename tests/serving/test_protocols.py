"""Open Inference Protocol (V2) and KServe V1 conformance, including a client this project did not write."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import tritonclient.http as triton

from .conftest import ONE_ROW, ExampleModels, RunningServer

pytestmark = pytest.mark.unit


def test_health_and_server_metadata(lr_server: RunningServer) -> None:
    assert lr_server.get("/v2/health/live").json() == {"live": True}
    assert lr_server.get("/v2/health/ready").json() == {"ready": True}
    assert lr_server.get("/v2").json()["name"] == "modelserver"


def test_model_metadata_and_readiness_by_name_and_version(lr_server: RunningServer) -> None:
    for base in ("/v2/models/lr", "/v2/models/lr/versions/1"):
        meta = lr_server.get(base).json()
        assert meta["name"] == "lr" and meta["versions"] == ["1"]
        assert meta["inputs"][0]["shape"] == [-1, 20]
        assert lr_server.get(base + "/ready").json() == {"name": "lr", "ready": True}
    assert lr_server.get("/v2/models/lr/versions/2").status_code == 404


def test_metadata_outputs_are_what_a_request_without_outputs_gets(lr_server: RunningServer) -> None:
    # The protocol: no `outputs` in a request means every output the metadata lists. predict_proba
    # costs a second model call, so it is offered by name (parameters.optional_outputs) instead.
    meta = lr_server.get("/v2/models/lr").json()
    answered = lr_server.infer([ONE_ROW]).json()["outputs"]
    assert [o["name"] for o in meta["outputs"]] == [o["name"] for o in answered] == ["predict"]
    optional = meta["parameters"]["optional_outputs"]
    assert [o["name"] for o in optional] == ["predict_proba"] and optional[0]["shape"] == [-1, 2]
    asked = lr_server.infer([ONE_ROW], outputs=[{"name": o["name"]} for o in meta["outputs"] + optional])
    assert [o["name"] for o in asked.json()["outputs"]] == ["predict", "predict_proba"]


def test_infer_flat_and_nested_data_give_the_same_answer_and_echo_the_id(lr_server: RunningServer) -> None:
    rows = [ONE_ROW, [-v for v in ONE_ROW]]
    flat = lr_server.infer(rows, id="req-1")
    nested = lr_server.post("/v2/models/lr/versions/1/infer", {"inputs": [
        {"name": "x", "shape": [2, 20], "datatype": "FP32", "data": rows}]})
    assert flat.status_code == nested.status_code == 200
    assert flat.json()["id"] == "req-1" and flat.headers["X-Prediction-Id"] == "req-1"
    assert nested.headers["X-Prediction-Id"] == nested.json()["id"] != ""
    out = flat.json()["outputs"]
    assert out == nested.json()["outputs"]
    assert out[0]["name"] == "predict" and out[0]["shape"] == [2] and out[0]["datatype"] == "INT64"


def test_predict_proba_on_request(lr_server: RunningServer) -> None:
    body = lr_server.infer([ONE_ROW], outputs=[{"name": "predict_proba"}]).json()
    (proba,) = body["outputs"]
    assert proba["name"] == "predict_proba" and proba["shape"] == [1, 2] and proba["datatype"] == "FP64"
    assert sum(proba["data"]) == pytest.approx(1.0)


@pytest.mark.parametrize("datatype,data", [
    ("INT32", [1] * 20), ("INT64", [2] * 20), ("BOOL", [True, False] * 10), ("FP32", [0.5] * 20),
])
def test_numeric_datatypes_are_accepted(lr_server: RunningServer, datatype: str, data: list[object]) -> None:
    response = lr_server.post("/v2/models/lr/infer", {"inputs": [
        {"name": "x", "shape": [1, 20], "datatype": datatype, "data": data}]})
    assert response.status_code == 200, response.text


def test_v1_status_and_predict(lr_server: RunningServer) -> None:
    assert lr_server.get("/v1/models/lr").json() == {"name": "lr", "ready": True}
    response = lr_server.post("/v1/models/lr:predict", {"instances": [ONE_ROW, ONE_ROW]})
    assert response.status_code == 200
    v2 = lr_server.infer([ONE_ROW]).json()["outputs"][0]["data"]
    assert response.json()["predictions"] == v2 * 2
    assert response.json()["prediction_token"] == response.headers["X-Prediction-Token"]
    assert response.headers["X-Prediction-Id"]


def test_regressor_answers_floats(models: ExampleModels, start_server: Callable[..., RunningServer]) -> None:
    server = start_server(models.settings("ridge.joblib"))
    out = server.infer([ONE_ROW], name="ridge").json()["outputs"][0]
    assert out["datatype"] == "FP64" and isinstance(out["data"][0], float)


def test_tritonclient_speaks_to_the_server(lr_server: RunningServer) -> None:
    client = triton.InferenceServerClient(lr_server.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("lr")
    assert client.get_model_metadata("lr")["inputs"][0]["shape"] == [-1, 20]
    rows = np.array([ONE_ROW, ONE_ROW], dtype=np.float32)
    tensor = triton.InferInput("x", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows, binary_data=False)
    outputs = [triton.InferRequestedOutput("predict", binary_data=False),
               triton.InferRequestedOutput("predict_proba", binary_data=False)]
    result = client.infer("lr", [tensor], outputs=outputs, request_id="triton-1")
    assert result.get_response()["id"] == "triton-1"
    predicted = result.as_numpy("predict")
    assert predicted.shape == (2,) and predicted[0] == lr_server.infer([ONE_ROW]).json()["outputs"][0]["data"][0]
    assert result.as_numpy("predict_proba").shape == (2, 2)
    client.close()
