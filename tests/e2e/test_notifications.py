"""spec.notifications on the local cluster: a receiver pod gets the rollout's Events as JSON and as
Slack-style text (its URL from a Secret), through retries (it refuses the first posts), while a
webhook that cannot be reached holds nothing up: the bad canary is rolled back as fast as without it."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import kubernetes
import pytest

from localcluster.testing import apply_manifest, wait_until
from tests.conftest import ClusterHandle
from tests.e2e import builders
from tests.e2e.rollouts import OperatorProcess, Scenario, Traffic, make_rollout

pytestmark = pytest.mark.e2e
ANALYSIS = {"interval": "2s", "minSamples": 60, "failureLimit": 2, "inconclusiveLimit": 30, "minExposure": "4s",
            "metrics": [{"name": "error-rate", "type": "errorRate", "margin": 0.01}]}
STEPS = [{"setWeight": 25}, {"pause": {"duration": "60s"}}, {"setWeight": 100}]


def _receiver(cluster: ClusterHandle, namespace: str) -> str:
    container = {**builders.echo_container(env={"FAIL_FIRST": "2"}), "args": ["-m", "localcluster.receiver"]}
    container["readinessProbe"] = {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1}
    apply_manifest(cluster.api, builders.deployment("receiver", 1, {"app": "receiver"}, container), namespace)
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "receiver"},
               "spec": {"selector": {"app": "receiver"}, "ports": [{"port": 80, "targetPort": 8080}]}}
    apply_manifest(cluster.api, service, namespace)
    apps = kubernetes.client.AppsV1Api(cluster.api)
    wait_until(lambda: (apps.read_namespaced_deployment("receiver", namespace).status.ready_replicas or 0) == 1,
               60, "the receiver pod Ready")
    svc = kubernetes.client.CoreV1Api(cluster.api).read_namespaced_service("receiver", namespace)
    return f"http://{svc.spec.cluster_ip}"


def _received(address: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{address}/", timeout=5) as response:
        return dict(json.load(response))


def test_events_reach_the_webhooks_through_retries_and_a_dead_one_holds_nothing_up(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any],
        model_store: str) -> None:
    address = _receiver(cluster, namespace)
    # The operator under test is a process, not a pod, so it has no cluster DNS: the Service's IP.
    in_cluster = address
    kubernetes.client.CoreV1Api(cluster.api).create_namespaced_secret(namespace, {
        "metadata": {"name": "chat-webhook"}, "stringData": {"url": f"{in_cluster}/chat"}})
    hooks = [{"name": "audit", "url": f"{in_cluster}/audit"},
             {"name": "chat", "urlFrom": {"secretKeyRef": {"name": "chat-webhook", "key": "url"}}, "format": "slack",
              "phases": ["RolledBack"], "reasons": ["Promoted"]},
             {"name": "dead", "url": "http://127.0.0.1:9/never", "timeout": "1s"}]
    s = Scenario(cluster, namespace, "notified")

    def rollout(version: str, **kwargs: Any) -> dict[str, Any]:
        body = make_rollout(s.name, version, models["models"]["lr"], model_store, replicas=2, analysis=ANALYSIS,
                            **kwargs)
        body["spec"]["notifications"] = hooks
        return body

    s.apply(rollout("1"))
    s.wait_phase("Healthy", 90)
    with Traffic(s.service_url(), s.name, models["holdout"]):
        s.apply(rollout("2", steps=STEPS, faults={"MODELSERVER_CHAOS_ERROR_RATE": "0.3"}))
        final = s.wait_phase("RolledBack", 120)
    assert "canary error rate" in final["message"]

    def delivered() -> dict[str, list[dict[str, Any]]]:
        got: dict[str, list[dict[str, Any]]] = {}
        for item in _received(address)["received"]:
            got.setdefault(item["path"], []).append(item["body"])
        return got

    got = wait_until(lambda: (d := delivered()).get("/chat") and any(
        b["phase"] == "RolledBack" for b in d.get("/audit", [])) and d, 30, "the rollback at both webhooks",
                     describe=lambda: f"{_received(address)}\n" + "\n".join(
                         line for line in operator.logs().splitlines() if "webhook" in line or "notif" in line))
    rolled_back = [b for b in got["/audit"] if b["phase"] == "RolledBack"]
    assert len(rolled_back) == 1, got["/audit"]
    event = rolled_back[0]
    assert event["rollout"] == {"namespace": namespace, "name": s.name} and event["type"] == "Warning"
    assert "canary error rate" in event["message"] and event["stableVersion"] == "1"
    assert any(r["name"] == "error-rate" and r["verdict"] == "Fail" and r.get("interval") for r in event["analysis"])
    reasons = [b["reason"] for b in got["/audit"]]  # every Event, in order, the rollback last
    assert reasons[:3] == ["Deploying", "Deployed", "NewVersion"] and got["/audit"][-1] is event, reasons
    [chat] = got["/chat"]  # only the reasons it asked for: no Promoted happened, one RolledBack
    assert chat["text"].startswith(f":rotating_light: *{namespace}/{s.name}* AnalysisFailed: "), chat
    assert "canary error rate" in chat["text"]
    assert _received(address)["attempts"] >= len(got["/audit"]) + len(got["/chat"]) + 2  # the 2 refusals retried
