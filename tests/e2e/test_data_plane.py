"""Pods run as real processes with real IPs; Services carry real traffic (issue: data plane)."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import kubernetes
import pytest

from localcluster.testing import apply_manifest, wait_until
from localcluster.traffic import TrafficReport, kill_pod_process, pod_log, send_requests, steady_traffic, until
from tests.conftest import ClusterHandle
from tests.e2e.builders import deployment, echo_container, service

pytestmark = pytest.mark.e2e


def _pods(cluster: ClusterHandle, ns: str, selector: str) -> list[dict[str, Any]]:
    core = kubernetes.client.CoreV1Api(cluster.api)
    items = core.list_namespaced_pod(ns, label_selector=selector).items
    return [cluster.api.sanitize_for_serialization(p) for p in items]


def _ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions") or [])


def _wait_ready_pods(cluster: ClusterHandle, ns: str, selector: str, count: int) -> list[dict[str, Any]]:
    def probe() -> list[dict[str, Any]]:
        pods = [p for p in _pods(cluster, ns, selector) if not p["metadata"].get("deletionTimestamp")]
        return pods if len(pods) == count and all(_ready(p) for p in pods) else []

    return wait_until(probe, 60, f"{count} ready pods ({selector})",
                      describe=lambda: cluster.kubectl("get", "pods", "-o", "wide", "-n", ns))


def _ready_endpoints(cluster: ClusterHandle, ns: str, svc: str) -> list[str]:
    disc = kubernetes.client.DiscoveryV1Api(cluster.api)
    slices = disc.list_namespaced_endpoint_slice(ns, label_selector=f"kubernetes.io/service-name={svc}").items
    return [a for s in slices for e in s.endpoints or [] if e.conditions.ready for a in e.addresses]


def _service_url(cluster: ClusterHandle, ns: str, name: str) -> str:
    svc = kubernetes.client.CoreV1Api(cluster.api).read_namespaced_service(name, ns)
    return f"http://{svc.spec.cluster_ip}:{svc.spec.ports[0].port}/"


def _scale(cluster: ClusterHandle, ns: str, name: str, replicas: int) -> None:
    kubernetes.client.AppsV1Api(cluster.api).patch_namespaced_deployment_scale(
        name, ns, {"spec": {"replicas": replicas}})


@pytest.fixture
def web(cluster: ClusterHandle, namespace: str) -> str:
    """Three echo pods behind Service `web`; returns the Service URL once all endpoints are ready."""
    apply_manifest(cluster.api, deployment("web", 3, {"app": "web"}), namespace)
    apply_manifest(cluster.api, service("web", {"app": "web"}), namespace)
    _wait_ready_pods(cluster, namespace, "app=web", 3)
    wait_until(lambda: len(_ready_endpoints(cluster, namespace, "web")) == 3, 30, "3 ready endpoints")
    return _service_url(cluster, namespace, "web")


def test_three_replicas_share_300_requests(cluster: ClusterHandle, namespace: str, web: str) -> None:
    addresses = _ready_endpoints(cluster, namespace, "web")
    assert all(a.startswith("10.244.") for a in addresses) and len(set(addresses)) == 3
    report = send_requests(web, 300)
    assert report.statuses == {200: 300}, report
    assert len(report.by_pod) == 3
    assert min(report.by_pod.values()) >= 0.15 * 300, report.by_pod


def test_scale_down_stops_processes_gracefully_and_scale_up_restores(
        cluster: ClusterHandle, namespace: str, web: str) -> None:
    before = {p["metadata"]["name"] for p in _pods(cluster, namespace, "app=web")}
    _scale(cluster, namespace, "web", 1)
    wait_until(lambda: len(_ready_endpoints(cluster, namespace, "web")) == 1, 30, "1 endpoint")
    wait_until(lambda: len(_pods(cluster, namespace, "app=web")) == 1, 30, "2 pods removed")
    survivor = _pods(cluster, namespace, "app=web")[0]["metadata"]["name"]
    kubelet_dir = cluster.workdir / "kubelet"
    for gone in before - {survivor}:
        log = pod_log(kubelet_dir, namespace, gone, "web")
        assert "SIGTERM received" in log and "stopped" in log, log
    assert send_requests(web, 20).by_pod == {survivor: 20}
    _scale(cluster, namespace, "web", 3)
    wait_until(lambda: len(_ready_endpoints(cluster, namespace, "web")) == 3, 60, "3 endpoints again")
    assert len(send_requests(web, 60).by_pod) == 3


def test_unready_pod_gets_no_traffic(cluster: ClusterHandle, namespace: str) -> None:
    # READY_FILE never exists, so /ready answers 503 and the readiness probe fails.
    failing = echo_container(env={"READY_FILE": "/nonexistent"}, readiness_path="/ready")
    apply_manifest(cluster.api, deployment("good", 2, {"app": "mix", "v": "good"}), namespace)
    apply_manifest(cluster.api, deployment("bad", 1, {"app": "mix", "v": "bad"}, failing), namespace)
    apply_manifest(cluster.api, service("mix", {"app": "mix"}), namespace)
    _wait_ready_pods(cluster, namespace, "v=good", 2)
    bad = wait_until(lambda: [p for p in _pods(cluster, namespace, "v=bad") if p["status"].get("podIP")], 30, "bad")
    wait_until(lambda: len(_ready_endpoints(cluster, namespace, "mix")) == 2, 30, "2 ready endpoints")
    report = send_requests(_service_url(cluster, namespace, "mix"), 100)
    assert report.statuses == {200: 100}
    assert bad[0]["metadata"]["name"] not in report.by_pod


def test_killed_process_restarts_and_becomes_ready(cluster: ClusterHandle, namespace: str, web: str) -> None:
    victim = _pods(cluster, namespace, "app=web")[0]
    name = victim["metadata"]["name"]
    old_pid = kill_pod_process(victim, "web", signal.SIGKILL)

    def restarted() -> dict[str, Any] | None:
        pod = next(p for p in _pods(cluster, namespace, "app=web") if p["metadata"]["name"] == name)
        status = pod["status"]["containerStatuses"][0]
        fresh = status["containerID"] != f"process://{old_pid}"
        return pod if status["restartCount"] >= 1 and _ready(pod) and fresh else None

    pod = wait_until(restarted, 30, "restart", describe=lambda: cluster.kubectl("get", "pods", "-n", namespace))
    assert pod["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] == 137


def test_traffic_follows_ready_pod_ratio_across_two_deployments(cluster: ClusterHandle, namespace: str) -> None:
    apply_manifest(cluster.api, deployment("stable", 3, {"app": "split", "v": "stable"}), namespace)
    apply_manifest(cluster.api, deployment("canary", 1, {"app": "split", "v": "canary"}), namespace)
    apply_manifest(cluster.api, service("split", {"app": "split"}), namespace)
    _wait_ready_pods(cluster, namespace, "app=split", 4)
    wait_until(lambda: len(_ready_endpoints(cluster, namespace, "split")) == 4, 30, "4 endpoints")
    report = send_requests(_service_url(cluster, namespace, "split"), 2000, concurrency=16)
    assert report.statuses == {200: 2000}
    share = report.share(lambda pod: pod.startswith("canary-"))
    assert 0.20 <= share <= 0.30, (share, report.by_pod)


def test_rolling_update_with_max_unavailable_zero_loses_no_request(
        cluster: ClusterHandle, namespace: str) -> None:
    apply_manifest(cluster.api, deployment("roll", 3, {"app": "roll"}, max_unavailable=0, max_surge=1), namespace)
    apply_manifest(cluster.api, service("roll", {"app": "roll"}), namespace)
    old = {p["metadata"]["name"] for p in _wait_ready_pods(cluster, namespace, "app=roll", 3)}
    wait_until(lambda: len(_ready_endpoints(cluster, namespace, "roll")) == 3, 30, "3 endpoints")
    url = _service_url(cluster, namespace, "roll")
    apps = kubernetes.client.AppsV1Api(cluster.api)

    def rolled() -> bool:
        pods = _pods(cluster, namespace, "app=roll")
        names = {p["metadata"]["name"] for p in pods}
        return len(pods) == 3 and not names & old and all(_ready(p) for p in pods)

    async def scenario() -> Any:
        stop, live = asyncio.Event(), TrafficReport()
        traffic = asyncio.ensure_future(steady_traffic(url, rate=80, stop=stop, max_seconds=120, report=live))
        await until(lambda: live.total >= 40, 30, "traffic on the old pods")
        patch = {"spec": {"template": {"metadata": {"annotations": {"rev": "2"}}}}}
        await asyncio.to_thread(apps.patch_namespaced_deployment, "roll", namespace, patch)
        await asyncio.to_thread(wait_until, rolled, 90, "rolled out")
        new_pods = {p["metadata"]["name"] for p in _pods(cluster, namespace, "app=roll")}
        await until(lambda: sum(live.by_pod[p] for p in new_pods) >= 100, 30, "traffic on the new pods")
        stop.set()
        return await traffic

    report = asyncio.run(scenario())
    assert report.total > 200
    assert report.failures == 0, (report.statuses, report.errors)
    assert set(report.by_pod) - old, "new pods served traffic"


RBAC_PROBE = """
import kubernetes
kubernetes.config.load_incluster_config()
try:
    pods = kubernetes.client.CoreV1Api().list_namespaced_pod(open(
        "/var/run/secrets/kubernetes.io/serviceaccount/namespace").read())
    print("LISTED", len(pods.items))
