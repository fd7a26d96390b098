"""The service proxy (kube-proxy's role): for every ClusterIP Service port, a listener at
clusterIP:port that forwards each new connection to a random ready endpoint taken from the
Service's EndpointSlices, kept current from a watch. Like kube-proxy in iptables mode, the choice
is per connection, so two Deployments behind one Service share traffic by their ready-pod ratio.

Run as `python -m localcluster.proxy --kubeconfig K` inside the cluster's network namespace.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes

from localcluster import dns
from localcluster.controlplane import APISERVER_PORT, NODE_IP
from localcluster.informer import run_informer

log = logging.getLogger("proxy")
ServiceKey = tuple[str, str]  # (namespace, name)


@dataclass
class ServicePort:
    name: str
    port: int
    target: int | str
    server: asyncio.AbstractServer | None = None


@dataclass
class ServiceEntry:
    cluster_ip: str
    ports: dict[int, ServicePort] = field(default_factory=dict)


def ready_endpoints(slices: dict[str, dict[str, Any]], port_name: str, target: int | str) -> list[tuple[str, int]]:
    """(ip, port) of every ready endpoint for the service port named `port_name`."""
    out: list[tuple[str, int]] = []
    for sl in slices.values():
        port = next((p.get("port") for p in sl.get("ports") or [] if (p.get("name") or "") == port_name), None)
        if port is None:
            port = target if isinstance(target, int) else None
        if port is None:
            continue
        for ep in sl.get("endpoints") or []:
            if (ep.get("conditions") or {}).get("ready", True) is not False:
                out.extend((addr, int(port)) for addr in ep.get("addresses") or [])
    return out


class ServiceProxy:
    def __init__(self, api: kubernetes.client.ApiClient) -> None:
        self.api = api
        self.services: dict[ServiceKey, ServiceEntry] = {}
        self.slices: dict[ServiceKey, dict[str, dict[str, Any]]] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop_event = threading.Event()

    def on_service(self, event: str, svc: dict[str, Any]) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._sync_service(event, svc)))

    def on_slice(self, event: str, sl: dict[str, Any]) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self._sync_slice, event, sl)

    def _sync_slice(self, event: str, sl: dict[str, Any]) -> None:
        meta = sl["metadata"]
        owner = (meta.get("labels") or {}).get("kubernetes.io/service-name")
        if not owner:
            return
        slices = self.slices.setdefault((meta["namespace"], owner), {})
        if event == "DELETED":
            slices.pop(meta["name"], None)
        else:
            slices[meta["name"]] = sl

    async def _sync_service(self, event: str, svc: dict[str, Any]) -> None:
        meta, spec = svc["metadata"], svc.get("spec") or {}
        key = (meta["namespace"], meta["name"])
        ip = spec.get("clusterIP")
        entry = self.services.get(key)
        if event == "DELETED" or not ip or ip == "None":
            if entry:
                await self._close(entry, list(entry.ports))
                self.services.pop(key, None)
                await self._listen_unbound()  # a new Service may have been given this one's cluster IP
            return
        if entry is None or entry.cluster_ip != ip:
            if entry:
                await self._close(entry, list(entry.ports))
            entry = self.services[key] = ServiceEntry(ip)
        wanted = {int(p["port"]): p for p in spec.get("ports") or [] if p.get("protocol", "TCP") == "TCP"}
        await self._close(entry, [p for p in entry.ports if p not in wanted])
        for number, port in wanted.items():
            current = entry.ports.get(number)
            target = port.get("targetPort", number)
            if current is None:
                current = entry.ports[number] = ServicePort(port.get("name") or "", number, target)
            current.name, current.target = port.get("name") or "", target
            if current.server is None:
                await self._listen(key, entry, current)

    async def _listen_unbound(self) -> None:
        for key, entry in list(self.services.items()):
            for port in list(entry.ports.values()):
                if port.server is None:
                    await self._listen(key, entry, port)

    async def _listen(self, key: ServiceKey, entry: ServiceEntry, port: ServicePort) -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._forward(key, port, reader, writer)

        try:
            port.server = await asyncio.start_server(handle, entry.cluster_ip, port.port, reuse_address=True)
            log.info("service %s/%s: %s:%d", *key, entry.cluster_ip, port.port)
        except OSError as exc:
            log.error("service %s/%s: cannot listen on %s:%d: %s", *key, entry.cluster_ip, port.port, exc)

    async def _close(self, entry: ServiceEntry, numbers: list[int]) -> None:
        for number in numbers:
            port = entry.ports.pop(number)
            if port.server is not None:
                port.server.close()

    def backends(self, key: ServiceKey, port: ServicePort) -> list[tuple[str, int]]:
        if key == ("default", "kubernetes"):
            return [(NODE_IP, APISERVER_PORT)]  # the apiserver reconciles no endpoints here
        return ready_endpoints(self.slices.get(key, {}), port.name, port.target)

    async def _forward(self, key: ServiceKey, port: ServicePort, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
        backends = self.backends(key, port)
        if not backends:
            writer.close()  # no ready endpoint: refuse, as kube-proxy's REJECT rule does
            return
        host, number = random.choice(backends)
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(host, number), 5)
        except (OSError, TimeoutError):
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        for w in (up_writer, writer):
            w.close()

    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        core = kubernetes.client.CoreV1Api(self.api)
        discovery = kubernetes.client.DiscoveryV1Api(self.api)
        run_informer(self.api, discovery.list_endpoint_slice_for_all_namespaces, self.on_slice, self.stop_event)
        run_informer(self.api, core.list_service_for_all_namespaces, self.on_service, self.stop_event)
        resolver = await dns.serve(self.lookup)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        resolver.close()
        self.stop_event.set()

    def lookup(self, key: str) -> str | None:
        """`namespace/name` -> the Service's cluster IP (for cluster DNS)."""
        namespace, _, name = key.partition("/")
        entry = self.services.get((namespace, name))
        return entry.cluster_ip if entry else None


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()
            else:
                writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--workdir", type=Path, help="unused; accepted for symmetry with the kubelet")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    api = kubernetes.config.new_client_from_config(config_file=args.kubeconfig)
    asyncio.run(ServiceProxy(api).run())


if __name__ == "__main__":
    main()
