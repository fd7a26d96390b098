"""KServe V1 REST endpoints: `GET /v1/models/{name}` and `POST /v1/models/{name}:predict`.

The predict body is {"instances": [[...], ...]} and the answer {"predictions": [...], "prediction_token":
"..."}: the token to send feedback with (to any pod of the rollout). The prediction id comes back in the
X-Prediction-Id header (send "id" in the body to choose it; an id
still awaiting feedback for an earlier prediction is refused with 409).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from modelserver.contract import Protocol
from modelserver.dataplane import DataPlane, Prediction
from modelserver.httpapi import PLANE, json_response, measured_inference, unknown_model
from modelserver.tensors import BadInput, InferRequest, InputSpec, decode_v1

# aiohttp's default {name} would swallow ":predict"; model names here never contain a colon.
_NAME = "{name:[^/:]+}"


def decode_v1_body(body: Any, binary: bytes, spec: InputSpec) -> InferRequest:
    if binary:
        raise BadInput("binary tensor data is an extension of the V2 protocol, not of V1")
    return decode_v1(body, spec)


def encode_v1(plane: DataPlane, request: InferRequest,
              prediction: Prediction) -> tuple[dict[str, Any], list[bytes]]:
    return {"predictions": prediction.outputs.predict.tolist(), "prediction_token": prediction.token}, []


async def model_status(request: web.Request) -> web.Response:
    plane = request.app[PLANE]
    name = request.match_info["name"]
    if not plane.serves(name, None):
        return unknown_model(plane, name, None)
    return json_response({"name": name, "ready": plane.is_ready()})


async def predict(request: web.Request) -> web.Response:
    return await measured_inference(request, Protocol.V1, decode_v1_body, encode_v1)


def routes() -> list[web.RouteDef]:
    return [web.get(f"/v1/models/{_NAME}", model_status), web.post(f"/v1/models/{_NAME}:predict", predict)]
