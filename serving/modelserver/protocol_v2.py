"""Open Inference Protocol (KServe V2) REST endpoints: thin translations over the data plane.

Feedback (an extension of this server, not part of the protocol):
    POST /v2/models/{name}[/versions/{version}]/feedback
    {"token": "<the answer's prediction token>", "label": 1}   one prediction, to any pod of the rollout
    {"token": "...", "label": [1, 0, 2]}                  a multi-row prediction, one label per row
    {"feedback": [{"token": ..., "label": ...}, ...]}     a batch (a bare JSON list works too)
    {"id": "<prediction id>", "label": 1}                 the same pod only, while it remembers the id
    {"token": "...", "outcome": {"revenue": 12.5}}        numeric outcomes (declared names), with or without a label
answers 200 {"correct": n, "incorrect": n, "scored": n, "unknown_id": n, "expired_id": n, "invalid": n,
"outcomes": n}; a refused item (a token malformed, forged, expired or replayed; an outcome undeclared or not a
finite number) refuses the whole request with 4xx {"error": ..., "refused": {"<item index>": "<reason>"}} and
counts nothing.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

import modelserver
from modelserver.binary import EXTENSION, attach_binary_inputs, encode_binary
from modelserver.contract import Protocol
from modelserver.dataplane import DataPlane, FeedbackRefused, Prediction
from modelserver.feedback import parse_feedback
from modelserver.httpapi import MIRROR, PLANE, json_response, measured_inference, read_json, unknown_model
from modelserver.mirror import SHADOW_OF_VERSION_HEADER
from modelserver.mirror_send import Copy
from modelserver.tensors import InferRequest, InputSpec, datatype_of, decode_v2, encode_v2_output


def decode_v2_body(body: Any, binary: bytes, spec: InputSpec) -> InferRequest:
    attach_binary_inputs(body, binary)
    return decode_v2(body, spec)


def encode_v2(plane: DataPlane, request: InferRequest,
              prediction: Prediction) -> tuple[dict[str, Any], list[bytes]]:
    outputs = prediction.outputs
    tensors, binary = [], []
    for name in request.outputs:
        array = outputs.predict if name == "predict" else outputs.proba
        assert array is not None  # predict_proba was computed because it was asked for
        if name in request.binary_outputs:
            datatype = datatype_of(array)
            raw = encode_binary(array, datatype)
            tensors.append({"name": name, "shape": list(array.shape), "datatype": datatype,
                            "parameters": {"binary_data_size": len(raw)}})
            binary.append(raw)
        else:
            tensors.append(encode_v2_output(name, array))
    return {"model_name": plane.settings.model_name, "model_version": plane.settings.model_version,
            "id": prediction.prediction_id, "parameters": {"prediction_token": prediction.token},
            "outputs": tensors}, binary


async def live(request: web.Request) -> web.Response:
    return json_response({"live": True})


async def ready(request: web.Request) -> web.Response:
    plane = request.app[PLANE]
    return json_response(plane.readiness(), 200 if plane.is_ready() else 503)


async def server_metadata(request: web.Request) -> web.Response:
    return json_response({"name": "modelserver", "version": modelserver.__version__,
                          "extensions": ["feedback", EXTENSION]})


async def model_metadata(request: web.Request) -> web.Response:
    plane = request.app[PLANE]
    name, version = request.match_info["name"], request.match_info.get("version")
    if not plane.serves(name, version):
        return unknown_model(plane, name, version)
    return json_response(plane.metadata())


async def model_ready(request: web.Request) -> web.Response:
    plane = request.app[PLANE]
    name, version = request.match_info["name"], request.match_info.get("version")
    if not plane.serves(name, version):
        return unknown_model(plane, name, version)
    return json_response({"name": name, **plane.readiness()}, 200 if plane.is_ready() else 503)


async def infer(request: web.Request) -> web.Response:
    return await measured_inference(request, Protocol.V2, decode_v2_body, encode_v2)


async def feedback(request: web.Request) -> web.Response:
    plane = request.app[PLANE]
    name, version = request.match_info["name"], request.match_info.get("version")
    if not plane.serves(name, version):
        return unknown_model(plane, name, version)
    if SHADOW_OF_VERSION_HEADER in request.headers:  # labels a stable pod forwarded to this shadow candidate
        rows = plane.shadow_feedback(parse_feedback(await read_json(request)))
        return json_response({"model_name": name, "model_version": plane.settings.model_version,
                              "shadow_labelled_rows": rows})
    try:
        tally = plane.feedback(parse_feedback(await read_json(request)))
    except FeedbackRefused as exc:
        return json_response(exc.as_json(), exc.status)
    response = json_response({"model_name": name, "model_version": plane.settings.model_version,
                              **tally.as_json()})
    await _forward_to_shadow(request, response, name)
    return response


async def _forward_to_shadow(request: web.Request, response: web.Response, name: str) -> None:
    """While mirroring is on, every accepted feedback batch also goes to the shadow candidate (after the
    answer, through the same bounded queue as the copies), so a label posted to any stable pod reaches the
    candidate's record of the mirrored request it belongs to (docs/metrics.md)."""
    mirror = request.app[MIRROR]
    config = mirror.config
    if not config.is_on:
        return
    try:
        await response.prepare(request)
        await response.write_eof()
    except ConnectionError:
        return
    plane = request.app[PLANE]
    headers = {SHADOW_OF_VERSION_HEADER: plane.settings.model_version, "Content-Type": "application/json"}
    mirror.offer(Copy(f"{config.target}/v2/models/{name}/feedback", await request.read(), headers))


def routes() -> list[web.RouteDef]:
    model_paths = ("/v2/models/{name}", "/v2/models/{name}/versions/{version}")
    table = [web.get("/v2/health/live", live), web.get("/v2/health/ready", ready),
             web.get("/v2", server_metadata)]
    for base in model_paths:
        table += [web.get(base, model_metadata), web.get(base + "/ready", model_ready),
                  web.post(base + "/infer", infer), web.post(base + "/feedback", feedback)]
    return table
