"""A tiny HTTP server for test pods (image `localcluster/python`, args `-m localcluster.echo`).

Answers every GET with its pod name in the `X-Pod` header; `/ready` answers 503 while the file
named by READY_FILE is absent (when READY_FILE is set), so a test can fail a readiness probe. On
SIGTERM it logs "SIGTERM received", keeps serving for DRAIN_SECONDS (like a preStop sleep, so
endpoints are gone before it stops), then exits 0.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

POD = os.environ.get("POD_NAME", os.environ.get("HOSTNAME", "unknown"))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        status, body = 200, f"hello from {POD}\n".encode()
        ready_file = os.environ.get("READY_FILE")
        if self.path == "/ready" and ready_file and not os.path.exists(ready_file):
            status, body = 503, b"not ready\n"
        self.send_response(status)
        self.send_header("X-Pod", POD)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    host = os.environ.get("HOST", "0.0.0.0")
    port = int(os.environ.get("PORT", "8080"))
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    drain = float(os.environ.get("DRAIN_SECONDS", "1"))

    def on_term(_sig: int, _frame: object) -> None:
        print("SIGTERM received", flush=True)

        def finish() -> None:
            time.sleep(drain)
            server.shutdown()

        threading.Thread(target=finish, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    print(f"serving on {host}:{port} as {POD}", flush=True)
    server.serve_forever()
    print("stopped", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
