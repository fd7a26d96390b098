"""The process kubelet: one Node whose pods' containers run as local processes.

It registers a Ready Node and renews its Lease, binds unscheduled pods to itself (standing in for
kube-scheduler on a one-node cluster), and runs one PodWorker per pod. Run it as
`python -m localcluster.kubelet --kubeconfig K --workdir D` inside the cluster's network namespace.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import ipaddress
import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import kubernetes

from localcluster.binaries import K8S_VERSION
from localcluster.controlplane import NODE_IP
from localcluster.informer import run_informer
from localcluster.pods import PodWorker

log = logging.getLogger("kubelet")
NODE_NAME = "localcluster-node"
POD_RANGE = ipaddress.ip_network("10.244.1.0/24")  # 253 pods on the node is plenty here


def listening_addresses(table: Path = Path("/proc/net/tcp")) -> set[str]:
    """IPv4 addresses with a listening TCP socket in this network namespace (state 0A is LISTEN)."""
    out = set()
    for line in table.read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[3] == "0A":
            address = fields[1].split(":")[0]
            out.add(str(ipaddress.IPv4Address(int.from_bytes(bytes.fromhex(address), "little"))))
    return out


class IpPool:
    def __init__(self, listening: Callable[[], set[str]] = listening_addresses) -> None:
        self.free = [str(ip) for ip in POD_RANGE.hosts()]
        self.used: set[str] = set()
        self.listening = listening

    def take(self) -> str:
        # An address something still listens on belongs to a process that outlived its pod: giving it to
        # a new pod would let that process answer for it. Skip it (and say so) until it is free.
        busy = self.listening()
        for _ in range(len(self.free)):
            ip = self.free.pop(0)
            if ip not in busy:
                self.used.add(ip)
                return ip
            log.warning("pod IP %s is still listened on by a process of a finished pod: skipped", ip)
            self.free.append(ip)
        raise RuntimeError("no free pod IP: every free address is still listened on")

    def give_back(self, ip: str) -> None:
        # Reused last, so a stale endpoint never points at a new pod right away.
        if ip in self.used:
            self.used.discard(ip)
            self.free.append(ip)


def node_manifest() -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": NODE_NAME, "labels": {
            "kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
        }},
    }


def fits_node(pod: dict[str, Any]) -> bool:
    """Whether the pod's nodeSelector matches this node's labels, as kube-scheduler checks it: a pod
    that does not fit stays Pending here too instead of running where a real cluster would not run it."""
    labels = node_manifest()["metadata"]["labels"]
    return all(labels.get(k) == v for k, v in (pod["spec"].get("nodeSelector") or {}).items())


def node_status() -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    capacity = {"cpu": "32", "memory": "64Gi", "pods": "250", "ephemeral-storage": "100Gi"}
    return {"status": {
        "capacity": capacity, "allocatable": capacity,
        "addresses": [{"type": "InternalIP", "address": NODE_IP}, {"type": "Hostname", "address": NODE_NAME}],
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "message": "process kubelet is posting ready status",
                        "lastHeartbeatTime": now, "lastTransitionTime": now}],
        "nodeInfo": {"kubeletVersion": K8S_VERSION, "kubeProxyVersion": K8S_VERSION,
                     "containerRuntimeVersion": "process://local", "operatingSystem": "linux",
                     "architecture": "amd64", "osImage": "localcluster", "kernelVersion": "",
                     "machineID": "", "systemUUID": "", "bootID": ""},
    }}


class Kubelet:
    def __init__(self, api: kubernetes.client.ApiClient, workdir: Path) -> None:
        self.api = api
        self.core = kubernetes.client.CoreV1Api(api)
        self.coord = kubernetes.client.CoordinationV1Api(api)
        self.workdir = workdir
        self.ips = IpPool()
        self.workers: dict[str, PodWorker] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.bindings: set[asyncio.Future[None]] = set()
        self.stop_event = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.session: aiohttp.ClientSession | None = None

    def register(self) -> None:
        try:
            self.core.create_node(node_manifest())
        except kubernetes.client.ApiException as exc:
            if exc.status != 409:
                raise
        self.heartbeat()

    def heartbeat(self) -> None:
        self.core.patch_node_status(NODE_NAME, node_status())
        now = dt.datetime.now(dt.UTC)
        lease = {"metadata": {"name": NODE_NAME, "namespace": "kube-node-lease"},
                 "spec": {"holderIdentity": NODE_NAME, "leaseDurationSeconds": 40, "renewTime": now}}
        try:
            self.coord.replace_namespaced_lease(NODE_NAME, "kube-node-lease", self._lease(lease))
        except kubernetes.client.ApiException as exc:
            if exc.status != 404:
                raise
            self.coord.create_namespaced_lease("kube-node-lease", lease)

    def _lease(self, lease: dict[str, Any]) -> dict[str, Any]:
        current = self.coord.read_namespaced_lease(NODE_NAME, "kube-node-lease")
        lease["metadata"]["resourceVersion"] = current.metadata.resource_version
        return lease

    def on_pod(self, event: str, pod: dict[str, Any]) -> None:
        """Informer callback (a watch thread): hand the event to the event loop."""
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self._dispatch, event, pod)

    def _dispatch(self, event: str, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        if not pod["spec"].get("nodeName"):
            if event != "DELETED" and fits_node(pod):
                task = asyncio.ensure_future(self._bind(pod))
                self.bindings.add(task)
                task.add_done_callback(self.bindings.discard)
            return
        if pod["spec"]["nodeName"] != NODE_NAME:
            return
        worker = self.workers.get(uid)
        if event == "DELETED":
            if worker is not None:  # deleted behind our back (force delete): stop at once
                pod["metadata"].setdefault("deletionTimestamp", "now")
                pod["metadata"]["deletionGracePeriodSeconds"] = 0
                worker.update(pod)
            return
        if worker is not None:
            worker.update(pod)
        elif pod.get("status", {}).get("phase") not in ("Succeeded", "Failed") or pod["metadata"].get(
                "deletionTimestamp"):
            self._start_worker(pod)

    def _start_worker(self, pod: dict[str, Any]) -> None:
        assert self.session is not None
        uid = pod["metadata"]["uid"]
        ip = self.ips.take()
        worker = PodWorker(self.api, pod, ip, self.workdir / "pods" / f"{pod['metadata']['namespace']}_"
                           f"{pod['metadata']['name']}_{uid[:8]}", self.session)
        self.workers[uid] = worker
        task = asyncio.ensure_future(worker.run())
        self.tasks[uid] = task
        task.add_done_callback(lambda _t: self._forget(uid, ip))

    def _forget(self, uid: str, ip: str) -> None:
        self.workers.pop(uid, None)
        self.tasks.pop(uid, None)
        self.ips.give_back(ip)

    async def _bind(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": meta["name"], "uid": meta["uid"]},
                "target": {"apiVersion": "v1", "kind": "Node", "name": NODE_NAME}}
        try:
            await asyncio.to_thread(self.core.create_namespaced_pod_binding, meta["name"], meta["namespace"],
                                    body, _preload_content=False)
        except kubernetes.client.ApiException as exc:
            if exc.status not in (404, 409):
                log.warning("binding %s/%s failed: %s", meta["namespace"], meta["name"], exc.reason)

    async def heartbeat_loop(self) -> None:
        while not self.stop_event.is_set():
            await asyncio.sleep(10)
            try:
                await asyncio.to_thread(self.heartbeat)
            except Exception as exc:
                log.warning("heartbeat failed: %s", exc)

    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        await asyncio.to_thread(self.register)
        self.session = aiohttp.ClientSession()
        run_informer(self.api, self.core.list_pod_for_all_namespaces, self.on_pod, self.stop_event)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, stop.set)
        beat = asyncio.ensure_future(self.heartbeat_loop())
        log.info("node %s ready", NODE_NAME)
        await stop.wait()
        self.stop_event.set()
        beat.cancel()
        await self.shutdown()

    async def shutdown(self) -> None:
        # Stop every pod's processes (grace 2s): the kubelet going away takes its pods with it.
        await asyncio.gather(*(c.stop(2.0) for w in self.workers.values() for c in w.containers),
                             return_exceptions=True)
        for task in self.tasks.values():
            task.cancel()
        if self.session is not None:
            await self.session.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--workdir", required=True, type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    api = kubernetes.config.new_client_from_config(config_file=args.kubeconfig)
    asyncio.run(Kubelet(api, args.workdir).run())


if __name__ == "__main__":
    main()
