"""The HTTP connection layer's own answers, in the protocol's JSON error shape.

aiohttp answers a request it cannot parse (a garbage request line, a malformed header, an unknown HTTP
version) itself, before any handler or middleware runs, with a text/plain body, and logs the client's
garbage with a traceback. A client of this server expects `{"error": "..."}` on every error, so the
runner here swaps in a connection handler whose parse-error answer is that JSON (and logs at debug).

This reaches into aiohttp at two documented-by-source points (`AppRunner._make_server`, and
`RequestHandler.handle_error`); tests/serving/test_client_disconnect.py fails if either moves.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

log = logging.getLogger(__name__)


class _JsonParseErrors(RequestHandler):
    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status >= 500 or exc is None or request.writer.output_size > 0:
            return super().handle_error(request, status, exc, message)
        log.debug("malformed HTTP request from %s: %r", request.remote, exc)
        reason = str(getattr(exc, "message", "") or message or type(exc).__name__).splitlines()[0]
        response = web.Response(body=orjson.dumps({"error": f"malformed HTTP request: {reason}"}),
                                status=status, content_type="application/json")
        response.force_close()
        return response


class _JsonParseErrorServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _JsonParseErrors(self, loop=self._loop, **self._kwargs)


class JsonErrorsRunner(web.AppRunner):
    """An AppRunner whose connections answer unparseable requests with the JSON error body."""

    async def _make_server(self) -> web.Server:
        server: Any = await super()._make_server()
        server.__class__ = _JsonParseErrorServer  # same state, only __call__ differs
        return server
