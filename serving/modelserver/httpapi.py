"""What both REST protocols share: JSON answers, the error middleware and the measured inference path.

Status codes of the inference path: 200 answered; 400 malformed or invalid input; 404 unknown model or
version; 408 body not received within the read timeout; 409 a request id still held by an earlier
prediction awaiting feedback; 413 body over the limit or too many rows; 422 values the model itself
refused; 503 model not loaded; 500 only for a real server fault. A client
that disconnects before its body was read gets nothing (there is no one to answer) and is counted as
499, not as an error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from modelserver.binary import HEADER_LENGTH, split_body
from modelserver.contract import CLIENT_CLOSED_REQUEST, Protocol
from modelserver.dataplane import DataPlane, NotReady, Prediction
from modelserver.mirror import (
    PRIMARY_PREDICTION_HEADER,
    REQUEST_ID_HEADER,
    SHADOW_OF_VERSION_HEADER,
    Mirror,
    copy_path,
)
from modelserver.mirror_config import MirrorConfig
from modelserver.mirror_send import Copy
from modelserver.prediction import ModelRejectedInput
from modelserver.tensors import BadInput, InferRequest, InputSpec
from modelserver.tokens import MAX_TOKEN_HEADER_CHARS

log = logging.getLogger(__name__)

PLANE = web.AppKey("plane", DataPlane)
MIRROR = web.AppKey("mirror", Mirror)
PREDICTION_ID_HEADER = "X-Prediction-Id"
# The prediction token, also in the body (V2 `parameters.prediction_token`, V1 `prediction_token`); a header
# only while it is short, as proxies limit header sizes (a many-row regressor's token is long).
PREDICTION_TOKEN_HEADER = "X-Prediction-Token"
# On every inference answer, errors included, so a client (or a rollout test) can tell which version
# failed it. The values come from the server's settings, never from the request.
MODEL_VERSION_HEADER = "X-Model-Version"

Decoder = Callable[[Any, bytes, InputSpec], InferRequest]  # (JSON body, binary tensor data, spec)
# The JSON answer and the raw bytes of outputs answered in binary, in the order the JSON lists them.
Encoder = Callable[[DataPlane, InferRequest, Prediction], tuple[dict[str, Any], list[bytes]]]


class ClientGone(Exception):
    """The client closed the connection before its request body arrived: nothing to answer."""


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json",
                        headers=headers)


# Headers describing aiohttp's own text/plain error body, which the JSON one replaces.
_BODY_HEADERS = frozenset({"content-type", "content-length"})
# Statuses after which the connection cannot be reused: the rest of the body may still be arriving.
_CLOSES_CONNECTION = frozenset({408})


def error_response(status: int, message: str) -> web.Response:
    return json_response({"error": message}, status)


def _closing(response: web.Response) -> web.Response:
    if response.status in _CLOSES_CONNECTION:
        response.force_close()
    return response


@web.middleware
async def json_errors(request: web.Request,
                      handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Every error leaves as {"error": "..."}, including aiohttp's own 404/405/413."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(exc.status, exc.text or exc.reason if exc.status != 404 else
                                  f"no such endpoint: {request.method} {request.path}")
        # Keep what the exception says beyond its text: a 405 must carry Allow (RFC 9110).
        response.headers.extend((k, v) for k, v in exc.headers.items() if k.lower() not in _BODY_HEADERS)
        return response
    except BadInput as exc:
        return _closing(error_response(exc.status, str(exc)))
    except ClientGone:
        return error_response(CLIENT_CLOSED_REQUEST, "client closed the connection")  # never delivered
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal server error")


async def read_json(request: web.Request) -> Any:
    return parse_json(await read_body(request))


def parse_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadInput(f"malformed JSON: {exc}") from None


async def read_body(request: web.Request) -> bytes:
    settings = request.app[PLANE].settings
    try:
        # asyncio.timeout, not wait_for: no extra task per request on the hot path.
        async with asyncio.timeout(settings.body_read_timeout_s):
            raw = await request.read()
    except TimeoutError:
        raise BadInput(f"request body not received within {settings.body_read_timeout_s:g} s "
                       "(MODELSERVER_BODY_READ_TIMEOUT_S)", 408) from None
    except web.HTTPRequestEntityTooLarge:
        raise BadInput(f"request body over the limit of {settings.max_body_bytes} bytes "
                       "(MODELSERVER_MAX_BODY_BYTES)", 413) from None
    except ConnectionResetError:  # aiohttp's "Connection lost" when the client left mid-upload
        log.debug("client disconnected before sending its whole body: %s %s", request.method, request.path)
        raise ClientGone from None
    return raw


def _binary_response(payload: Any, binary: list[bytes], headers: dict[str, str]) -> web.Response:
    """JSON header then the outputs' raw bytes; the header's length tells the client where they start."""
    head = orjson.dumps(payload)
    return web.Response(body=head + b"".join(binary), status=200, content_type="application/octet-stream",
                        headers={**headers, HEADER_LENGTH: str(len(head))})


def unknown_model(plane: DataPlane, name: str, version: str | None) -> web.Response:
    """404 for a model or version not served here; counted without any label from the URL."""
    plane.metrics.count_unknown_model()
    asked = f"{name!r}" + (f" version {version!r}" if version is not None else "")
    return error_response(404, f"model {asked} is not served here; this server serves "
                               f"{plane.settings.model_name!r} version {plane.settings.model_version!r}")


# (status, JSON payload, extra headers, raw bytes of outputs answered in binary)
Answer = tuple[int, Any, dict[str, str] | None, list[bytes]]


async def _answer(request: web.Request, plane: DataPlane, decode: Decoder, encode: Encoder) -> Answer:
    try:
        plane.require_loaded()
        head, binary = split_body(await read_body(request), request.headers.get(HEADER_LENGTH))
        infer_request = decode(parse_json(head), binary, plane.input_spec)
        prediction = await plane.infer(infer_request)
        if SHADOW_OF_VERSION_HEADER in request.headers:  # a mirrored copy: compare with the primary
            plane.count_shadow_pairs(request.headers.get(PRIMARY_PREDICTION_HEADER), prediction)
        payload, binary_outputs = encode(plane, infer_request, prediction)
        headers = {PREDICTION_ID_HEADER: prediction.prediction_id}
        if len(prediction.token) <= MAX_TOKEN_HEADER_CHARS:
            headers[PREDICTION_TOKEN_HEADER] = prediction.token
        return 200, payload, headers, binary_outputs
    except BadInput as exc:
        return exc.status, {"error": str(exc)}, None, []
    except ModelRejectedInput as exc:
        return 422, {"error": str(exc)}, None, []
    except NotReady as exc:
        return 503, {"error": str(exc)}, None, []
    except ClientGone:
        return CLIENT_CLOSED_REQUEST, {"error": "client closed the connection"}, None, []
    except web.HTTPException as exc:  # aiohttp's own, while reading the request
        return exc.status, {"error": exc.text or exc.reason}, None, []
    except Exception:
        log.exception("inference failed")
        return 500, {"error": "internal server error during inference"}, None, []


async def measured_inference(request: web.Request, protocol: Protocol, decode: Decoder,
                             encode: Encoder) -> web.Response:
    """Run one inference request and count it (status and latency) under the served model's labels."""
    started = time.perf_counter()
    plane = request.app[PLANE]
    name, version = request.match_info["name"], request.match_info.get("version")
    if not plane.serves(name, version):
        return unknown_model(plane, name, version)
    status, payload, headers, binary = await _answer(request, plane, decode, encode)
    headers = {**(headers or {}), MODEL_VERSION_HEADER: plane.settings.model_version}
    response = _closing(json_response(payload, status, headers) if not binary else
                        _binary_response(payload, binary, headers))
    if status == 200:
        _stick(request, response, request.app[MIRROR].config, plane.settings.model_version)
    if status == CLIENT_CLOSED_REQUEST:
        plane.metrics.count_client_disconnect(protocol)
    else:
        plane.metrics.observe_request(protocol, status, time.perf_counter() - started)
    if status == 200 and SHADOW_OF_VERSION_HEADER not in request.headers:
        mirror = request.app[MIRROR]
        config = mirror.wants_copy()
        if config is not None:
            await _mirror_after_answering(request, response, mirror, config, protocol, headers)
    return response


