"""The control plane behaves like a real cluster: version, Deployments, namespaces, cleanup."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import kubernetes
import pytest

from localcluster.testing import apply_manifest, wait_until
from tests.conftest import ROOT, ClusterHandle
from tests.e2e.builders import deployment

pytestmark = pytest.mark.e2e


def test_apiserver_reports_the_pinned_version(cluster: ClusterHandle) -> None:
    info = kubernetes.client.VersionApi(cluster.api).get_code()
    assert info.git_version == "v1.36.3"
    assert (info.major, info.minor) == ("1", "36")


def test_deployment_creates_replicaset_with_three_running_pods(cluster: ClusterHandle, namespace: str) -> None:
    apply_manifest(cluster.api, deployment("web", 3, {"app": "web"}), namespace)
    apps = kubernetes.client.AppsV1Api(cluster.api)
    core = kubernetes.client.CoreV1Api(cluster.api)
    rs = wait_until(lambda: apps.list_namespaced_replica_set(namespace).items, 30, "a ReplicaSet")
    assert len(rs) == 1 and rs[0].spec.replicas == 3
    assert rs[0].metadata.owner_references[0].name == "web"

    def running() -> list[kubernetes.client.V1Pod]:
        pods = core.list_namespaced_pod(namespace).items
        return pods if len(pods) == 3 and all(p.status.phase == "Running" for p in pods) else []

    pods = wait_until(running, 60, "3 Running pods", describe=lambda: cluster.kubectl("get", "pods", "-n", namespace))
    assert {p.metadata.owner_references[0].name for p in pods} == {rs[0].metadata.name}
    assert all(p.status.pod_ip.startswith("10.244.") for p in pods)


def test_deleting_a_namespace_removes_what_was_in_it(cluster: ClusterHandle) -> None:
    core = kubernetes.client.CoreV1Api(cluster.api)
    core.create_namespace({"metadata": {"name": "doomed"}})
    wait_until(lambda: core.read_namespaced_service_account("default", "doomed"), 30, "default SA")
    apply_manifest(cluster.api, deployment("web", 2, {"app": "web"}), "doomed")
    core.create_namespaced_config_map("doomed", {"metadata": {"name": "cfg"}, "data": {"a": "1"}})
    wait_until(lambda: len(core.list_namespaced_pod("doomed").items) == 2, 30, "2 pods")
    core.delete_namespace("doomed")

    def gone() -> bool:
        try:
            core.read_namespace("doomed")
        except kubernetes.client.ApiException as exc:
            return exc.status == 404
        return False

    wait_until(gone, 90, "namespace doomed to be deleted",
               describe=lambda: cluster.kubectl("get", "all", "-n", "doomed", check=False))
    assert not [p for p in core.list_pod_for_all_namespaces().items if p.metadata.namespace == "doomed"]


def _processes_mentioning(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmdline and int(entry.name) != os.getpid():
                found.append(int(entry.name))
    return found


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_no_process_survives_a_stopped_or_killed_cluster(tmp_path: Path, how: str) -> None:
    """A whole second cluster in a nested namespace: stop it (SIGTERM) or kill its supervisor
    outright (an interrupted run), and no process of it may remain."""
    state = tmp_path / "cluster-state"
    proc = subprocess.Popen(
        [str(ROOT / "hack" / "in-netns"), sys.executable, "-m", "localcluster", "run", "--workdir", str(state)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    assert proc.stdout is not None
    started = time.monotonic()
    for line in proc.stdout:
        if "cluster ready" in line:
            break
        assert time.monotonic() - started < 90, "nested cluster did not start"
    assert len(_processes_mentioning(str(state))) >= 4  # etcd, apiserver, controller-manager, kubelet, proxy
    os.killpg(proc.pid, signal.SIGTERM if how == "sigterm" else signal.SIGKILL)
    proc.wait(30)
    wait_until(lambda: not _processes_mentioning(str(state)), 20, f"no process of {state} left",
               describe=lambda: str(_processes_mentioning(str(state))))


def _localcluster(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "localcluster", *args], capture_output=True, text=True, timeout=180)


def test_cluster_up_then_down_leaves_nothing_behind(tmp_path: Path) -> None:
    state = tmp_path / "state"
    up = _localcluster("up", "--state-dir", str(state))
    assert up.returncode == 0, up.stdout + up.stderr
    pid = int((state / "pid").read_text())
    assert "already running" in _localcluster("up", "--state-dir", str(state)).stdout  # idempotent
    nodes = _localcluster("exec", "--state-dir", str(state), "--", "kubectl", "get", "nodes", "-o", "name")
    assert nodes.stdout.strip() == "node/localcluster-node", nodes.stderr
    assert _processes_mentioning(str(state))
    assert _localcluster("down", "--state-dir", str(state)).returncode == 0
    assert "not running" in _localcluster("down", "--state-dir", str(state)).stdout  # idempotent
    wait_until(lambda: not _processes_mentioning(str(state)), 20, "no cluster process left")
    # The namespace lives only as long as a process holds it; its holder is gone (here, where the
    # test runs as PID 1 of its own namespace and does not reap orphans, at most a zombie remains).
    assert _is_gone(pid)


def _is_gone(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "State:\tZ" in status


def test_a_taken_port_is_reported_with_the_component_and_log(tmp_path: Path) -> None:
    script = (
        "import socket, pathlib\n"
        "from localcluster.controlplane import ControlPlane, ControlPlaneError\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 2379)); s.listen()\n"
        f"try:\n    ControlPlane(pathlib.Path('{tmp_path}')).start()\n"
        "except ControlPlaneError as e:\n    print('ERROR', e)\n"
    )
    out = subprocess.run([str(ROOT / "hack" / "in-netns"), sys.executable, "-c", script],
                         capture_output=True, text=True, timeout=60)
    assert "ERROR etcd: port 127.0.0.1:2379 is taken" in out.stdout, out.stdout + out.stderr
