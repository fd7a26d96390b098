"""The official KServe Python client (`kserve.InferenceRESTClient`) against a real model server on loopback:
OIP V2 with the binary tensor data extension both ways, plain JSON V2, and KServe V1 predict.

The client is asynchronous; each test drives it with `asyncio.run` while the server runs on its own loop in
a background thread (see conftest.RunningServer)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest
from kserve import InferenceRESTClient, InferInput, InferRequest, InferResponse, RESTConfig
from kserve.protocol.infer_type import RequestedOutput

from .conftest import ExampleModels, RunningServer

pytestmark = pytest.mark.unit
HEADER = "inference-header-content-length"


@pytest.fixture
def rows(models: ExampleModels) -> np.ndarray:
    """Held-out rows of both classes, as FP32 (what a client typically sends)."""
    features, labels = models.holdout()
    chosen = [features[labels.index(0)], features[labels.index(1)], *features[:6]]
    return np.array(chosen, dtype=np.float32)


def _with_client(protocol: str, use: Callable[[InferenceRESTClient], Awaitable[Any]]) -> Any:
    async def call() -> Any:
        client = InferenceRESTClient(RESTConfig(protocol=protocol, retries=0, timeout=10))
        try:
            return await use(client)
        finally:
            await client.close()

    return asyncio.run(call())


def _infer(server: RunningServer, request: InferRequest | dict[str, Any], protocol: str = "v2",
           response_headers: dict[str, str] | None = None) -> Any:
    return _with_client(protocol, lambda client: client.infer(server.url, request, model_name="lr",
                                                              response_headers=response_headers))


def _json_answer(server: RunningServer, rows: np.ndarray) -> dict[str, Any]:
    """What the plain JSON path (FP64 data in the body) answers for the same rows."""
    answer: dict[str, Any] = server.infer(rows.tolist(), outputs=[{"name": "predict"},
                                                                  {"name": "predict_proba"}]).json()
    assert len(set(answer["outputs"][0]["data"])) == 2, "the rows should be predicted as both classes"
    return answer


def _outputs(response: InferResponse) -> dict[str, np.ndarray]:
    return {output.name: output.as_numpy() for output in response.outputs}


def test_kserve_client_binary_in_and_binary_out(lr_server: RunningServer, rows: np.ndarray) -> None:
    tensor = InferInput("x", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows, binary_data=True)
    binary = {"binary_data": True}
    request = InferRequest("lr", [tensor], request_id="kserve-bin-1",
                           request_outputs=[RequestedOutput("predict", binary),
                                            RequestedOutput("predict_proba", binary)])
    headers: dict[str, str] = {}
    response = _infer(lr_server, request, response_headers=headers)
    # The answer really was a JSON header followed by the two tensors' bytes.
    assert int(headers[HEADER]) < int(headers["content-length"])
    assert response.id == "kserve-bin-1"
    outputs, expected = _outputs(response), _json_answer(lr_server, rows)["outputs"]
    assert outputs["predict"].tolist() == expected[0]["data"]
    assert outputs["predict_proba"].shape == (len(rows), 2)
    assert outputs["predict_proba"].ravel().tolist() == pytest.approx(expected[1]["data"])


def test_kserve_client_plain_json_v2(lr_server: RunningServer, rows: np.ndarray) -> None:
    async def health(client: InferenceRESTClient) -> list[bool]:
        return [await client.is_server_live(lr_server.url), await client.is_server_ready(lr_server.url),
                await client.is_model_ready(lr_server.url, "lr"), await client.is_model_ready(lr_server.url, "nope")]

    assert _with_client("v2", health) == [True, True, True, False]
    tensor = InferInput("x", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows, binary_data=False)
    request = InferRequest("lr", [tensor], request_outputs=[RequestedOutput("predict")])
    headers: dict[str, str] = {}
    response = _infer(lr_server, request, response_headers=headers)
    assert HEADER not in headers
    assert _outputs(response)["predict"].tolist() == _json_answer(lr_server, rows)["outputs"][0]["data"]


def test_kserve_client_v1_predict(lr_server: RunningServer, rows: np.ndarray) -> None:
    answer = _infer(lr_server, {"instances": rows.tolist()}, protocol="v1")
    assert answer["predictions"] == _json_answer(lr_server, rows)["outputs"][0]["data"]
