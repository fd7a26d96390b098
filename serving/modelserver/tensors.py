"""Turn protocol request bodies into a validated 2-D float matrix, and predictions into outputs.

Everything a client can get wrong is caught here, before a request reaches the model or a batch,
and raised as `BadInput` with what was wrong and what was expected (the HTTP layer answers 400).

>>> spec = InputSpec(n_features=2, max_rows=10, allow_nan=False)
>>> decode_v2({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}, spec).rows
array([[1., 2.]])
>>> decode_v2({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}, spec)
Traceback (most recent call last):
...
modelserver.tensors.BadInput: input 'x' has 3 features per row; the model expects 2 (shape [rows, 2])
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

FLOAT_TYPES = frozenset({"FP16", "FP32", "FP64"})
INT_TYPES = frozenset({"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"})
KNOWN_TYPES = FLOAT_TYPES | INT_TYPES | {"BOOL", "BYTES"}
OUTPUT_NAMES = ("predict", "predict_proba")
MAX_ID_LENGTH = 256
# The id comes back in the X-Prediction-Id header: printable ASCII only, or a CR/LF in it would cut
# the answer after the metrics had counted it as a 200.
ID_PATTERN = r"^[\x20-\x7e]+$"
# Tree models cast to float32; a larger magnitude would become infinity inside sklearn and fail there.
FLOAT32_MAX = float(np.finfo(np.float32).max)
FP16_MAX = float(np.finfo(np.float16).max)  # 65504: a larger FP16 value cannot have been meant
# The values each integer datatype can hold, so UINT8 300 or INT64 2**63 is refused, not reinterpreted.
INT_RANGES: dict[str, tuple[int, int]] = {
    t: (int(np.iinfo(t.lower()).min), int(np.iinfo(t.lower()).max)) for t in sorted(INT_TYPES)
}


class BadInput(Exception):
    """A client's mistake; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class InputSpec:
    n_features: int
    max_rows: int
    allow_nan: bool
    has_proba: bool = True


@dataclass(frozen=True)
class InferRequest:
    rows: np.ndarray  # float64, shape (n, n_features), finite unless the model takes NaN
    outputs: tuple[str, ...]  # subset of OUTPUT_NAMES, "predict" by default
    request_id: str | None
    binary_outputs: frozenset[str] = frozenset()  # outputs to answer as raw bytes (binary extension)


def _require(condition: bool, message: str, status: int = 400) -> None:
    if not condition:
        raise BadInput(message, status)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shape(raw: Any, name: str, spec: InputSpec) -> tuple[int, int]:
    _require(isinstance(raw, list) and all(_is_int(d) for d in raw),
             f"input {name!r}: 'shape' must be a list of integers, got {raw!r}")
    _require(all(d >= 0 for d in raw), f"input {name!r}: negative dimension in shape {raw}")
    f = spec.n_features
    if len(raw) == 1:  # one row given flat, or a column of rows for a one-feature model
        return (raw[0], 1) if f == 1 else (1, raw[0])
    _require(len(raw) == 2, f"input {name!r}: shape {raw} has {len(raw)} dimensions; expected [rows, {f}]")
    return raw[0], raw[1]


def _matrix(data: Any, datatype: str, name: str, declared: list[int], shape: tuple[int, int]) -> np.ndarray:
    # An ndarray comes from the binary extension, already of the datatype's dtype.
    _require(isinstance(data, (list, np.ndarray)), f"input {name!r}: 'data' must be a list of numbers")
    try:
        array = np.asarray(data)
    except (ValueError, TypeError, OverflowError) as exc:
        raise BadInput(f"input {name!r}: 'data' is ragged or not numeric ({exc})") from None
    _require(array.ndim == 1 or list(array.shape) == declared,
             f"input {name!r}: 'data' is nested as {list(array.shape)} but 'shape' is {declared}; send it flat "
             "or nested exactly as the shape")
    if datatype in INT_TYPES:
        array = _integers(data, array, datatype, name)
    elif datatype in FLOAT_TYPES:
        kind = array.dtype.kind
        _require(kind in "fiu", f"input {name!r}: {datatype} data must be numbers, found {_found(kind)}")
        _require(datatype != "FP16" or not array.size or float(np.abs(array).max()) <= FP16_MAX,
                 f"input {name!r}: FP16 values must be within ±{FP16_MAX:g}")
    else:
        _require(array.dtype.kind == "b",
                 f"input {name!r}: BOOL data must be true/false, found {_found(array.dtype.kind)}")
    rows, cols = shape
    _require(array.size == rows * cols,
             f"input {name!r}: 'data' has {array.size} values but shape [{rows}, {cols}] needs {rows * cols}")
    return array.reshape(rows, cols).astype(np.float64, copy=False)


