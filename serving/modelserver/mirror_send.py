"""Sending mirrored copies, in a process of its own: `python -m modelserver.mirror_send` (started by mirror.py).

Why a process: in the serving process, even sender threads that block in socket calls held the GIL for part of
each copy and woke up on every answer: the primary's median latency rose by about half at a quarter of the
server's capacity (0.41 to 0.60 ms in one run of the benchmark's paced load, docs/benchmarks.md). Here the
serving loop hands each copy over as one message on a Unix socket pair (SOCK_SEQPACKET: a whole message or
nothing, and a full buffer refuses it at once, which is the bounded queue's "full"); this process's threads
send the copies and answer one byte per copy, "s" (sent) or "f" (failed), gathered for 20 ms at a time, which
the serving loop counts. It ends when its socket closes (the server stopped or died) or on SIGTERM.

Each sender thread keeps one connection to the current target. The HTTP is the least a POST needs, written
here rather than taken from http.client, which cost more than twice the CPU per copy (about 0.25 against
0.09 ms in two runs of the benchmark's paced load; it parses an answer's headers with the email package).
An answer is read to its Content-Length so the connection carries the next copy; an answer without one
(chunked, or read until close) is judged by its status line and the connection closed. Every socket step
(connect, send, each read) has the mirror timeout. A kept-alive connection the target closed while idle
is retried once on a new connection: nothing of that copy reached the target.

This process runs at the idle scheduling class (SCHED_IDLE; nice 19 where that is refused): copies are best
effort, so whenever it and the serving process want the same core the answer to a user comes first. When the
cores are saturated the copies then wait in the socket pair until it is full and further copies are dropped and
counted, which is the bounded queue's promise; the primary is not slowed to send them. (make bench-serving:
docs/benchmarks.md, "Mirroring cost".)
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import ssl
import struct
import sys
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import orjson

from modelserver.contract import MirrorOutcome

log = logging.getLogger(__name__)

_FAILURE_LOG_EVERY_S = 60.0
MAX_ANSWER_HEAD = 64 * 1024  # an answer's status line and headers; more is not an HTTP server answering


class BadAnswer(Exception):
    """The target's bytes are not an HTTP/1.x answer."""


class Stale(ConnectionError):
    """A kept-alive connection was closed by the target before it answered."""


@dataclass(frozen=True)
class Copy:
    url: str
    body: bytes
    headers: dict[str, str]  # printable ASCII only (the caller leaves out any other value)

    def encode(self) -> bytes:
        """One message: the length of the JSON [url, headers], that JSON, then the body.

        >>> Copy.decode(Copy("http://c/x", b"{}", {"A": "b"}).encode())
        Copy(url='http://c/x', body=b'{}', headers={'A': 'b'})
        """
        meta = orjson.dumps([self.url, self.headers])
        return struct.pack("!I", len(meta)) + meta + self.body

    @staticmethod
    def decode(message: bytes) -> Copy:
        (size,) = struct.unpack_from("!I", message)
        url, headers = orjson.loads(message[4:4 + size])
        return Copy(url, message[4 + size:], headers)


SENT, FAILED = b"s", b"f"  # the answer per copy, from this process to the server
REPORT_EVERY_S = 0.02


