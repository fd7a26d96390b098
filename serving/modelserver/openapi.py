"""The server's OpenAPI 3 document, served at `GET /openapi.json`: every route, as it really answers.

The document is built here from the same constants the handlers use (output names, datatypes, feedback
outcomes, load states, the id length limit). It describes this server, not the protocol in general:
the path's model name and version can only be the served ones (any other is a 404), and once the model
is loaded its feature count gives the inference requests working examples. Two tests keep it the one
description of the API: every route of the app is a documented operation and every operation a route
(tests/serving/test_openapi.py), and schemathesis sends generated requests, valid and schema-violating,
to a real server process and checks each answer against this document (tests/serving/test_api_fuzz.py).

>>> doc = openapi_document("iris", "2")
>>> doc["openapi"], sorted(doc["paths"])[:3]
('3.0.3', ['/metrics', '/openapi.json', '/v1/models/{name}'])
>>> doc["components"]["parameters"]["name"]["schema"]
{'type': 'string', 'enum': ['iris']}
"""

from __future__ import annotations

import re
from typing import Any

import modelserver
from modelserver.binary import DTYPES, EXTENSION, HEADER_LENGTH
from modelserver.contract import (
    MAX_OUTCOMES,
    REFUSAL_STATUS,
    FeedbackOutcome,
    FeedbackRefusal,
    LoadFailure,
    ModelState,
)
from modelserver.feedback import OUTCOMES_COUNTED
from modelserver.mirror import PRIMARY_PREDICTION_HEADER, REQUEST_ID_HEADER, SHADOW_OF_VERSION_HEADER
from modelserver.tensors import ID_PATTERN, KNOWN_TYPES, MAX_ID_LENGTH, OUTPUT_NAMES
from modelserver.tokens import MAX_TOKEN_HEADER_CHARS

OPENAPI_PATH = "/openapi.json"
V2_MODEL_BASES = ("/v2/models/{name}", "/v2/models/{name}/versions/{version}")
_JSON = "application/json"
_ERROR = {"$ref": "#/components/schemas/Error"}
_OBJECT: dict[str, Any] = {"type": "object"}
_ID = {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH, "pattern": ID_PATTERN}
_TOKEN = {"type": "string", "minLength": 1,
          "description": "Signed prediction token: send it with the label to any pod of the rollout."}
# A request's optional id: null is taken as no id (a fresh one is generated), as clients that serialize
# an unset field send it.
_REQUEST_ID = {**_ID, "nullable": True, "description": "Echoed; null or absent: the server generates one."}
# What an error status means on this server (httpapi.py's module docstring is the longer version).
_ERROR_MEANINGS = {
    400: "Malformed or invalid input; the message names the field.",
    404: "No such model, version or endpoint.",
    405: "Method not allowed on this path (the Allow header lists the allowed ones).",
    408: "Body not received within MODELSERVER_BODY_READ_TIMEOUT_S; the connection is closed.",
    409: "The request id is still held by an earlier prediction awaiting feedback.",
    413: "Body over MODELSERVER_MAX_BODY_BYTES or more rows than MODELSERVER_MAX_ROWS; the message names the limit.",
    422: "The model refused values that passed validation.",
    500: "A server fault (or the testing-only injected failure).",
    503: "The model is not loaded (loading or failed); the message names the reason code only.",
}
# Statuses any request can get from the HTTP layer, before a handler runs.
_TRANSPORT_ERRORS = (405,)
_BODY_ERRORS = (400, 408, 413)  # reading and parsing a request body


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {_JSON: {"schema": schema}}


