"""The HTTP connection layer's own answers, in the protocol's JSON error shape.

aiohttp answers a request it cannot parse (a garbage request line, a malformed header, an unknown HTTP
version) itself, before any handler or middleware runs, with a text/plain body, and logs the client's
garbage with a traceback. A client of this server expects `{"error": "..."}` on every error, so the
runner here swaps in a connection handler whose parse-error answer is that JSON (and logs at debug).

It also closes connections whose request headers trickle in (`MODELSERVER_HEADER_READ_TIMEOUT_S`).

This reaches into aiohttp at points documented by its source (`AppRunner._make_server`,
`RequestHandler.handle_error`, `data_received`, `_handle_request`, `_request_count`);
tests/serving/test_client_disconnect.py fails if any moves.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

log = logging.getLogger(__name__)


def _timeout_answer() -> bytes:
    body = orjson.dumps({"error": "request headers not received within MODELSERVER_HEADER_READ_TIMEOUT_S"})
    return (b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


class _JsonParseErrors(RequestHandler):
    """A connection whose parse errors are JSON, and whose requests must finish their headers within
    `header_timeout` seconds of their first byte.

    aiohttp has no header timeout of its own: a client sending header lines slowly (or never the blank
    line) holds its connection until the idle timeout, 620 s here, so a few hundred of them exhaust file
    descriptors. A request is between its first byte and its headers when bytes arrive while every
    request seen so far has been answered; aiohttp counts parsed requests (`_request_count`), and
    `_handle_request` ending counts an answered one."""

    header_timeout = 10.0
    _answered = 0
    _header_deadline: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        parsed = self._request_count
        super().data_received(data)
        if self._request_count > parsed:
            self._cancel_header_deadline()
        elif (self._header_deadline is None and self._request_count == self._answered and data
              and not (self._force_close or self._close)):
            self._header_deadline = self._loop.call_later(self.header_timeout, self._headers_too_slow)

    async def _handle_request(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super()._handle_request(*args, **kwargs)
        finally:
            self._answered += 1

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self.transport is None or self._request_count != self._answered:
            return
        log.debug("request headers not received within %s s; closing", self.header_timeout)
        self.transport.write(_timeout_answer())
        self.force_close()

    def _cancel_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)

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
    header_timeout = 10.0

    def __call__(self) -> RequestHandler:
        handler = _JsonParseErrors(self, loop=self._loop, **self._kwargs)
        handler.header_timeout = self.header_timeout
        return handler


class JsonErrorsRunner(web.AppRunner):
    """An AppRunner whose connections answer unparseable requests with the JSON error body and close
    requests whose headers take longer than `header_timeout` seconds (408)."""

    def __init__(self, app: web.Application, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._header_timeout = header_timeout

    async def _make_server(self) -> web.Server:
        server: Any = await super()._make_server()
        server.__class__ = _JsonParseErrorServer  # same state, only __call__ differs
        server.header_timeout = self._header_timeout
        return server
