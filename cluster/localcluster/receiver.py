"""A webhook receiver for test pods (image `localcluster/python`, args `-m localcluster.receiver`).

Records the JSON body of every POST and answers 200, except the first FAIL_FIRST posts, which get
503 (so a sender's retries are exercised); GET /received returns what was recorded, in order.
"""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

RECEIVED: list[dict[str, Any]] = []
LOCK = threading.Lock()
ATTEMPTS = [0]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with LOCK:
            ATTEMPTS[0] += 1
            if ATTEMPTS[0] <= int(os.environ.get("FAIL_FIRST", "0")):
                self._answer(503, {"error": "failing on purpose"})
                return
            RECEIVED.append({"path": self.path, "body": json.loads(body or b"null")})
        self._answer(200, {"ok": True})

    def do_GET(self) -> None:
        with LOCK:
            self._answer(200, {"attempts": ATTEMPTS[0], "received": list(RECEIVED)})

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    server = ThreadingHTTPServer((os.environ.get("HOST", "0.0.0.0"), int(os.environ.get("PORT", "8080"))), Handler)
    server.daemon_threads = True
    print("receiving", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