def _errors(*statuses: int, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status in sorted({*statuses, *_TRANSPORT_ERRORS}):
        responses[str(status)] = {"description": _ERROR_MEANINGS[status], "content": _json(_ERROR)}
        if headers and status != 405:
            responses[str(status)]["headers"] = headers
    return responses


def _ok(description: str, schema: dict[str, Any], headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": _json(schema)}
    if headers:
        response["headers"] = headers
    return {"200": response}


def _operation(summary: str, responses: dict[str, Any], params: tuple[str, ...] = (),
               body: dict[str, Any] | None = None, tag: str = "v2") -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": responses}
    if params:
        operation["parameters"] = [{"$ref": f"#/components/parameters/{p}"} for p in params]
    if body is not None:
        operation["requestBody"] = {"required": True, "content": body}
    return operation


def _schemas() -> dict[str, Any]:
    return {**_status_schemas(), **_inference_schemas(), **_feedback_schemas()}


def _status_schemas() -> dict[str, Any]:
    """Health, readiness, metadata and errors."""
    return {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
        "Live": {"type": "object", "required": ["live"], "properties": {"live": {"type": "boolean", "enum": [True]}}},
        "Readiness": {
            "type": "object", "required": ["ready"],
            "description": "200 {ready: true}; 503 {ready: false, state, reason}: the reason is a code, "
                           "never a file name or digest.",
            "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"},
                           "state": {"type": "string", "enum": [s.value for s in ModelState]},
                           "reason": {"type": "string", "enum": ["", *(r.value for r in LoadFailure)]}}},
        "ServerMetadata": {
            "type": "object", "required": ["name", "version", "extensions"],
            "properties": {"name": {"type": "string"}, "version": {"type": "string"},
                           "extensions": {"type": "array", "items": {"type": "string"}}}},
        "TensorMetadata": {
            "type": "object", "required": ["name", "datatype", "shape"],
            "properties": {"name": {"type": "string"}, "datatype": {"type": "string", "enum": sorted(KNOWN_TYPES)},
                           "shape": {"type": "array", "items": {"type": "integer"}}}},
        "ModelMetadata": {
            "type": "object", "required": ["name", "versions", "platform", "inputs", "outputs", "parameters"],
            "properties": {
                "name": {"type": "string"}, "versions": {"type": "array", "items": {"type": "string"}},
                "platform": {"type": "string"},
                "inputs": {"type": "array", "items": {"$ref": "#/components/schemas/TensorMetadata"}},
                "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/TensorMetadata"}},
                "parameters": {"type": "object", "required": ["optional_outputs"], "properties": {
                    "optional_outputs": {"type": "array",
                                         "items": {"$ref": "#/components/schemas/TensorMetadata"}}}}}},
        "V1ModelStatus": {"type": "object", "required": ["name", "ready"],
                          "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}}},
    }


