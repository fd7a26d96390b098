"""`modelrollout-operator`: run the operator.

    modelrollout-operator                          # all namespaces
    modelrollout-operator --namespace ml --namespace ml-staging
    modelrollout-operator --liveness http://0.0.0.0:8080/healthz --metrics-port 8081

Settings also come from the environment (WATCH_NAMESPACES=ml,ml-staging, METRICS_PORT, METRICS_ADDRESS,
LIVENESS_ENDPOINT).
"""

from __future__ import annotations

import argparse
import logging
import os

import kopf
from prometheus_client import start_http_server

import modelrollout.handlers  # noqa: F401 - registers the handlers with kopf


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="modelrollout-operator", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    env_ns = [n for n in os.environ.get("WATCH_NAMESPACES", "").split(",") if n]
    parser.add_argument("--namespace", action="append", default=None,
                        help="watch only this namespace (repeatable; default: all)")
    parser.add_argument("--liveness", default=os.environ.get("LIVENESS_ENDPOINT", "http://0.0.0.0:8080/healthz"),
                        help="kopf liveness endpoint for the pod's livenessProbe")
    parser.add_argument("--metrics-port", type=int, default=int(os.environ.get("METRICS_PORT", "8081")),
                        help="port of the operator's Prometheus metrics (0: off)")
    parser.add_argument("--metrics-address", default=os.environ.get("METRICS_ADDRESS", "0.0.0.0"),
                        help="address the metrics server binds (the chart passes the pod IP)")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    args.namespace = args.namespace or env_ns
    return args


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.metrics_port:
        start_http_server(args.metrics_port, addr=args.metrics_address)
    # Standalone: one replica (the chart uses strategy Recreate); kopf peering is not leader election.
    kopf.run(standalone=True, clusterwide=not args.namespace, namespaces=args.namespace or (),
             liveness_endpoint=args.liveness)


if __name__ == "__main__":
    main()
