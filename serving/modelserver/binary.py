"""The Open Inference Protocol's binary tensor data extension (as Triton and tritonclient speak it).

A request or response body is a JSON header followed by raw tensor bytes; the HTTP header
`Inference-Header-Content-Length` gives the JSON part's length. An input whose `parameters` carry
`binary_data_size` has no `data`: its values are the next that many bytes, little-endian, in input
order. Outputs are answered in binary when asked (`parameters.binary_data` on a requested output, or
`parameters.binary_data_output` on the request): their JSON has `binary_data_size` instead of `data`.

tritonclient uses this by default (`set_data_from_numpy(arr)`, `InferRequestedOutput(name)`), so
supporting it lets its users send and receive numpy arrays without JSON's cost.

>>> body, binary = split_body(b'{"a": 1}' + bytes(8), "8")
>>> (body, len(binary))
(b'{"a": 1}', 8)
>>> encode_binary(np.array([1, 2]), "INT64") == np.array([1, 2], dtype="<i8").tobytes()
True
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from modelserver.tensors import BadInput

HEADER_LENGTH = "Inference-Header-Content-Length"
EXTENSION = "binary_tensor_data"
# Little-endian numpy dtypes of the datatypes whose values travel as raw bytes.
DTYPES: dict[str, np.dtype[Any]] = {
    name: np.dtype(code) for name, code in {
        "BOOL": "?", "INT8": "i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8", "UINT8": "u1",
        "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8", "FP16": "<f2", "FP32": "<f4", "FP64": "<f8",
    }.items()
}


def split_body(raw: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """(JSON part, binary part); without the header the whole body is JSON."""
    if header_length is None:
        return raw, b""
    try:
        length = int(header_length)
    except ValueError:
        raise BadInput(f"{HEADER_LENGTH} must be an integer, got {header_length!r}") from None
    if not 0 <= length <= len(raw):
        raise BadInput(f"{HEADER_LENGTH} is {length} but the body has {len(raw)} bytes")
    return raw[:length], raw[length:]


def _binary_size(tensor: dict[str, Any], name: str) -> int | None:
    parameters = tensor.get("parameters")
    size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
    if size is None:
        return None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise BadInput(f"input {name!r}: 'binary_data_size' must be a non-negative integer, got {size!r}")
    if "data" in tensor:
        raise BadInput(f"input {name!r} has both 'data' and a 'binary_data_size'; send one of them")
    return size


def attach_binary_inputs(body: Any, binary: bytes) -> None:
    """Put each binary input's values into its `data` as a numpy array (the decoder checks them)."""
    inputs = body.get("inputs") if isinstance(body, dict) else None
    offset = 0
    for tensor in inputs if isinstance(inputs, list) else []:
        name = tensor.get("name") if isinstance(tensor, dict) else None
        size = _binary_size(tensor, str(name)) if isinstance(tensor, dict) else None
        if size is None:
            continue
        datatype = tensor.get("datatype")
        if datatype not in DTYPES:
            raise BadInput(f"input {name!r}: binary data of datatype {datatype!r} is not supported here "
                           f"(BYTES is refused for numeric models); expected one of {sorted(DTYPES)}")
        if offset + size > len(binary):
            raise BadInput(f"input {name!r}: 'binary_data_size' is {size} but only {len(binary) - offset} "
                           "bytes of binary data are left")
        itemsize = DTYPES[datatype].itemsize
        if size % itemsize:
            raise BadInput(f"input {name!r}: {size} bytes is not a whole number of {datatype} values "
                           f"({itemsize} bytes each)")
        tensor["data"] = np.frombuffer(binary, DTYPES[datatype], size // itemsize, offset)
        offset += size
    if offset != len(binary):
        raise BadInput(f"{len(binary) - offset} bytes of binary data left over after the inputs' "
                       "binary_data_size")


def encode_binary(array: np.ndarray, datatype: str) -> bytes:
    """An output's raw bytes: numbers little-endian, BYTES as (4-byte length, UTF-8) per element."""
    if datatype != "BYTES":
        return np.ascontiguousarray(array, dtype=DTYPES[datatype]).tobytes()
    parts = []
    for value in array.ravel().tolist():
        encoded = value if isinstance(value, bytes) else str(value).encode()
        parts.append(struct.pack("<I", len(encoded)) + encoded)
    return b"".join(parts)
