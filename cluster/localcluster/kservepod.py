"""Runs a KServe predictor script as a local-cluster pod: `python kservepod.py SCRIPT [ARGS...]`.

kserve's ModelServer binds its REST server to 0.0.0.0 and its gRPC server to [::], with no setting to
change either; in a real pod each has a network namespace of its own. Here every pod shares one, so the
second pod of a Deployment could not listen on :8080. This wrapper makes both bind the pod's IP (HOST)
instead, then runs the script unchanged as __main__. Nothing else about the server changes.

Run by the python of kserve's own virtualenv (hack/build-kserve.sh), not the project's: it imports
only the standard library, kserve and grpc, and imports kserve only after setting sys.argv, because
kserve.model_server parses the command line when it is imported.
"""

from __future__ import annotations

import os
import runpy
import sys
from typing import Any


def bind_pod_ip(host: str) -> None:
    from grpc import aio  # kserve's gRPC server calls aio.server(...) through the module, at start
    from kserve.protocol.rest import server as rest

    rest_init = rest.RESTServer.__init__

    def init_on_pod_ip(self: Any, *args: Any, **kwargs: Any) -> None:
        rest_init(self, *args, **kwargs)
        self.config.host = host  # uvicorn reads it when it binds, after __init__

    make_grpc_server = aio.server

    def grpc_server_on_pod_ip(*args: Any, **kwargs: Any) -> Any:
        server = make_grpc_server(*args, **kwargs)
        add_port = server.add_insecure_port
        server.add_insecure_port = lambda address: add_port(address.replace("[::]", host, 1))
        return server

    rest.RESTServer.__init__ = init_on_pod_ip
    aio.server = grpc_server_on_pod_ip


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: kservepod.py SCRIPT [ARGS...]")
    script = sys.argv[1]
    sys.argv = sys.argv[1:]
    if host := os.environ.get("HOST"):
        bind_pod_ip(host)
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
