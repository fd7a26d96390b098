"""One process that answers the serving port of every simulated (kwok) pod: `make bench-operator`'s metrics.

kwok pods run no process, so nothing would answer the operator's scrapes of their IPs. The pod range
kwok hands out is local inside the benchmark's network namespace (`ip route add local <cidr> dev lo`),
so one socket on 0.0.0.0:<port> receives every connection to <any pod IP>:<port>; the address a client
dialled (getsockname) says which pod it meant. Each pod answers in the model server's own format:

    GET /metrics           the contract's series (serving/modelserver/contract.py names, labels, buckets)
    GET /v2/health/ready   200 {"ready": true} (readiness itself comes from kwok's pod status)

Counters grow like a healthy version under steady traffic: RATE requests a second since the pod got
its IP, 0.1 % of them 5xx, latency from one fixed distribution, so two versions look alike and a canary
passes its analysis. Which model and version a pod serves is read from its container's MODEL_NAME /
MODEL_VERSION, which the operator sets, through a watch on the pods of every ModelRollout.

    python bench/operator/podsim.py --port 8080   (KUBECONFIG names the cluster)
"""

from __future__ import annotations

import argparse
import math
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
from aiohttp import web

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "cluster"), str(ROOT / "serving")]

from localcluster.informer import run_informer  # noqa: E402
from modelserver import contract as c  # noqa: E402

ROLLOUT_LABEL = "modelrollout.dev/rollout"
RATE = 100.0  # requests a second per pod
ERROR_SHARE = 0.001  # of them answered 5xx
LATENCY_MEDIAN, LATENCY_SIGMA = 0.003, 0.5  # log-normal seconds: p99 about 9.6 ms


@dataclass(frozen=True)
class SimulatedPod:
    model: str
    version: str
    since: float  # monotonic time the pod got its IP


def latency_share(le: float) -> float:
    """Share of requests answered within `le` seconds (the log-normal's CDF)."""
    return 0.5 * (1 + math.erf(math.log(le / LATENCY_MEDIAN) / (LATENCY_SIGMA * math.sqrt(2))))


def _labels(**values: str) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in values.items()) + "}"


def exposition(pod: SimulatedPod, now: float) -> str:
    """The pod's /metrics text after `now - pod.since` seconds of traffic; every count only grows."""
    total = int(RATE * (now - pod.since))
    errors = int(total * ERROR_SHARE)
    mv = {c.MODEL: pod.model, c.VERSION: pod.version}
    lines = [f"# TYPE {c.REQUESTS.name} counter",
             f"{c.REQUESTS.sample}{_labels(**mv, **{c.PROTOCOL: 'v2', c.CODE: '200'})} {total - errors}",
             f"{c.REQUESTS.sample}{_labels(**mv, **{c.PROTOCOL: 'v2', c.CODE: '500'})} {errors}",
             f"# TYPE {c.REQUEST_DURATION.name} histogram"]
    for le in c.REQUEST_DURATION.buckets:
        lines.append(f"{c.REQUEST_DURATION.name}_bucket{_labels(**mv, le=str(le))} {int(total * latency_share(le))}")
    mean = LATENCY_MEDIAN * math.exp(LATENCY_SIGMA ** 2 / 2)
    lines += [f'{c.REQUEST_DURATION.name}_bucket{_labels(**mv, le="+Inf")} {total}',
              f"{c.REQUEST_DURATION.name}_sum{_labels(**mv)} {total * mean:.6f}",
              f"{c.REQUEST_DURATION.name}_count{_labels(**mv)} {total}",
              f"# TYPE {c.MODEL_INFO.name} gauge",
              f"{c.MODEL_INFO.name}{_labels(**mv, **{c.DIGEST: '', c.FORMAT: 'skops'})} 1",
              f"# TYPE {c.MODEL_READY.name} gauge",
              f"{c.MODEL_READY.name}{_labels(**mv)} 1"]
    return "\n".join(lines) + "\n"


class PodTable:
    """Pod IP -> what that pod serves, kept by a pod watch (a daemon thread)."""

    def __init__(self) -> None:
        self.by_ip: dict[str, SimulatedPod] = {}
        self._ip_of: dict[str, str] = {}  # pod uid -> IP

    def on_pod(self, event: str, pod: dict[str, Any]) -> None:
        uid, ip = pod["metadata"]["uid"], (pod.get("status") or {}).get("podIP")
        if event == "DELETED" or not ip or pod["metadata"].get("deletionTimestamp"):
            old = self._ip_of.pop(uid, None)
            if old is not None:
                self.by_ip.pop(old, None)
            return
        if self._ip_of.get(uid) == ip:
            return
        env = {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][0].get("env") or []}
        self._ip_of[uid] = ip
        self.by_ip[ip] = SimulatedPod(env.get("MODEL_NAME", ""), env.get("MODEL_VERSION", ""), time.monotonic())


def app(table: PodTable) -> web.Application:
    def pod_of(request: web.Request) -> SimulatedPod | None:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        return table.by_ip.get(sockname[0]) if sockname else None

    async def metrics(request: web.Request) -> web.Response:
        pod = pod_of(request)
        if pod is None:  # an IP no simulated pod holds (yet): what a closed port would say
            raise web.HTTPNotFound()
        return web.Response(text=exposition(pod, time.monotonic()), content_type="text/plain")

    async def ready(request: web.Request) -> web.Response:
        if pod_of(request) is None:
            raise web.HTTPNotFound()
        return web.json_response({"ready": True})

    application = web.Application()
    application.router.add_get("/metrics", metrics)
    application.router.add_get("/v2/health/ready", ready)
    return application


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    kubernetes.config.load_kube_config()
    api = kubernetes.client.ApiClient()
    table = PodTable()
    run_informer(api, kubernetes.client.CoreV1Api(api).list_pod_for_all_namespaces, table.on_pod,
                 threading.Event(), label_selector=ROLLOUT_LABEL)
    web.run_app(app(table), host="0.0.0.0", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
