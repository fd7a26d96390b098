"""Every client mistake gets a 4xx with {"error": ...}; no input at all produces a 5xx."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import ONE_ROW, ExampleModels, RunningServer

pytestmark = pytest.mark.unit


def _tensor(**overrides: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "shape": [1, 20], "datatype": "FP64", "data": ONE_ROW, **overrides}]}


BAD_V2: list[tuple[str, Any, int, str]] = [
    ("not an object", [1, 2], 400, "JSON object"),
    ("missing inputs", {"id": "a"}, 400, "'inputs'"),
    ("empty inputs", {"inputs": []}, 400, "'inputs'"),
    ("two inputs", {"inputs": _tensor()["inputs"] * 2}, 400, "one input tensor"),
    ("missing data", {"inputs": [{"name": "x", "shape": [1, 20], "datatype": "FP64"}]}, 400, "'data'"),
    ("wrong feature count", _tensor(shape=[1, 3], data=[1, 2, 3]), 400, "expects 20"),
    ("shape does not match data", _tensor(shape=[2, 20]), 400, "needs 40"),
    ("three dimensions", _tensor(shape=[1, 1, 20]), 400, "dimensions"),
    ("negative shape", _tensor(shape=[-1, 20]), 400, "negative"),
    ("zero rows", _tensor(shape=[0, 20], data=[]), 400, "no rows"),
    ("unknown datatype", _tensor(datatype="FP128"), 400, "unknown datatype"),
    ("bytes for a numeric model", _tensor(datatype="BYTES"), 400, "BYTES"),
    ("strings where numbers belong", _tensor(data=["a"] * 20), 400, "strings"),
    ("nulls", _tensor(data=[None] * 20), 400, "nulls"),
    ("floats declared INT64", _tensor(datatype="INT64"), 400, "integers"),
    ("numbers declared BOOL", _tensor(datatype="BOOL"), 400, "true/false"),
    ("ragged nested data", _tensor(shape=[2, 20], data=[ONE_ROW, ONE_ROW[:5]]), 400, "ragged"),
    ("beyond float32", _tensor(data=[1e300] * 20), 400, "finite"),
    ("unknown output", {**_tensor(), "outputs": [{"name": "explain"}]}, 400, "unknown output"),
    ("id not a string", {**_tensor(), "id": 5}, 400, "'id'"),
    ("id with a line break", {**_tensor(), "id": "a\r\nX-Injected: 1"}, 400, "'id' must be printable ASCII"),
    ("id not ASCII", {**_tensor(), "id": "caf\u00e9"}, 400, "'id' must be printable ASCII"),
    ("too many rows", _tensor(shape=[20_000, 20], data=ONE_ROW), 413, "at most"),
    ("request parameters not an object", {**_tensor(), "parameters": [1]}, 400, "'parameters'"),
    ("input parameters not an object", _tensor(parameters="binary"), 400, "input 'x': 'parameters'"),
    ("output parameters not an object", {**_tensor(), "outputs": [{"name": "predict", "parameters": 3}]}, 400,
     "output 'predict': 'parameters'"),
    ("input without a name", {"inputs": [{"shape": [1, 20], "datatype": "FP64", "data": ONE_ROW}]}, 400, "'name'"),
    ("FP16 beyond its range", _tensor(datatype="FP16", data=[70000.0, *ONE_ROW[1:]]), 400, "FP16 values"),
    ("UINT8 above 255", _tensor(datatype="UINT8", data=[300] + [1] * 19), 400, "UINT8 values"),
    ("UINT8 negative", _tensor(datatype="UINT8", data=[-5] + [1] * 19), 400, "UINT8 values"),
    ("INT8 below -128", _tensor(datatype="INT8", data=[-129] + [1] * 19), 400, "INT8 values"),
    ("INT64 above 2**63-1 beside negatives", _tensor(datatype="INT64", data=[2**63] + [-1] * 19), 400,
     "INT64 values"),
    ("INT64 above 2**63-1", _tensor(datatype="INT64", data=[2**63] * 20), 400, "INT64 values"),
    ("integers beyond 64 bits", _tensor(datatype="UINT64", data=[2**64] * 20), 400, "UINT64 values"),
    ("UINT64 beside a negative", _tensor(datatype="UINT64", data=[2**64 - 1, -1] + [0] * 18), 400, "UINT64 values"),
    ("data nested deeper than the shape", _tensor(data=[[ONE_ROW]]), 400, "nested"),
    ("data nested against a flat shape", _tensor(shape=[20], data=[[v] for v in ONE_ROW]), 400, "nested"),
]


GOOD_V2: list[tuple[str, Any]] = [
    ("INT64 extremes", _tensor(datatype="INT64", data=[2**63 - 1, -(2**63)] + [-5] * 18)),
    ("UINT64 maximum", _tensor(datatype="UINT64", data=[2**64 - 1] + [0] * 19)),
    ("UINT8 range", _tensor(datatype="UINT8", data=[0, 255] * 10)),
    ("FP16 maximum", _tensor(datatype="FP16", data=[65504.0, -65504.0, *ONE_ROW[2:]])),
    ("nested as the shape", _tensor(shape=[2, 20], data=[ONE_ROW, ONE_ROW])),
    ("parameters objects", {**_tensor(parameters={"a": 1}), "parameters": {}}),
]


@pytest.mark.parametrize("case,body", GOOD_V2, ids=[c[0] for c in GOOD_V2])
def test_values_within_their_datatype_are_accepted(lr_server: RunningServer, case: str, body: Any) -> None:
    response = lr_server.post("/v2/models/lr/infer", body)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("case,body,status,fragment", BAD_V2, ids=[c[0] for c in BAD_V2])
def test_bad_v2_input_gets_its_4xx(lr_server: RunningServer, case: str, body: Any, status: int,
                                   fragment: str) -> None:
    response = lr_server.post("/v2/models/lr/infer", body)
    assert response.status_code == status
    assert fragment in response.json()["error"]


@pytest.mark.parametrize("raw,fragment", [(b"{not json", "malformed JSON"), (b"", "malformed JSON"),
                                          (b"NaN", "malformed JSON")])
def test_malformed_json_is_400(lr_server: RunningServer, raw: bytes, fragment: str) -> None:
    response = lr_server.post("/v2/models/lr/infer", data=raw)
    assert response.status_code == 400 and fragment in response.json()["error"]


@pytest.mark.parametrize("body", [{"instances": []}, {"instances": [[1, 2]]}, {"rows": [ONE_ROW]},
                                  {"instances": [ONE_ROW, ONE_ROW[:3]]}, {"instances": [1, 2]}])
def test_bad_v1_input_is_400(lr_server: RunningServer, body: Any) -> None:
    response = lr_server.post("/v1/models/lr:predict", body)
    assert response.status_code == 400 and response.json()["error"]


def test_unknown_model_and_version_are_404(lr_server: RunningServer) -> None:
    assert lr_server.post("/v2/models/other/infer", _tensor()).status_code == 404
    response = lr_server.post("/v2/models/lr/versions/9/infer", _tensor())
    assert response.status_code == 404 and "version '9'" in response.json()["error"]


@pytest.mark.parametrize(("method", "path", "allowed"), [("TRACE", "/metrics", {"GET", "HEAD"}),
                                                        ("PUT", "/v2/models/lr/infer", {"POST"})])
def test_a_wrong_method_is_405_with_the_allow_header(lr_server: RunningServer, method: str, path: str,
                                                     allowed: set[str]) -> None:
    # RFC 9110: a 405 must list the methods the resource supports; the JSON error body must not lose it.
    response = lr_server.session.request(method, lr_server.url + path, timeout=10)
    assert response.status_code == 405 and response.headers["Content-Type"].startswith("application/json")
    assert "error" in response.json()
    assert {m.strip() for m in response.headers.get("Allow", "").split(",")} == allowed


def test_body_over_the_limit_is_413(models: ExampleModels, start_server: Callable[..., RunningServer]) -> None:
    server = start_server(models.settings("lr.joblib", max_body_bytes=2048))
    for path in ("/v2/models/lr/infer", "/v1/models/lr:predict", "/v2/models/lr/feedback"):
        response = server.post(path, _tensor(shape=[100, 20], data=ONE_ROW * 100))
        assert response.status_code == 413, path
        assert "2048 bytes" in response.json()["error"] and "MODELSERVER_MAX_BODY_BYTES" in response.json()["error"]


def test_nan_is_refused_only_where_the_model_cannot_take_it() -> None:
    # JSON has no NaN literal, so it can only reach a model through this decoder from other callers.
    import numpy as np

    from modelserver.tensors import BadInput, InputSpec, decode_tensor

    tensor = {"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [float("nan"), 1.0]}
    with pytest.raises(BadInput, match="finite"):
        decode_tensor(tensor, InputSpec(2, 10, allow_nan=False))
    assert np.isnan(decode_tensor(tensor, InputSpec(2, 10, allow_nan=True))[0, 0])


# NaN is refused only by models that cannot take it; the rest are refused by every model.
@pytest.mark.parametrize(("bad", "allow_nan"), [(bad, allow) for bad in (float("inf"), float("-inf"), 3.5e38, -3.5e38)
                                                for allow in (False, True)] + [(float("nan"), False)])
def test_infinity_and_values_beyond_float32_are_refused_even_next_to_nan(bad: float, allow_nan: bool) -> None:
    from modelserver.tensors import BadInput, InputSpec, decode_tensor

    data = [1.0, float("nan") if allow_nan else 2.0, bad]
    with pytest.raises(BadInput, match="finite"):
        decode_tensor({"name": "x", "shape": [1, 3], "datatype": "FP64", "data": data}, InputSpec(3, 10, allow_nan))
    assert decode_tensor({"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1.0, 2.0, 3.4e38]},
                         InputSpec(3, 10, allow_nan)).shape == (1, 3)


@pytest.fixture(scope="module")
def shared_server(models: ExampleModels) -> Iterator[RunningServer]:
    from .conftest import RunningServer

    server = RunningServer(models.settings("rf.joblib", batching="on"))
    yield server
    server.stop()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=40,
)
tensor_like = st.fixed_dictionaries({}, optional={
    "name": json_values, "shape": st.lists(st.integers(-3, 30), max_size=3) | json_values,
    "datatype": st.sampled_from(["FP32", "FP64", "INT64", "BOOL", "BYTES", "X"]) | json_values,
    "data": st.lists(st.floats() | st.integers(), max_size=45) | json_values,
})
bodies = json_values | st.fixed_dictionaries({}, optional={
    "inputs": st.lists(tensor_like, max_size=2) | json_values, "id": json_values, "outputs": json_values,
    "instances": st.lists(st.lists(st.floats() | st.integers(), max_size=21), max_size=3),
    "feedback": json_values, "label": json_values})
paths = st.sampled_from(["/v2/models/rf/infer", "/v1/models/rf:predict", "/v2/models/rf/feedback",
                         "/v2/models/rf/versions/1/infer", "/v2/models/zzz/infer"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, path=paths)
def test_arbitrary_json_never_gets_a_5xx(shared_server: RunningServer, body: Any, path: str) -> None:
    # json.dumps writes NaN and Infinity as bare literals (not JSON): those must be 400s as well.
    response = requests.post(shared_server.url + path, data=json.dumps(body), timeout=10)
    assert response.status_code < 500, (response.status_code, response.text)
    assert response.status_code == 200 or "error" in response.json()
