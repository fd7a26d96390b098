"""`modelrollout-operator`: run the operator.

    modelrollout-operator                          # all namespaces
    modelrollout-operator --namespace ml --namespace ml-staging
    modelrollout-operator --liveness http://0.0.0.0:8080/healthz --metrics-port 8081
    modelrollout-operator --leader-elect --lease-namespace modelrollout-system   # 2+ replicas

Settings also come from the environment (WATCH_NAMESPACES=ml,ml-staging, METRICS_PORT, METRICS_ADDRESS,
LIVENESS_ENDPOINT, LEADER_ELECT=true, POD_NAMESPACE for the Lease, POD_NAME as the identity).

Health: /healthz (liveness: the process and, on the leader, kopf are running) and /readyz
(readiness: kopf has started, or on a standby the Lease was read recently) on the --liveness address.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import kopf
from aiohttp import web
from prometheus_client import start_http_server

import modelrollout.handlers  # registers the handlers with kopf; main also sets its watch scope
from modelrollout import leader
from modelrollout.kubelease import Elector, LeaseStore

log = logging.getLogger("modelrollout.main")
LOST_LEADERSHIP_EXIT = 1


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="modelrollout-operator", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    env_ns = [n for n in os.environ.get("WATCH_NAMESPACES", "").split(",") if n]
    parser.add_argument("--namespace", action="append", default=None,
                        help="watch only this namespace (repeatable; default: all)")
    parser.add_argument("--liveness", default=os.environ.get("LIVENESS_ENDPOINT", "http://0.0.0.0:8080/healthz"),
                        help="address of the health endpoints (/healthz liveness, /readyz readiness)")
    parser.add_argument("--metrics-port", type=int, default=int(os.environ.get("METRICS_PORT", "8081")),
                        help="port of the operator's Prometheus metrics (0: off)")
    parser.add_argument("--metrics-address", default=os.environ.get("METRICS_ADDRESS", "0.0.0.0"),
                        help="address the metrics server binds (the chart passes the pod IP)")
    parser.add_argument("--leader-elect", action="store_true",
                        default=os.environ.get("LEADER_ELECT", "").lower() == "true",
                        help="run as one of several replicas: only the holder of a coordination.k8s.io Lease acts")
    parser.add_argument("--lease-namespace", default=os.environ.get("POD_NAMESPACE", "default"),
                        help="namespace of the Lease (default: the pod's namespace)")
    parser.add_argument("--lease-name", default="modelrollout-operator", help="name of the Lease")
    identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"
    parser.add_argument("--identity", default=identity,
                        help="this replica's name in the Lease (default: the pod name)")
    parser.add_argument("--watch-cache", action="store_true",
                        default=os.environ.get("WATCH_CACHE", "").lower() == "true",
                        help="experimental: read pods, Deployments and Services from a watch-fed cache "
                             "(docs/architecture.md, 'Reads'); off by default until a capacity dip seen "
                             "with it in a long test run is explained")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    args.namespace = args.namespace or env_ns
    return args


class Health:
    """/healthz and /readyz, served whether this replica leads or waits."""

    def __init__(self) -> None:
        self.alive: Callable[[], bool] = lambda: True
        self.ready: Callable[[], bool] = lambda: False

    async def serve(self, url: str) -> web.AppRunner:
        parts = urlsplit(url)
        app = web.Application()
        app.router.add_get("/healthz", lambda _: self._answer(self.alive()))
        app.router.add_get("/readyz", lambda _: self._answer(self.ready()))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, parts.hostname or "0.0.0.0", parts.port or 8080).start()
        return runner

    @staticmethod
    async def _answer(ok: bool) -> web.Response:
        return web.json_response({"ok": ok}, status=200 if ok else 503)


def _kopf_options(args: argparse.Namespace, stop: asyncio.Event, ready: asyncio.Event) -> dict[str, Any]:
    modelrollout.handlers.WATCH_NAMESPACES = tuple(args.namespace or ())  # the adapter's watch cache covers the same
    modelrollout.handlers.WATCH_CACHE = args.watch_cache
    # standalone: kopf's peering is not leader election; the Lease below is.
    return {"standalone": True, "clusterwide": not args.namespace, "namespaces": args.namespace or (),
            "stop_flag": stop, "ready_flag": ready}


async def _run(args: argparse.Namespace) -> int:
    health, stop, ready = Health(), asyncio.Event(), asyncio.Event()
    runner = await health.serve(args.liveness)
    try:
        if not args.leader_elect:
            operator = asyncio.create_task(kopf.operator(**_kopf_options(args, stop, ready)))
            health.alive, health.ready = (lambda: not operator.done()), ready.is_set
            await operator
            return 0
        return await _run_elected(args, health, stop, ready)
    finally:
        await runner.cleanup()


async def _run_elected(args: argparse.Namespace, health: Health, stop: asyncio.Event, ready: asyncio.Event) -> int:
    from modelrollout.handlers import _api_client

    elector = Elector(LeaseStore(_api_client(), args.lease_namespace, args.lease_name), args.identity)
    health.ready = lambda: elector.contacted_within(2 * leader.LEASE_SECONDS)
    await elector.acquire()
    operator = asyncio.create_task(kopf.operator(**_kopf_options(args, stop, ready)))
    keeper = asyncio.create_task(elector.keep())
    health.alive, health.ready = (lambda: not operator.done()), ready.is_set
    done, _ = await asyncio.wait({operator, keeper}, return_when=asyncio.FIRST_COMPLETED)
    if keeper in done:
        # Lost the Lease: stop acting at once (before another replica can take it), as client-go's
        # elector does; the restarted container comes back as a standby.
        logging.shutdown()
        os._exit(LOST_LEADERSHIP_EXIT)
    keeper.cancel()
    await asyncio.to_thread(elector.release)
    return 0


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.metrics_port:
        start_http_server(args.metrics_port, addr=args.metrics_address)
    try:
        sys.exit(asyncio.run(_run(args)))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