def _stick(request: web.Request, response: web.StreamResponse, config: MirrorConfig, version: str) -> None:
    """An A/B experiment's sticky split: a user not yet on this version's arm is put on it by a cookie naming
    it (the gateway's rules route by it). Answers only: a refused request assigns no arm."""
    if config.sticky_cookie and request.cookies.get(config.sticky_cookie) != version \
            and SHADOW_OF_VERSION_HEADER not in request.headers:
        response.set_cookie(config.sticky_cookie, version, max_age=config.sticky_max_age, path="/", httponly=True,
                            samesite="Lax")


async def _mirror_after_answering(request: web.Request, response: web.Response, mirror: Mirror,
                                  config: MirrorConfig, protocol: Protocol, answer_headers: dict[str, str]) -> None:
    """Send the client its answer, then queue the copy: the copy can never go out before the answer.

    aiohttp finishes a response the handler already finished without writing it again."""
    try:
        await response.prepare(request)
        await response.write_eof()
    except ConnectionError:  # the client left: it got no answer, so there is nothing to compare with
        return
    plane = request.app[PLANE]
    values = {SHADOW_OF_VERSION_HEADER: plane.settings.model_version,
              REQUEST_ID_HEADER: answer_headers[PREDICTION_ID_HEADER],  # may be the client's own `id`
              PRIMARY_PREDICTION_HEADER: answer_headers.get(PREDICTION_TOKEN_HEADER),  # absent when too long
              "Content-Type": request.headers.get("Content-Type"), HEADER_LENGTH: request.headers.get(HEADER_LENGTH)}
    # Printable ASCII only: a client's id with a line break must not write headers into the copy.
    headers = {name: value for name, value in values.items()
               if value is not None and value.isascii() and value.isprintable()}
    if SHADOW_OF_VERSION_HEADER not in headers:  # an unmarked copy could be mirrored on and on
        return
    # The body was read once by the handler; aiohttp keeps it, so this does not wait for the client.
    body = await request.read()
    mirror.offer(Copy(config.target + copy_path(protocol, plane.settings.model_name), body, headers))