def _integers(data: Any, array: np.ndarray, datatype: str, name: str) -> np.ndarray:
    """Integers within the datatype's range, as an array.

    numpy gives floats or objects for a mix beyond int64 (2**64 - 1 beside 0), and the JSON parser gives
    a float for an integer beyond 64 bits; only the first can still be valid.
    """
    low, high = INT_RANGES[datatype]
    message = f"input {name!r}: {datatype} values must be integers within [{low}, {high}]"
    kind = array.dtype.kind
    if kind in "iu":
        _require(not array.size or (int(array.min()) >= low and int(array.max()) <= high), message)
        return array
    leaves = _leaves(data) if kind in "fO" else []  # only on this rare path
    if leaves and all(_is_int(v) for v in leaves):
        _require(all(low <= v <= high for v in leaves), message)
        return np.array(data, dtype=datatype.lower())
    raise BadInput(f"{message}, found {_found(kind)}")


def _leaves(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    return [leaf for item in data for leaf in _leaves(item)]


def _found(kind: str) -> str:
    return {"f": "floats", "i": "integers", "u": "integers", "b": "booleans", "U": "strings",
            "O": "nulls, objects or mixed values"}.get(kind, f"dtype kind {kind!r}")


def _check_values(rows: np.ndarray, name: str, allow_nan: bool) -> None:
    values = rows if not allow_nan else rows[~np.isnan(rows)]
    # One reduction on the hot path: the max of |values| is NaN or inf exactly when some value is, and
    # neither compares <= FLOAT32_MAX.
    if values.size and not np.abs(values).max() <= FLOAT32_MAX:
        raise BadInput(f"input {name!r}: values must be finite and within ±{FLOAT32_MAX:.3g}")


def decode_tensor(tensor: Any, spec: InputSpec) -> np.ndarray:
    """One V2 input tensor -> float64 matrix (rows, n_features)."""
    _require(isinstance(tensor, dict), "each input must be an object with name, shape, datatype, data")
    _require("name" in tensor, "each input needs a 'name' (a string)")
    name = tensor["name"]
    _require(isinstance(name, str), "input 'name' must be a string")
    for key in ("shape", "datatype", "data"):
        _require(key in tensor, f"input {name!r} is missing {key!r}")
    _require(isinstance(tensor.get("parameters", {}), dict), f"input {name!r}: 'parameters' must be an object")
    datatype = tensor["datatype"]
    _require(isinstance(datatype, str) and datatype in KNOWN_TYPES,
             f"input {name!r}: unknown datatype {datatype!r}; expected one of {sorted(KNOWN_TYPES)}")
    _require(datatype != "BYTES", f"input {name!r}: this model takes numbers (FP32, FP64, INT*, BOOL), "
                                  "not BYTES")
    declared = tensor["shape"]
    rows, cols = _shape(declared, name, spec)
    _require(cols == spec.n_features, f"input {name!r} has {cols} features per row; the model expects "
                                      f"{spec.n_features} (shape [rows, {spec.n_features}])")
    _require(rows >= 1, f"input {name!r}: no rows (shape [0, {cols}])")
    _require(rows <= spec.max_rows, f"input {name!r}: {rows} rows; at most {spec.max_rows} per request", 413)
    matrix = _matrix(tensor["data"], datatype, name, declared, (rows, cols))
    _check_values(matrix, name, spec.allow_nan)
    return matrix


def _flag(parameters: Any, key: str, where: str) -> bool:
    value = parameters.get(key, False) if isinstance(parameters, dict) else False
    _require(isinstance(value, bool), f"{where}'{key}' must be true or false")
    return bool(value)


def _outputs(raw: Any, spec: InputSpec, all_binary: bool) -> tuple[tuple[str, ...], frozenset[str]]:
    """(output names, those to answer in binary); `all_binary` is the request's binary_data_output."""
    if raw is None:
        return ("predict",), frozenset({"predict"} if all_binary else ())
    _require(isinstance(raw, list) and len(raw) > 0, "'outputs' must be a non-empty list of {\"name\": ...}")
    names, binary = [], set()
    for item in raw:
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or name not in OUTPUT_NAMES:
            raise BadInput(f"unknown output {name!r}; available: {list(OUTPUT_NAMES)}")
        parameters = item.get("parameters", {})
        _require(isinstance(parameters, dict), f"output {name!r}: 'parameters' must be an object")
        _require(name != "predict_proba" or spec.has_proba, "this model has no predict_proba output")
        names.append(name)
        choice = parameters.get("binary_data", all_binary)  # the output's own choice wins
        _require(isinstance(choice, bool), f"output {name!r}: 'binary_data' must be true or false")
        if choice:
            binary.add(name)
    return tuple(dict.fromkeys(names)), frozenset(binary)


def request_id_of(body: dict[str, Any]) -> str | None:
    raw = body.get("id")
    if raw is None:
        return None
    _require(isinstance(raw, str) and 0 < len(raw) <= MAX_ID_LENGTH,
             f"'id' must be a non-empty string of at most {MAX_ID_LENGTH} characters")
    _require(re.fullmatch(ID_PATTERN, str(raw)) is not None,
             "'id' must be printable ASCII (it is echoed in the X-Prediction-Id header)")
    return str(raw)


def decode_v2(body: Any, spec: InputSpec) -> InferRequest:
    """A V2 infer body -> validated request. One input tensor of shape [rows, n_features]."""
    _require(isinstance(body, dict), "the request body must be a JSON object with 'inputs'")
    inputs = body.get("inputs")
    _require(isinstance(inputs, list) and len(inputs) >= 1, "'inputs' must be a non-empty list of tensors")
    _require(len(inputs) == 1, f"this model takes one input tensor of shape [rows, {spec.n_features}], "
                               f"got {len(inputs)}")
    parameters = body.get("parameters", {})
    _require(isinstance(parameters, dict), "'parameters' must be an object")
    rows = decode_tensor(inputs[0], spec)
    outputs, binary = _outputs(body.get("outputs"), spec, _flag(parameters, "binary_data_output", ""))
    return InferRequest(rows, outputs, request_id_of(body), binary)


def decode_v1(body: Any, spec: InputSpec) -> InferRequest:
    """A V1 predict body {"instances": [[...], ...]} -> validated request."""
    _require(isinstance(body, dict), "the request body must be a JSON object with 'instances'")
    instances = body.get("instances")
    _require(isinstance(instances, list) and len(instances) > 0, "'instances' must be a non-empty list of rows")
    first = instances[0]
    _require(isinstance(first, list), f"each instance must be a list of {spec.n_features} numbers")
    tensor = {"name": "instances", "shape": [len(instances), len(first)], "datatype": "FP64",
              "data": instances}
    return InferRequest(decode_tensor(tensor, spec), ("predict",), request_id_of(body))


def datatype_of(array: np.ndarray) -> str:
    """Example:

    >>> datatype_of(np.array([1, 2])), datatype_of(np.array(["a"])), datatype_of(np.array([0.5]))
    ('INT64', 'BYTES', 'FP64')
    """
    kind = array.dtype.kind
    return {"i": "INT64", "u": "INT64", "f": "FP64", "b": "BOOL"}.get(kind, "BYTES")


def encode_v2_output(name: str, array: np.ndarray) -> dict[str, Any]:
    return {"name": name, "shape": list(array.shape), "datatype": datatype_of(array),
            "data": array.ravel().tolist()}