except kubernetes.client.ApiException as exc:
    print("STATUS", exc.status)
"""


@pytest.mark.parametrize(("allowed", "expected"), [(True, "LISTED"), (False, "STATUS 403")])
def test_in_cluster_config_is_subject_to_real_rbac(
        cluster: ClusterHandle, namespace: str, allowed: bool, expected: str) -> None:
    core = kubernetes.client.CoreV1Api(cluster.api)
    rbac = kubernetes.client.RbacAuthorizationV1Api(cluster.api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "probe"}})
    if allowed:
        rbac.create_namespaced_role(namespace, {"metadata": {"name": "pod-reader"}, "rules": [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]})
        rbac.create_namespaced_role_binding(namespace, {
            "metadata": {"name": "probe"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "probe", "namespace": namespace}]})
    core.create_namespaced_pod(namespace, {
        "metadata": {"name": "probe"},
        "spec": {"serviceAccountName": "probe", "restartPolicy": "Never", "containers": [
            {"name": "probe", "image": "localcluster/python:test", "args": ["-c", RBAC_PROBE]}]}})
    kubelet_dir = cluster.workdir / "kubelet"
    wait_until(lambda: core.read_namespaced_pod("probe", namespace).status.phase == "Succeeded", 60,
               "probe pod to finish", describe=lambda: pod_log(kubelet_dir, namespace, "probe", "probe"))
    assert expected in pod_log(kubelet_dir, namespace, "probe", "probe")


def test_unknown_image_fails_with_a_clear_reason(cluster: ClusterHandle, namespace: str) -> None:
    core = kubernetes.client.CoreV1Api(cluster.api)
    core.create_namespaced_pod(namespace, {"metadata": {"name": "nope"}, "spec": {"containers": [
        {"name": "c", "image": "example.com/not/here:1"}]}})

    def waiting() -> dict[str, Any] | None:
        statuses = core.read_namespaced_pod("nope", namespace).status.container_statuses or []
        return statuses[0].state.waiting if statuses and statuses[0].state.waiting else None

    state = wait_until(lambda: (w := waiting()) and w.reason == "ErrImagePull" and w, 30, "ErrImagePull")
    assert "not in the local cluster's image registry" in state.message


DNS_PROBE = """
import socket, sys, urllib.request
print("SHORT", socket.gethostbyname("web"))
print("FULL", socket.gethostbyname(f"web.{sys.argv[1]}.svc.cluster.local"))
print("BODY", urllib.request.urlopen("http://web/", timeout=5).read().decode().strip())
try:
    socket.gethostbyname("nothing-here")
except socket.gaierror:
    print("NXDOMAIN ok")
"""


def test_pods_reach_services_by_name_through_cluster_dns(cluster: ClusterHandle, namespace: str, web: str) -> None:
    core = kubernetes.client.CoreV1Api(cluster.api)
    ip = core.read_namespaced_service("web", namespace).spec.cluster_ip
    container = {"name": "c", "image": "localcluster/python:test", "args": ["-c", DNS_PROBE, namespace]}
    core.create_namespaced_pod(namespace, {"metadata": {"name": "dns"},
                                           "spec": {"restartPolicy": "Never", "containers": [container]}})
    kubelet_dir = cluster.workdir / "kubelet"
    wait_until(lambda: core.read_namespaced_pod("dns", namespace).status.phase == "Succeeded", 60, "dns pod",
               describe=lambda: pod_log(kubelet_dir, namespace, "dns", "c"))
    out = pod_log(kubelet_dir, namespace, "dns", "c")
    assert f"SHORT {ip}" in out and f"FULL {ip}" in out and "BODY hello from web-" in out, out
    assert "NXDOMAIN ok" in out, out
