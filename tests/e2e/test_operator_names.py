"""Versions never share a Deployment, and an object the operator would write but does not own is
left alone with the reason in status and an Event (issue 18, items 2 and 3)."""

from __future__ import annotations

from typing import Any

import kubernetes
import pytest

from localcluster.testing import wait_until
from modelrollout.workloads import deployment_name
from tests.conftest import ClusterHandle
from tests.e2e.builders import deployment, echo_container
from tests.e2e.rollouts import OperatorProcess, Scenario, Traffic, make_rollout

pytestmark = pytest.mark.e2e
STEPS = [{"setWeight": 50}, {"pause": {"duration": "2s"}}, {"setWeight": 100}]


def test_versions_differing_only_in_case_under_a_63_character_name_are_rolled_out_on_separate_deployments(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any],
        model_store: str) -> None:
    # Before: every version of a 61+ character rollout mapped to one Deployment, and the stable
    # version was shrunk from 2 pods to 1 for the whole deadline while the canary never started.
    s = Scenario(cluster, namespace, "r" * 63)
    s.apply(make_rollout(s.name, "rc1", models["models"]["lr"], model_store, replicas=2, steps=STEPS))
    s.wait_phase("Healthy", 90)
    ready_pods: list[int] = []

    def capacity_kept(st: dict[str, Any]) -> None:
        # Serving capacity is the Ready pods of both versions: never below spec.replicas.
        ready_pods.append(sum(d.status.ready_replicas or 0 for d in s.deployments()))

    with Traffic(s.service_url(), s.name, models["holdout"], rate=40) as traffic:
        s.apply(make_rollout(s.name, "RC1", models["models"]["lr"], model_store, replicas=2, steps=STEPS))
        final = s.wait_phase("Healthy", 120, check=capacity_kept)
    assert final["stableVersion"] == "RC1", final
    assert ready_pods and min(ready_pods) >= 2, f"capacity fell below 2 Ready pods: {ready_pods}"
    assert traffic.stats.by_version["RC1"].ok > 0 and traffic.stats.failures == 0
    assert len({d.metadata.name for d in s.deployments()}) == len(s.deployments())


def test_a_deployment_of_someone_else_at_the_versions_name_is_not_touched_and_the_reason_is_shown(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any],
        model_store: str) -> None:
    apps = kubernetes.client.AppsV1Api(cluster.api)
    squatter = deployment_name("taken", "1")
    apps.create_namespaced_deployment(namespace, deployment(squatter, 1, {"app": "someone-else"},
                                                            echo_container()))
    s = Scenario(cluster, namespace, "taken")
    s.apply(make_rollout(s.name, "1", models["models"]["lr"], model_store, replicas=2))
    wait_until(lambda: "does not run version 1" in (s.status().get("message") or ""), 60,
               "the conflict in the status message", describe=s.describe)
    assert any(kind == "Warning" and reason == "Conflict" for kind, reason, _ in s.events()), s.events()
    theirs = apps.read_namespaced_deployment(squatter, namespace)
    assert theirs.spec.replicas == 1 and theirs.metadata.labels == {"app": "someone-else"}
