"""The Open Inference Protocol's binary tensor data extension, as tritonclient speaks it by default."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import orjson
import pytest
import requests
import tritonclient.http as triton

from .conftest import ONE_ROW, ExampleModels, RunningServer

pytestmark = pytest.mark.unit
HEADER = "Inference-Header-Content-Length"


def _client(server: RunningServer) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(server.url.removeprefix("http://"))


def test_tritonclient_defaults_binary_in_and_out(lr_server: RunningServer) -> None:
    client = _client(lr_server)
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    rows = np.array([ONE_ROW, [-v for v in ONE_ROW], ONE_ROW], dtype=np.float32)
    tensor = triton.InferInput("x", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)  # binary_data=True, tritonclient's default
    result = client.infer("lr", [tensor], outputs=[triton.InferRequestedOutput("predict"),
                                                   triton.InferRequestedOutput("predict_proba")])
    json_answer = lr_server.infer(rows.tolist(), outputs=[{"name": "predict"}, {"name": "predict_proba"}]).json()
    assert result.as_numpy("predict").tolist() == json_answer["outputs"][0]["data"]
    assert result.as_numpy("predict_proba").ravel().tolist() == pytest.approx(json_answer["outputs"][1]["data"])
    assert "data" not in result.get_output("predict")  # it really came as binary
    client.close()


def test_tritonclient_without_outputs_gets_the_metadata_outputs_in_binary(lr_server: RunningServer) -> None:
    client = _client(lr_server)
    rows = np.array([ONE_ROW], dtype=np.float64)
    tensor = triton.InferInput("x", [1, 20], "FP64")
    tensor.set_data_from_numpy(rows)
    result = client.infer("lr", [tensor], request_id="bin-1")
    assert [o["name"] for o in result.get_response()["outputs"]] == ["predict"]
    assert result.get_response()["id"] == "bin-1"
    assert result.as_numpy("predict").tolist() == lr_server.infer([ONE_ROW]).json()["outputs"][0]["data"]
    client.close()


@pytest.mark.parametrize("dtype,datatype", [(np.int64, "INT64"), (np.uint8, "UINT8"), (np.float16, "FP16"),
                                            (np.bool_, "BOOL")])
def test_binary_inputs_of_every_numeric_datatype(lr_server: RunningServer, dtype: type, datatype: str) -> None:
    client = _client(lr_server)
    rows = (np.arange(20) % 2).reshape(1, 20).astype(dtype)
    tensor = triton.InferInput("x", [1, 20], datatype)
    tensor.set_data_from_numpy(rows)
    result = client.infer("lr", [tensor])
    expected = lr_server.infer(rows.astype(np.float64).tolist()).json()["outputs"][0]["data"]
    assert result.as_numpy("predict").tolist() == expected
    client.close()


def test_a_regressor_answers_binary_floats(models: ExampleModels,
                                           start_server: Callable[..., RunningServer]) -> None:
    server = start_server(models.settings("ridge.joblib"))
    client = _client(server)
    tensor = triton.InferInput("x", [1, 20], "FP64")
    tensor.set_data_from_numpy(np.array([ONE_ROW]))
    predicted = client.infer("ridge", [tensor]).as_numpy("predict")
    assert predicted.dtype == np.float64
    assert predicted.tolist() == server.infer([ONE_ROW], name="ridge").json()["outputs"][0]["data"]
    client.close()


def _raw(server: RunningServer, header: dict[str, object], binary: bytes,
         length: int | str | None = None) -> requests.Response:
    head = orjson.dumps(header)
    return requests.post(server.url + "/v2/models/lr/infer", data=head + binary, timeout=10,
                         headers={HEADER: str(len(head) if length is None else length)})


def _binary_input(size: int, datatype: str = "FP64") -> dict[str, object]:
    return {"inputs": [{"name": "x", "shape": [1, 20], "datatype": datatype,
                        "parameters": {"binary_data_size": size}}]}


ROW = np.array(ONE_ROW, dtype="<f8").tobytes()


@pytest.mark.parametrize(("case", "header", "binary", "length", "fragment"), [
    ("too few bytes", _binary_input(len(ROW)), ROW[:-8], None, "binary_data_size"),
    ("size not matching the shape", _binary_input(len(ROW) - 8), ROW[:-8], None, "shape"),
    ("bytes left over", _binary_input(len(ROW)), ROW + b"\0" * 8, None, "left over"),
    ("header length not a number", _binary_input(len(ROW)), ROW, "ten", HEADER),
    ("header length beyond the body", _binary_input(len(ROW)), ROW, 10**6, HEADER),
    ("size not an integer", _binary_input(-1), ROW, None, "binary_data_size"),
    ("binary size and data both", {"inputs": [{**_binary_input(len(ROW))["inputs"][0], "data": ONE_ROW}]}, ROW,
     None, "both"),
    ("bytes datatype", _binary_input(len(ROW), "BYTES"), ROW, None, "BYTES"),
])
def test_malformed_binary_requests_are_400(lr_server: RunningServer, case: str, header: dict[str, object],
                                           binary: bytes, length: int | str | None, fragment: str) -> None:
    response = _raw(lr_server, header, binary, length)
    assert response.status_code == 400, response.text
    assert fragment in response.json()["error"], response.json()


def test_binary_floats_are_checked_like_json_ones(lr_server: RunningServer) -> None:
    bad = np.array([np.inf, *ONE_ROW[1:]], dtype="<f8").tobytes()
    response = _raw(lr_server, _binary_input(len(bad)), bad)
    assert response.status_code == 400 and "finite" in response.json()["error"]
