"""Drift of owned objects: a person (or another tool) scales an owned Deployment or rewrites the
Service selector mid-rollout; the operator restores its intent within a poll, with no failed request."""

from __future__ import annotations

from typing import Any

import kubernetes
import pytest

from localcluster.testing import wait_until
from tests.conftest import ClusterHandle
from tests.e2e.rollouts import OperatorProcess, Scenario, Traffic, make_rollout

pytestmark = pytest.mark.e2e
ANALYSIS = {"interval": "2s", "minSamples": 40, "failureLimit": 2, "inconclusiveLimit": 60, "minExposure": "4s",
            "metrics": [{"name": "error-rate", "type": "errorRate", "margin": 0.03}]}
STEPS = [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]
VERSION_LABEL = "modelrollout.dev/version"


def _deployment(s: Scenario, version: str) -> Any:
    [found] = [d for d in s.deployments() if d.metadata.labels[VERSION_LABEL] == version]
    return found


def test_scaled_deployment_and_rewritten_selector_are_restored_without_a_failed_request(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any],
        model_store: str) -> None:
    s = Scenario(cluster, namespace, "drift")
    lr = models["models"]["lr"]
    s.apply(make_rollout(s.name, "1", lr, model_store, replicas=2, analysis=ANALYSIS))
    s.wait_phase("Healthy", 90)
    apps, core = kubernetes.client.AppsV1Api(cluster.api), kubernetes.client.CoreV1Api(cluster.api)
    with Traffic(s.service_url(), s.name, models["holdout"], rate=40) as traffic:
        s.apply(make_rollout(s.name, "2", lr, model_store, replicas=2, steps=STEPS, analysis=ANALYSIS))
        wait_until(lambda: s.status().get("reason") == "StepPause", 120, "the manual pause step", describe=s.describe)
        intended = {v: _deployment(s, v).spec.replicas for v in ("1", "2")}
        selector = dict(core.read_namespaced_service(s.name, namespace).spec.selector)

        # A person scales the canary up and the stable down, and points the Service at the canary only.
        apps.patch_namespaced_deployment(_deployment(s, "2").metadata.name, namespace,
                                         {"spec": {"replicas": intended["2"] + 1}})
        apps.patch_namespaced_deployment(_deployment(s, "1").metadata.name, namespace,
                                         {"spec": {"replicas": max(1, intended["1"] - 1)}})
        core.patch_namespaced_service(s.name, namespace, [{"op": "replace", "path": "/spec/selector",
                                                           "value": {**selector, VERSION_LABEL: "2"}}])

        def restored() -> bool:
            now = {v: _deployment(s, v).spec.replicas for v in ("1", "2")}
            return now == intended and dict(core.read_namespaced_service(s.name, namespace).spec.selector) == selector

        wait_until(restored, 15, f"replicas {intended} and selector {selector} restored", describe=s.describe)
        s.command("promote")
        final = s.wait_phase("Healthy", 120)
    assert final["stableVersion"] == "2"
    assert traffic.stats.failures == 0, traffic.stats.explain()
