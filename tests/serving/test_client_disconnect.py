"""Clients that go away or stall: a disconnect mid-upload is counted as 499, never as an error, and a
client that trickles its headers or body cannot hold a connection open indefinitely."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Callable
from urllib.parse import urlparse

import pytest

from localcluster.testing import wait_until
from modelserver.contract_parse import ModelMetrics, parse_pod_metrics

from .conftest import ExampleModels, RunningServer

pytestmark = pytest.mark.unit


def _abort_upload(url: str, path: str) -> None:
    """Send the headers and half of a declared body, then close the connection."""
    parsed = urlparse(url)
    with socket.create_connection((parsed.hostname, parsed.port), timeout=5) as sock:
        head = (f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                "Content-Length: 2000\r\n\r\n")
        sock.sendall(head.encode() + b'{"inputs": [{"name": "x", "shape": [1, 20], "data": [' + b"0.5, " * 100)


def _metrics(server: RunningServer) -> ModelMetrics | None:
    return parse_pod_metrics(server.get("/metrics").text).model("lr", "1")


@pytest.mark.parametrize("path", ["/v2/models/lr/infer", "/v1/models/lr:predict"])
def test_disconnect_mid_upload_is_a_499_not_an_error(lr_server: RunningServer, path: str,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    assert lr_server.infer([[0.0] * 20]).status_code == 200
    before = _metrics(lr_server)
    assert before is not None
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            _abort_upload(lr_server.url, path)
        after = wait_until(lambda: (m := _metrics(lr_server)) and m.client_disconnects >= 3 and m, 10,
                           "three client disconnects counted")
    assert after.client_disconnects == 3
    assert after.requests_by_code.get("499") == 3
    # Not answered, so neither a request the error rate is taken over nor an error.
    assert (after.requests, after.errors, after.client_errors) == (before.requests, 0, before.client_errors)
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert noisy == [], [r.getMessage() for r in noisy]
    assert lr_server.infer([[0.0] * 20]).status_code == 200  # the server carries on


def test_disconnect_mid_feedback_upload_logs_no_traceback(lr_server: RunningServer,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="modelserver"):
        _abort_upload(lr_server.url, "/v2/models/lr/feedback")
        wait_until(lambda: any("disconnected" in r.getMessage() for r in caplog.records), 10,
                   "the server to notice the disconnect")
    assert [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info] == []


def test_parser_keeps_disconnects_out_of_requests_and_errors() -> None:
    text = "\n".join(
        f'modelserver_requests_total{{model="m",version="1",protocol="v2",code="{code}"}} {n}'
        for code, n in (("200", 80), ("500", 1), ("400", 2), ("499", 20))) + "\n"
    m = parse_pod_metrics(text).model("m", "1")
    assert m is not None
    assert (m.requests, m.errors, m.client_errors, m.client_disconnects) == (83, 1, 2, 20)
    assert m.requests_by_code["499"] == 20


def _recv_until_closed(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_a_body_that_trickles_past_the_read_timeout_gets_408_and_a_closed_connection(
        models: ExampleModels, start_server: Callable[..., RunningServer]) -> None:
    server = start_server(models.settings("lr.joblib", body_read_timeout_s=0.5))
    parsed = urlparse(server.url)
    with socket.create_connection((parsed.hostname, parsed.port), timeout=10) as sock:
        sock.sendall(b"POST /v2/models/lr/infer HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 2000\r\n\r\n{\"inputs\": [")
        started = time.monotonic()
        answer = _recv_until_closed(sock)  # the socket timeout (10 s) fails the test if it never closes
    assert time.monotonic() - started < 5
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408") and b"application/json" in head
    assert b"MODELSERVER_BODY_READ_TIMEOUT_S" in body


def test_connections_trickling_their_headers_get_408_and_are_closed(
        models: ExampleModels, start_server: Callable[..., RunningServer]) -> None:
    # Before: aiohttp has no header timeout, and 150 such connections stayed open for the idle timeout.
    server = start_server(models.settings("lr.joblib", header_read_timeout_s=1.0))
    parsed = urlparse(server.url)
    slow = [socket.create_connection((parsed.hostname, parsed.port), timeout=15) for _ in range(150)]
    try:
        started = time.monotonic()
        for sock in slow:
            sock.sendall(b"POST /v2/models/lr/infer HTTP/1.1\r\nHost: t\r\n")
        assert server.infer([[0.0] * 20]).status_code == 200  # others are served meanwhile
        for sock in slow:
            sock.sendall(b"X-Slow: 1\r\n")  # still trickling: a header line, never the blank line
        answers = [_recv_until_closed(sock) for sock in slow]
        took = time.monotonic() - started
    finally:
        for sock in slow:
            sock.close()
    assert all(a.startswith(b"HTTP/1.1 408") and b"MODELSERVER_HEADER_READ_TIMEOUT_S" in a for a in answers), \
        {a[:80] for a in answers}
    assert took < 10, f"150 trickling connections closed after {took:.1f} s (timeout 1 s)"


def test_headers_in_time_and_a_pause_between_requests_are_not_cut(
        models: ExampleModels, start_server: Callable[..., RunningServer]) -> None:
    server = start_server(models.settings("lr.joblib", header_read_timeout_s=1.0))
    parsed = urlparse(server.url)
    request = b"GET /v2/health/ready HTTP/1.1\r\nHost: t\r\n\r\n"
    with socket.create_connection((parsed.hostname, parsed.port), timeout=10) as sock:
        for piece in (request[:10], request[10:25], request[25:]):  # in pieces, within the second
            sock.sendall(piece)
            time.sleep(0.2)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        time.sleep(1.5)  # idle between requests is the idle timeout's business, not the header timeout's
        sock.sendall(request)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("raw", [b"GARBAGE\r\n\r\n", b"POST /v2/models/lr/infer HTTP/1.1\r\nBad Header\r\n\r\n",
                                 b"GET /v2/health/live HTTP/9.9\r\n\r\n"])
def test_a_malformed_http_request_gets_the_json_error_body(lr_server: RunningServer, raw: bytes,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    parsed = urlparse(lr_server.url)
    with caplog.at_level(logging.INFO), socket.create_connection((parsed.hostname, parsed.port), timeout=10) as sock:
        sock.sendall(raw)
        head, _, body = _recv_until_closed(sock).partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].endswith(b" 400 Bad Request") and b"Content-Type: application/json" in head, head
    assert json.loads(body)["error"].startswith("malformed HTTP request")
    assert [r for r in caplog.records if r.exc_info] == []  # a client's garbage is not our traceback