def _inference_schemas() -> dict[str, Any]:
    """V2 infer and V1 predict, requests and answers."""
    number_or_bool = {"anyOf": [{"type": "number"}, {"type": "boolean"}]}
    scalar = {"anyOf": [{"type": "number"}, {"type": "string"}, {"type": "boolean"}]}
    tensor_data = {"type": "array", "description": "Flat row-major, or nested exactly as `shape`.",
                   "items": {"anyOf": [*number_or_bool["anyOf"], {"type": "array", "items": number_or_bool}]}}
    flag = {"type": "boolean"}
    return {
        "RequestInput": {
            "type": "object", "required": ["name", "shape", "datatype"],
            "description": "One tensor [rows, n_features] (or [n_features] for one row). `data` holds the "
                           "values unless `parameters.binary_data_size` says they follow the JSON header. The "
                           "server also checks what this schema cannot say, each a 400 naming the field: `data` "
                           "holds rows x n_features values, flat or nested exactly as `shape`; integers within "
                           "their datatype's range; FP16 within ±65504; finite values (NaN only where the "
                           "model takes it); no BYTES.",
            "properties": {
                "name": {"type": "string"},
                "shape": {"type": "array", "minItems": 1, "maxItems": 2, "items": {"type": "integer", "minimum": 0}},
                "datatype": {"type": "string", "enum": sorted(KNOWN_TYPES)},
                "parameters": {"type": "object", "properties": {
                    "binary_data_size": {"type": "integer", "minimum": 0}}},
                "data": tensor_data}},
        "RequestOutput": {
            "type": "object", "required": ["name"],
            "properties": {"name": {"type": "string", "enum": list(OUTPUT_NAMES)},
                           "parameters": {"type": "object", "properties": {"binary_data": flag}}}},
        "InferenceRequest": {
            "type": "object", "required": ["inputs"],
            "properties": {
                "id": _REQUEST_ID,
                "parameters": {"type": "object", "properties": {"binary_data_output": flag}},
                "inputs": {"type": "array", "minItems": 1, "maxItems": 1,
                           "items": {"$ref": "#/components/schemas/RequestInput"}},
                "outputs": {"type": "array", "minItems": 1, "nullable": True,
                            "description": "Null or absent: `predict` only (what the metadata's `outputs` lists).",
                            "items": {"$ref": "#/components/schemas/RequestOutput"}}}},
        "ResponseOutput": {
            "type": "object", "required": ["name", "shape", "datatype"],
            "description": "`data`, or `parameters.binary_data_size` when answered in binary.",
            "properties": {
                "name": {"type": "string", "enum": list(OUTPUT_NAMES)},
                "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                "datatype": {"type": "string", "enum": sorted(KNOWN_TYPES)},
                "parameters": {"type": "object", "required": ["binary_data_size"],
                               "properties": {"binary_data_size": {"type": "integer", "minimum": 0}}},
                "data": {"type": "array", "items": scalar}}},
        "InferenceResponse": {
            "type": "object", "required": ["model_name", "model_version", "id", "outputs"],
            "properties": {"model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": _ID,
                           "parameters": {"type": "object", "required": ["prediction_token"],
                                          "properties": {"prediction_token": _TOKEN}},
                           "outputs": {"type": "array", "minItems": 1,
                                       "items": {"$ref": "#/components/schemas/ResponseOutput"}}}},
        "V1PredictRequest": {
            "type": "object", "required": ["instances"],
            "properties": {"id": _REQUEST_ID, "instances": {"type": "array", "minItems": 1,
                                                    "items": {"type": "array", "items": number_or_bool}}}},
        "V1PredictResponse": {"type": "object", "required": ["predictions", "prediction_token"],
                              "properties": {"predictions": {"type": "array", "items": scalar},
                                             "prediction_token": _TOKEN}},
    }


