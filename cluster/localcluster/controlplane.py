"""etcd, kube-apiserver and kube-controller-manager as local processes, as envtest runs them,
plus the controller-manager so Deployments, ReplicaSets, EndpointSlices, garbage collection,
namespaces and service accounts behave as on a real cluster.

The control plane binds the node address NODE_IP (a local route inside the run's network
namespace, see netns.py) so pods reach it the way in-cluster clients do.
"""

from __future__ import annotations

import socket
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from localcluster.binaries import binary
from localcluster.pki import Pki, create_pki
from localcluster.procs import ManagedProcess

NODE_IP = "10.244.0.1"
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"
APISERVER_PORT = 6443
ETCD_PORT = 2379
ETCD_PEER_PORT = 2380
# Everything but the controllers that need real nodes or a cloud; we are the only node and
# renew our own lease, so node lifecycle has nothing to do.
CONTROLLERS = "*,-node-lifecycle-controller,-cloud-node-lifecycle-controller,-node-ipam-controller"


class ControlPlaneError(RuntimeError):
    """A component failed to start; the message names it and the path of its log."""


@dataclass(frozen=True)
class ControlPlaneInfo:
    workdir: Path
    kubeconfig: Path
    server: str
    pki: Pki


def _check_port_free(host: str, port: int, component: str) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise ControlPlaneError(
                f"{component}: port {host}:{port} is taken ({exc.strerror}); "
                "stop whatever listens there (another local cluster in this namespace?)"
            ) from None


def write_kubeconfig(path: Path, server: str, pki: Pki) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": server, "certificate-authority": str(pki.ca_cert)}}],
        "users": [{"name": "admin", "user": {
            "client-certificate": str(pki.admin_cert), "client-key": str(pki.admin_key),
        }}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": "admin"}}],
        "current-context": "local",
    }
    path.write_text(yaml.safe_dump(config))


class ControlPlane:
    """Starts and stops the three control-plane processes under `workdir`."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.processes: list[ManagedProcess] = []
        self.info: ControlPlaneInfo | None = None

    def start(self, timeout: float = 60.0) -> ControlPlaneInfo:
        self.workdir.mkdir(parents=True, exist_ok=True)
        pki = create_pki(
            self.workdir / "pki",
            server_ips=[NODE_IP, "127.0.0.1", "10.96.0.1"],
            server_names=["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                          "kubernetes.default.svc.cluster.local"],
        )
        server = f"https://{NODE_IP}:{APISERVER_PORT}"
        kubeconfig = self.workdir / "kubeconfig"
        write_kubeconfig(kubeconfig, server, pki)
        self.info = ControlPlaneInfo(self.workdir, kubeconfig, server, pki)
        try:
            self._start_etcd(timeout)
            self._start_apiserver(pki, timeout)
            self._start_controller_manager(pki, kubeconfig)
        except BaseException:
            self.stop()
            raise
        return self.info

    def _spawn(self, name: str, argv: list[str]) -> ManagedProcess:
        proc = ManagedProcess(name, argv, self.workdir / "logs" / f"{name}.log")
        self.processes.append(proc)
        return proc

    def _await(self, proc: ManagedProcess, url: str, timeout: float, ctx: ssl.SSLContext | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not proc.is_running():
                raise ControlPlaneError(
                    f"{proc.name} exited with code {proc.popen.returncode}; log: {proc.log_path}\n{proc.tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2, context=ctx) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise ControlPlaneError(f"{proc.name} not healthy after {timeout:.0f}s at {url}; log: {proc.log_path}")

    def _start_etcd(self, timeout: float) -> None:
        _check_port_free("127.0.0.1", ETCD_PORT, "etcd")
        url = f"http://127.0.0.1:{ETCD_PORT}"
        proc = self._spawn("etcd", [
            str(binary("etcd")),
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={url}", f"--advertise-client-urls={url}",
            f"--listen-peer-urls=http://127.0.0.1:{ETCD_PEER_PORT}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{ETCD_PEER_PORT}",
            f"--initial-cluster=default=http://127.0.0.1:{ETCD_PEER_PORT}",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ])
        self._await(proc, f"{url}/health", timeout)

    def _start_apiserver(self, pki: Pki, timeout: float) -> None:
        _check_port_free("0.0.0.0", APISERVER_PORT, "kube-apiserver")
        proc = self._spawn("kube-apiserver", [
            str(binary("kube-apiserver")),
            f"--etcd-servers=http://127.0.0.1:{ETCD_PORT}",
            f"--tls-cert-file={pki.serving_cert}", f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            f"--secure-port={APISERVER_PORT}", "--bind-address=0.0.0.0",
            f"--advertise-address={NODE_IP}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=RBAC",
            "--allow-privileged=true",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki.sa_public_key}",
            f"--service-account-signing-key-file={pki.sa_private_key}",
            "--endpoint-reconciler-type=none",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            "--v=1",
        ])
        ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
        self._await(proc, f"https://{NODE_IP}:{APISERVER_PORT}/readyz", timeout, ctx)

    def _start_controller_manager(self, pki: Pki, kubeconfig: Path) -> None:
        self._spawn("kube-controller-manager", [
            str(binary("kube-controller-manager")),
            f"--kubeconfig={kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1", "--secure-port=0",
            f"--service-account-private-key-file={pki.sa_private_key}",
            f"--root-ca-file={pki.ca_cert}",
            f"--controllers={CONTROLLERS}",
            f"--cluster-cidr={POD_CIDR}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--concurrent-deployment-syncs=5", "--concurrent-replicaset-syncs=5",
            "--v=1",
        ])

    def restart_apiserver(self, down_seconds: float = 0.0, timeout: float = 60.0) -> None:
        """Stop kube-apiserver (SIGTERM), keep it down for `down_seconds`, start it again with the same
        flags and wait until it is ready: a control-plane fault for tests; etcd keeps the state."""
        if self.info is None:
            raise ControlPlaneError("the control plane is not started")
        [proc] = [p for p in self.processes if p.name == "kube-apiserver"]
        proc.stop()
        self.processes.remove(proc)
        time.sleep(down_seconds)
        self._start_apiserver(self.info.pki, timeout)

    def check_alive(self) -> None:
        """Raise ControlPlaneError naming any component that died, with its log path."""
        for proc in self.processes:
            if not proc.is_running():
                raise ControlPlaneError(
                    f"{proc.name} died (code {proc.popen.returncode}); log: {proc.log_path}\n{proc.tail()}"
                )

    def stop(self) -> None:
        # Reverse order: controllers first, etcd last, so nothing logs a storm of reconnects.
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()
