"""The whole local cluster: control plane, node emulator (process kubelet) and service proxy.

    with LocalCluster(Path("/tmp/run")) as c:
        api = c.api_client()          # kubernetes.client.ApiClient as cluster-admin
        c.kubectl("get", "pods", "-A")

It must run inside the run's network namespace (see netns.py); `make test`, `make demo` and
`make cluster-up` arrange that.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import TracebackType

import kubernetes

from localcluster import netns
from localcluster.binaries import binary
from localcluster.controlplane import ControlPlane, ControlPlaneInfo
from localcluster.dns import DNS_IP
from localcluster.kubelet import NODE_NAME
from localcluster.procs import ManagedProcess
from localcluster.testing import wait_until


class NotInNamespaceError(RuntimeError):
    pass


class LocalCluster:
    def __init__(self, workdir: Path, with_node: bool = True) -> None:
        self.workdir = workdir
        self.with_node = with_node
        self.control_plane = ControlPlane(workdir / "control-plane")
        self.components: list[ManagedProcess] = []
        self._info: ControlPlaneInfo | None = None

    @property
    def info(self) -> ControlPlaneInfo:
        if self._info is None:
            raise RuntimeError("the local cluster is not started")
        return self._info

    @property
    def kubeconfig(self) -> Path:
        return self.info.kubeconfig

    def start(self) -> LocalCluster:
        if not netns.is_inside():
            raise NotInNamespaceError(
                "the local cluster runs only inside its own network namespace: run through "
                "`make test` / `make demo`, or prefix the command with hack/in-netns"
            )
        self._info = self.control_plane.start()
        self._reserve_dns_ip()
        if self.with_node:
            self._start_node_components()
            self._await_node()
        return self

    def _reserve_dns_ip(self) -> None:
        """kube-system/kube-dns holds the DNS address, as on real clusters, so no Service gets it."""
        core = kubernetes.client.CoreV1Api(self.api_client())
        core.create_namespaced_service("kube-system", {
            "metadata": {"name": "kube-dns", "labels": {"k8s-app": "kube-dns"}},
            "spec": {"clusterIP": DNS_IP, "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}})

    def _await_node(self, timeout: float = 60) -> None:
        """Ready means pods can run: the node is registered and `default` can own pods."""
        core = kubernetes.client.CoreV1Api(self.api_client())

        def node_and_sa() -> bool:
            self.check_alive()
            try:
                core.read_node(NODE_NAME)
                core.read_namespaced_service_account("default", "default")
            except kubernetes.client.ApiException:
                return False
            return True

        wait_until(node_and_sa, timeout, f"node {NODE_NAME} to register")

    def _start_node_components(self) -> None:
        for module in ("localcluster.kubelet", "localcluster.proxy"):
            name = module.rsplit(".", 1)[1]
            self.components.append(ManagedProcess(
                name,
                [sys.executable, "-m", module, "--kubeconfig", str(self.kubeconfig),
                 "--workdir", str(self.workdir / name)],
                self.workdir / "logs" / f"{name}.log",
            ))

    def check_alive(self) -> None:
        self.control_plane.check_alive()
        for proc in self.components:
            if not proc.is_running():
                raise RuntimeError(f"{proc.name} died; log: {proc.log_path}\n{proc.tail()}")

    def api_client(self) -> kubernetes.client.ApiClient:
        return kubernetes.config.new_client_from_config(config_file=str(self.kubeconfig))

    def kubectl(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(binary("kubectl")), "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True, text=True, check=check, input=input,
        )

    def wait_crds_established(self, timeout: float = 120) -> None:
        """Every CRD Established. Retried: on a loaded machine `kubectl wait` can fail at once, before the CRDs
        are listed at all, instead of waiting out its own timeout."""
        from localcluster.testing import wait_until

        wait_until(lambda: self.kubectl("wait", "--for=condition=Established", "--timeout=20s", "crd", "--all",
                                        check=False).returncode == 0, timeout, "the CRDs to be established")

    def stop(self) -> None:
        for proc in reversed(self.components):
            # The kubelet gets time to stop its pods' processes itself.
            proc.stop(grace=15)
        self.components.clear()
        self.control_plane.stop()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