class _FailureLog:
    """One warning line a minute at most over all senders: a dead candidate must not flood the stable's log."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = -_FAILURE_LOG_EVERY_S

    def warn(self, detail: str) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last < _FAILURE_LOG_EVERY_S:
                return
            self._last = now
        log.warning("mirrored copy failed (counted in modelserver_mirror_requests_total{outcome=\"failed\"}; "
                    "logged once a minute): %s", detail)


FAILURES = _FailureLog()


class Connection:
    """One keep-alive HTTP/1.1 connection to a target origin."""

    def __init__(self, scheme: str, host: str, port: int, timeout_s: float) -> None:
        sock = socket.create_connection((host, port), timeout=timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host) if scheme == "https" \
            else sock
        self.used = False

    def post(self, request_head: bytes, body: bytes) -> tuple[int, bool]:
        """(status, whether the connection can carry another request)."""
        reused, self.used = self.used, True
        try:
            if len(body) <= 65536:
                self.sock.sendall(request_head + body)  # one segment for a small copy
            else:
                self.sock.sendall(request_head)
                self.sock.sendall(body)
            data = self.sock.recv(65536)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise Stale(str(exc)) if reused else exc from None
        if not data and reused:
            raise Stale("closed before answering")
        head, rest = self._answer_head(data)
        status, length, keep = parse_answer_head(head)
        if length is None:
            return status, False
        while len(rest) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise BadAnswer("answer body cut short")
            rest += chunk
        return status, keep and len(rest) == length

    def _answer_head(self, data: bytes) -> tuple[bytes, bytes]:
        while b"\r\n\r\n" not in data:
            if not data or len(data) > MAX_ANSWER_HEAD:
                raise BadAnswer("answer cut short" if not data else "answer headers too long")
            chunk = self.sock.recv(65536)
            if not chunk:
                raise BadAnswer("answer cut short")
            data += chunk
        head, rest = data.split(b"\r\n\r\n", 1)
        return head, rest

    def close(self) -> None:
        self.sock.close()


def parse_answer_head(head: bytes) -> tuple[int, int | None, bool]:
    """(status, Content-Length or None, keep-alive) of an HTTP/1.x answer's status line and headers.

    >>> parse_answer_head(b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\ncontent-length: 12")
    (200, 12, True)
    >>> parse_answer_head(b"HTTP/1.1 503 Service Unavailable\\r\\nConnection: close\\r\\nContent-Length: 0")
    (503, 0, False)
    >>> parse_answer_head(b"HTTP/1.1 200 OK\\r\\nTransfer-Encoding: chunked")
    (200, None, False)
    """
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise BadAnswer(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    length: int | None = None
    keep = parts[0] == b"HTTP/1.1"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length" and value.strip().isdigit():
            length = int(value)
        elif name == b"connection":
            keep = b"close" not in value.lower()
        elif name == b"transfer-encoding":
            return int(parts[1]), None, False  # chunked: the status is all a copy needs
    return int(parts[1]), length, keep


def request_head(path: str, netloc: str, headers: dict[str, str], length: int) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {netloc}", f"Content-Length: {length}",
             *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


class Sender:
    """Sends copies one at a time over one keep-alive connection to the current target."""

    def __init__(self, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._connection: Connection | None = None
        self._origin = ""  # scheme://host:port of the open connection

    def send(self, copy: Copy) -> MirrorOutcome:
        target = urlsplit(copy.url)
        head = request_head(target.path + (f"?{target.query}" if target.query else ""), target.netloc,
                            copy.headers, len(copy.body))
        try:
            try:
                status = self._post(target.scheme, target.hostname or "", target.port, head, copy.body)
            except Stale:
                self._close()  # the target closed the idle connection: once more on a new one
                status = self._post(target.scheme, target.hostname or "", target.port, head, copy.body)
        except (OSError, BadAnswer, ValueError) as exc:
            self._close()
            FAILURES.warn(f"{copy.url}: {type(exc).__name__} {exc}".rstrip())
            return MirrorOutcome.FAILED
        if 200 <= status < 300:
            return MirrorOutcome.SENT
        FAILURES.warn(f"{copy.url} answered {status}")
        return MirrorOutcome.FAILED

    def _post(self, scheme: str, host: str, port: int | None, head: bytes, body: bytes) -> int:
        origin = f"{scheme}://{host}:{port}"
        if self._connection is None or self._origin != origin:
            self._close()
            self._connection = Connection(scheme, host, port or (443 if scheme == "https" else 80), self._timeout_s)
            self._origin = origin
        status, keep = self._connection.post(head, body)
        if not keep:
            self._close()
        return status

    def close(self) -> None:
        self._close()

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._connection, self._origin = None, ""


class Outcomes:
    """The senders' outcomes, sent to the server together every REPORT_EVERY_S: one wake-up of the serving loop
    for many copies rather than one each (about 10 us of the loop per copy saved)."""

    def __init__(self, channel: socket.socket) -> None:
        self._channel = channel
        self._lock = threading.Lock()
        self._unsent = bytearray()

    def add(self, outcome: MirrorOutcome) -> None:
        with self._lock:
            self._unsent += SENT if outcome is MirrorOutcome.SENT else FAILED

    def report_forever(self) -> None:
        try:
            while True:
                time.sleep(REPORT_EVERY_S)
                with self._lock:
                    unsent, self._unsent = bytes(self._unsent), bytearray()
                if unsent:
                    self._channel.send(unsent)
        except OSError:
            return  # the server is gone


def serve_copies(channel: socket.socket, outcomes: Outcomes, timeout_s: float, max_message: int) -> None:
    """One sender thread's life: copies in from the channel, each outcome reported, until the channel closes."""
    sender = Sender(timeout_s)
    buffer = bytearray(max_message)
    try:
        while True:
            size = channel.recv_into(buffer)
            if not size:
                return  # the server closed its end
            outcomes.add(sender.send(Copy.decode(bytes(memoryview(buffer)[:size]))))
    except OSError:
        return  # the server is gone
    finally:
        sender.close()


def yield_cpu() -> str:
    """Put this process behind the serving one for CPU; the policy it got, for the log."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return "SCHED_IDLE"
    except (AttributeError, OSError):  # not Linux, or a seccomp profile that refuses it
        pass
    try:
        return f"nice {os.nice(19)}"
    except OSError:
        return "unchanged"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelserver.mirror_send")
    parser.add_argument("--fd", type=int, required=True, help="this end of the server's socket pair")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=1.0)
    parser.add_argument("--max-message", type=int, required=True)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.debug("mirror senders scheduled at %s", yield_cpu())
    channel = socket.socket(fileno=args.fd)
    outcomes = Outcomes(channel)
    threading.Thread(target=outcomes.report_forever, name="mirror-outcomes", daemon=True).start()
    workers = [threading.Thread(target=serve_copies, args=(channel, outcomes, args.timeout, args.max_message),
                                name=f"mirror-sender-{i}", daemon=True) for i in range(args.workers)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()  # all end when the server closes the channel
    return 0


if __name__ == "__main__":
    sys.exit(main())
