"""The operator's watch-fed cache (kubecache.Reflector) against the real API server: it lists, then
follows creations, label changes and deletions, and resumes after the server ends a watch; and an
operator reading through it (`--watch-cache`) runs a canary under traffic to promotion keeping its
capacity, while its ticks read pods from memory instead of listing them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes
import pytest

from localcluster.testing import wait_until
from localcluster.traffic import read_metrics
from modelrollout.kubecache import Reflector
from tests.conftest import ClusterHandle
from tests.e2e.rollouts import OperatorProcess, Scenario, Traffic, make_rollout

pytestmark = pytest.mark.e2e
LABEL = "modelrollout.dev/rollout"
ANALYSIS = {"interval": "2s", "minSamples": 40, "failureLimit": 2, "inconclusiveLimit": 60, "minExposure": "4s",
            "metrics": [{"name": "error-rate", "type": "errorRate", "margin": 0.03}]}
STEPS = [{"setWeight": 50}, {"pause": {"duration": "4s"}}, {"setWeight": 100}]


def _service(name: str, labels: dict[str, str]) -> dict[str, object]:
    return {"metadata": {"name": name, "labels": labels},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}}


def test_the_cache_follows_labelled_services_and_resumes_after_a_watch_ends(
        cluster: ClusterHandle, namespace: str) -> None:
    core = kubernetes.client.CoreV1Api(cluster.api)
    core.create_namespaced_service(namespace, _service("before", {LABEL: "r"}))
    reflector = Reflector("services", core.list_namespaced_service, namespace, LABEL, watch_seconds=2)
    reflector.start()
    try:
        def names() -> set[str]:
            found = reflector.select(namespace, {})
            return set() if found is None else {o["metadata"]["name"] for o in found}

        wait_until(lambda: names() == {"before"}, 20, "the first list")
        core.create_namespaced_service(namespace, _service("unlabelled", {}))
        core.create_namespaced_service(namespace, _service("later", {LABEL: "r"}))
        wait_until(lambda: names() == {"before", "later"}, 20, "a created labelled Service, not the unlabelled")
        assert reflector.select(namespace, {LABEL: "other"}) == []
        core.patch_namespaced_service("before", namespace, {"metadata": {"labels": {LABEL: None}}})
        wait_until(lambda: names() == {"later"}, 20, "a Service whose label was removed leaves the cache")
        core.delete_namespaced_service("later", namespace)
        wait_until(lambda: names() == set(), 20, "a deleted Service leaves the cache")
        watches = reflector.watches
        wait_until(lambda: reflector.watches >= watches + 2, 30, "the server ending two watches (2 s each)")
        core.create_namespaced_service(namespace, _service("resumed", {LABEL: "r"}))
        wait_until(lambda: names() == {"resumed"}, 20, "a Service created after the watch was resumed")
        synced, found = reflector.get(namespace, "resumed")
        assert synced and found is not None and found["spec"]["selector"] == {"app": "resumed"}
    finally:
        reflector.stop()


def _pod_lists(port: int) -> float:
    """Pod list calls the operator made (its reflector's own list included)."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in read_metrics("127.0.0.1", port).splitlines()
               if line.startswith("modelrollout_api_request_duration_seconds_count{")
               and 'verb="list"' in line and 'resource="pods"' in line)


def _thread_waits_beyond_api_calls(port: int) -> float:
    """Worker-thread hand-offs that made no API call (a tick's no-op checks of its Deployments and Services)."""
    text = read_metrics("127.0.0.1", port).splitlines()
    waits = sum(float(line.rsplit(" ", 1)[1]) for line in text
                if line.startswith("modelrollout_api_queue_wait_seconds_count"))
    calls = sum(float(line.rsplit(" ", 1)[1]) for line in text
                if line.startswith("modelrollout_api_request_duration_seconds_count{"))
    return waits - calls


def test_an_operator_reading_through_the_cache_promotes_a_canary_keeping_capacity(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any],
        model_store: str, tmp_path: Path) -> None:
    operator.kill()  # the session's operator would act beside this one
    cached = OperatorProcess(cluster.kubeconfig, tmp_path, ["--watch-cache", "--namespace", namespace])
    try:
        cached.start()
        s = Scenario(cluster, namespace, "cached")
        lr = models["models"]["lr"]
        s.apply(make_rollout(s.name, "1", lr, model_store, replicas=2, analysis=ANALYSIS))
        s.wait_phase("Healthy", 90)
        lists_before = _pod_lists(cached.metrics_port)
        idle_handoffs_before = _thread_waits_beyond_api_calls(cached.metrics_port)
        ready_pods: list[int] = []

        def capacity_kept(st: dict[str, Any]) -> None:
            ready_pods.append(sum(d.status.ready_replicas or 0 for d in s.deployments()))

        with Traffic(s.service_url(), s.name, models["holdout"], rate=40) as traffic:
            s.apply(make_rollout(s.name, "2", lr, model_store, replicas=2, steps=STEPS, analysis=ANALYSIS))
            final = s.wait_phase("Healthy", 150, check=capacity_kept)
        assert final["stableVersion"] == "2", final
        assert ready_pods and min(ready_pods) >= 2, f"capacity fell below 2 Ready pods: {ready_pods}"
        assert traffic.stats.failures == 0, traffic.stats.explain()
        # Ticks ran every second or two through the canary; without the cache each listed the pods.
        assert _pod_lists(cached.metrics_port) - lists_before <= 2, cached.logs()[-3000:]
        # Nor did they send the check "is this Deployment / Service as meant?" through a worker thread: the cache
        # answered it on the event loop, and only real writes took a thread (the watch's own calls are in both).
        assert _thread_waits_beyond_api_calls(cached.metrics_port) - idle_handoffs_before <= 2
    finally:
        cached.kill()
        operator.start()