def _feedback_schemas() -> dict[str, Any]:
    return {
        "FeedbackItem": {
            "type": "object",
            # An outcome names the version by its token: an id (this pod's own prediction) carries a label only.
            "anyOf": [{"required": ["token", "label"]}, {"required": ["token", "outcome"]},
                      {"required": ["id", "label"], "not": {"required": ["outcome"]}}],
            "description": "`token` (scored by any pod of the rollout) or `id` (only the pod that predicted).",
            "properties": {"token": _TOKEN, "id": _ID, "label": {
                "description": "The true class (classifiers) or value (regressors); a list with one label per "
                               "row for a multi-row prediction. One that is not usable counts as `invalid` and "
                               "leaves the prediction for a corrected label."},
                "outcome": {
                    "type": "object", "minProperties": 1, "maxProperties": MAX_OUTCOMES,
                    "additionalProperties": {"type": "number"},
                    "description": "Numeric outcomes of the prediction (revenue, a rating, a conversion 0/1), "
                                   "one number per name declared in MODELSERVER_OUTCOMES, counted once per token "
                                   "and name; an undeclared name or a value that is not a finite number refuses "
                                   "the request (undeclared_outcome, invalid_outcome)."}}},
        "Feedback": {"anyOf": [
            {"$ref": "#/components/schemas/FeedbackItem"},
            {"type": "object", "required": ["feedback"], "properties": {"feedback": {"anyOf": [
                {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/FeedbackItem"}},
                {"$ref": "#/components/schemas/FeedbackItem"}]}}},
            {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/FeedbackItem"}}]},
        "FeedbackRefused": {
            "type": "object", "required": ["error", "refused"],
            "properties": {"error": {"type": "string"}, "refused": {
                "type": "object", "description": "Item index -> reason; nothing of the request was counted.",
                "additionalProperties": {"type": "string", "enum": [r.value for r in FeedbackRefusal]}}}},
        "FeedbackTally": {
            "type": "object",
            "required": ["model_name", "model_version", *(o.value for o in FeedbackOutcome), OUTCOMES_COUNTED],
            "properties": {"model_name": {"type": "string"}, "model_version": {"type": "string"},
                           **{o.value: {"type": "integer", "minimum": 0} for o in FeedbackOutcome},
                           OUTCOMES_COUNTED: {"type": "integer", "minimum": 0,
                                              "description": "Numeric outcome values counted."}}},
    }


def _components(model_name: str, model_version: str) -> dict[str, Any]:
    version_header = {"description": "The served model version (from the settings, never from the request).",
                      "required": True, "schema": {"type": "string", "enum": [model_version]}}
    return {
        "schemas": _schemas(),
        "parameters": {
            "name": {"name": "name", "in": "path", "required": True,
                     "description": "The served model's name; any other is a 404.",
                     "schema": {"type": "string", "enum": [model_name]}},
            "version": {"name": "version", "in": "path", "required": True,
                        "description": "The served model's version; any other is a 404.",
                        "schema": {"type": "string", "enum": [model_version]}},
            "headerLength": {"name": HEADER_LENGTH, "in": "header", "required": False,
                             "description": "Binary tensor extension: the length of the JSON part of the body; "
                                            "the rest is raw little-endian tensor data.",
                             "schema": {"type": "integer", "minimum": 0}},
            **_mirror_parameters(),
        },
        "headers": {
            "ModelVersion": version_header,
            "PredictionToken": {"description": "The prediction token (also in the body), when under "
                                               f"{MAX_TOKEN_HEADER_CHARS} characters.",
                                "required": False, "schema": _TOKEN},
            "PredictionId": {"description": "The prediction id to send feedback for (the request's `id` if given).",
                             "required": True, "schema": _ID},
            "HeaderLength": {"description": "Length of the JSON part; only on an application/octet-stream answer.",
                             "required": False,
                             "schema": {"type": "integer", "minimum": 0}},
        },
    }


# Sent by a stable server on a mirrored copy (modelserver/mirror.py); any value is accepted and the copy answered
# normally, so the schemas say no more than "a string".
_MIRROR_HEADERS = {
    "shadowOfVersion": (SHADOW_OF_VERSION_HEADER, "Marks a mirrored copy: the version that answered the client. "
                                                  "Answered normally; never mirrored again."),
    "requestId": (REQUEST_ID_HEADER, "On a mirrored copy: the primary's prediction id (for tracing)."),
    "primaryPrediction": (PRIMARY_PREDICTION_HEADER, "On a mirrored copy: the primary's prediction token; its "
                                                     "predicted classes are counted as pairs with this model's "
                                                     "only when the rollout's key signed it."),
}
MIRROR_PARAMS = tuple(_MIRROR_HEADERS)


def _mirror_parameters() -> dict[str, Any]:
    return {key: {"name": name, "in": "header", "required": False, "description": text,
                  "schema": {"type": "string"}} for key, (name, text) in _MIRROR_HEADERS.items()}


def _inference_responses(ok: dict[str, Any]) -> dict[str, Any]:
    version = {"X-Model-Version": {"$ref": "#/components/headers/ModelVersion"}}
    responses = _errors(*_BODY_ERRORS, 409, 422, 500, 503, headers=version)
    responses["404"] = {"description": _ERROR_MEANINGS[404], "content": _json(_ERROR)}
    return {**ok, **responses}


def _row(n_features: int, sign: float = 1.0) -> list[float]:
    return [round(sign * 0.1 * i, 1) for i in range(n_features)]


def _infer_examples(n_features: int | None) -> dict[str, Any]:
    """Requests this model answers 200 (once its feature count is known): for users, and schemathesis's seeds."""
    if not n_features:
        return {}
    n, rows = n_features, [_row(n_features), _row(n_features, -1.0)]
    tensor = {"name": "input-0", "shape": [1, n], "datatype": "FP64", "data": _row(n)}
    nested = {"name": "input-0", "shape": [2, n], "datatype": "FP32", "data": rows}
    return {"examples": {
        "one_row": {"summary": "One row, flat", "value": {"inputs": [tensor]}},
        "two_rows_nested_with_proba": {"summary": "Two rows, nested, with predict_proba (classifiers)", "value": {
            "inputs": [nested], "outputs": [{"name": "predict"}, {"name": "predict_proba"}]}},
        "binary_output": {"summary": "Outputs as raw bytes (binary tensor extension)", "value": {
            "inputs": [tensor], "parameters": {"binary_data_output": True}}},
    }}


def _infer_operation(params: tuple[str, ...], n_features: int | None) -> dict[str, Any]:
    headers = {"X-Model-Version": {"$ref": "#/components/headers/ModelVersion"},
               "X-Prediction-Id": {"$ref": "#/components/headers/PredictionId"},
               "X-Prediction-Token": {"$ref": "#/components/headers/PredictionToken"}}
    ok = {"200": {"description": "Predicted. application/octet-stream when an output was asked in binary: the "
                                 f"JSON part ({HEADER_LENGTH} bytes) then the outputs' raw bytes.",
                  "headers": {**headers, HEADER_LENGTH: {"$ref": "#/components/headers/HeaderLength"}},
                  "content": {**_json({"$ref": "#/components/schemas/InferenceResponse"}),
                              "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}
    body = {_JSON: {"schema": {"$ref": "#/components/schemas/InferenceRequest"}, **_infer_examples(n_features)},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    ok["200"]["links"] = {"feedback": {
        "operationId": operation_id("post", V2_MODEL_BASES[0] + "/feedback"),
        "description": "The true labels of this prediction, by its token (a JSON answer's `predict` output).",
        "parameters": {"name": "$request.path.name"},
        "requestBody": {"token": "$response.body#/parameters/prediction_token",
                        "label": "$response.body#/outputs/0/data"}}}
    return _operation("Predict (Open Inference Protocol), JSON or binary tensor data",
                      _inference_responses(ok), (*params, "headerLength", *MIRROR_PARAMS), body)


def _model_operations(params: tuple[str, ...], n_features: int | None) -> dict[str, dict[str, Any]]:
    not_found = _errors(404)
    feedback_ok = _ok("Outcome counts of this feedback.", {"$ref": "#/components/schemas/FeedbackTally"})
    ready_503 = {"503": {"description": "Not ready.", "content": _json({"$ref": "#/components/schemas/Readiness"})}}
    return {
        "": {"get": _operation("Model metadata", {**_ok("Model metadata.", {
            "$ref": "#/components/schemas/ModelMetadata"}), **not_found}, params)},
        "/ready": {"get": _operation("Model readiness", {**_ok("Ready.", {
            "$ref": "#/components/schemas/Readiness"}), **ready_503, **not_found}, params)},
        "/infer": {"post": _infer_operation(params, n_features)},
        "/feedback": {"post": _operation("Delayed ground truth for earlier predictions (this server's extension)",
                                         {**feedback_ok, **_errors(*_BODY_ERRORS, 404), **_refusals()}, params,
                                         _json({"$ref": "#/components/schemas/Feedback"}))},
    }


def _refusals() -> dict[str, Any]:
    """A refused item's statuses (contract.REFUSAL_STATUS: its token or its outcome), each with the refused items."""
    refused = _json({"$ref": "#/components/schemas/FeedbackRefused"})
    out: dict[str, Any] = {}
    for reason, status in REFUSAL_STATUS.items():
        entry = out.setdefault(str(status), {"description": "A feedback item was refused:", "content": refused})
        entry["description"] += f" {reason.value}"
    # 400 also answers a malformed body with the plain Error: either shape.
    out["400"]["content"] = _json({"anyOf": [_ERROR, {"$ref": "#/components/schemas/FeedbackRefused"}]})
    return out


def _paths(n_features: int | None) -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/v2/health/live": {"get": _operation("Liveness", _ok("Live.", {"$ref": "#/components/schemas/Live"}) |
                                              _errors())},
        "/v2/health/ready": {"get": _operation("Readiness (503 while loading, after a load failure, draining)", {
            **_ok("Ready.", {"$ref": "#/components/schemas/Readiness"}), **_errors(),
            "503": {"description": "Not ready.", "content": _json({"$ref": "#/components/schemas/Readiness"})}})},
        "/v2": {"get": _operation("Server metadata", _ok("Server metadata.", {
            "$ref": "#/components/schemas/ServerMetadata"}) | _errors())},
    }
    for base, params in zip(V2_MODEL_BASES, (("name",), ("name", "version")), strict=True):
        for suffix, operations in _model_operations(params, n_features).items():
            paths[base + suffix] = operations
    v1_ok = _ok("Predicted.", {"$ref": "#/components/schemas/V1PredictResponse"}, {
        "X-Model-Version": {"$ref": "#/components/headers/ModelVersion"},
        "X-Prediction-Id": {"$ref": "#/components/headers/PredictionId"},
        "X-Prediction-Token": {"$ref": "#/components/headers/PredictionToken"}})
    paths["/v1/models/{name}"] = {"get": _operation("Model status (KServe V1)", {**_ok("Status.", {
        "$ref": "#/components/schemas/V1ModelStatus"}), **_errors(404)}, ("name",), tag="v1")}
    v1_body: dict[str, Any] = {"schema": {"$ref": "#/components/schemas/V1PredictRequest"}}
    if n_features:
        v1_body["example"] = {"instances": [_row(n_features), _row(n_features, -1.0)]}
    paths["/v1/models/{name}:predict"] = {"post": _operation(
        "Predict (KServe V1)", _inference_responses(v1_ok), ("name", *MIRROR_PARAMS), {_JSON: v1_body}, tag="v1")}
    paths["/metrics"] = {"get": _operation("Prometheus metrics (docs/metrics.md)", {
        "200": {"description": "Prometheus text format.", "content": {"text/plain": {"schema": {"type": "string"}}}},
        **_errors()}, tag="operations")}
    paths[OPENAPI_PATH] = {"get": _operation("This document", _ok("OpenAPI 3 document.", _OBJECT) | _errors(),
                                             tag="operations")}
    for path, item in paths.items():
        for method, operation in item.items():
            operation["operationId"] = operation_id(method, path)
    return dict(sorted(paths.items()))


def operation_id(method: str, path: str) -> str:
    """A unique, stable id from the method and the path's fixed words, for code generators and links.

    >>> operation_id("post", "/v2/models/{name}/versions/{version}/infer"), operation_id("get", "/openapi.json")
    ('postV2ModelsVersionsInfer', 'getOpenapiJson')
    """
    words = [w for w in re.split(r"[/:.]", re.sub(r"\{[^}]*\}", "", path)) if w]
    return method.lower() + "".join(w[:1].upper() + w[1:] for w in words)


def openapi_document(model_name: str, model_version: str, n_features: int | None = None) -> dict[str, Any]:
    """The OpenAPI 3.0 document of a server serving `model_name` version `model_version`.

    With the model's feature count (known once it is loaded) the inference requests carry examples.
    """
    return {
        "openapi": "3.0.3",
        "info": {"title": "modelserver", "version": modelserver.__version__,
                 "description": f"Open Inference Protocol (V2, with the {EXTENSION} extension), KServe V1, "
                                "feedback, health and metrics of one scikit-learn model. Every error answers "
                                '{"error": "..."}. GET routes also answer HEAD. Binary tensor datatypes: '
                                f"{', '.join(DTYPES)}."},
        "paths": _paths(n_features),
        "components": _components(model_name, model_version),
    }
