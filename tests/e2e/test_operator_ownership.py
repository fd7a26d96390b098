"""Server-side apply and Service ownership (issue 16 item 2, issue 18 item 6): the operator writes
its objects as field manager `modelrollout`, other actors' fields survive its writes, a Service
belongs to one rollout, and an adopted Service gets its own selector back when the rollout goes."""

from __future__ import annotations

import json
from typing import Any

import kubernetes
import pytest

from localcluster.testing import wait_until
from modelrollout.core.decide import IDLE
from modelrollout.workloads import deployment_name
from tests.conftest import ClusterHandle
from tests.e2e.builders import deployment, echo_container, service
from tests.e2e.rollouts import GROUP, PLURAL, VERSION, OperatorProcess, Scenario, Traffic, make_rollout

pytestmark = pytest.mark.e2e
IDLE_LOOK = IDLE.total_seconds() + 30
HOLD_AT_50 = [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]


def managers(obj: Any) -> set[tuple[str, str]]:
    return {(f.manager, f.operation) for f in obj.metadata.managed_fields or []}


def test_labels_and_annotations_of_other_actors_survive_the_operators_writes_and_its_intent_is_restored(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any],
        model_store: str) -> None:
    apps, core = kubernetes.client.AppsV1Api(cluster.api), kubernetes.client.CoreV1Api(cluster.api)
    s = Scenario(cluster, namespace, "ssa")
    s.apply(make_rollout(s.name, "1", models["models"]["lr"], model_store, replicas=2, steps=HOLD_AT_50))
    s.wait_phase("Healthy", 90)
    stable = deployment_name(s.name, "1")
    # Given: another team labels and annotates the operator's objects (kubectl's own field managers).
    cluster.kubectl("label", "deployment", stable, "team=ml", "-n", namespace)
    cluster.kubectl("annotate", "deployment", stable, "example.com/on-call=ml-oncall", "-n", namespace)
    cluster.kubectl("annotate", "service", s.name, "example.com/dns=fraud.example.com", "-n", namespace)
    assert ("modelrollout", "Apply") in managers(apps.read_namespaced_deployment(stable, namespace))

    # When: the canary starts, the operator scales the stable Deployment from 2 to 1.
    s.apply(make_rollout(s.name, "2", models["models"]["lr"], model_store, replicas=2, steps=HOLD_AT_50))
    s.wait_phase("Paused", 90)
    dep = wait_until(lambda: (d := apps.read_namespaced_deployment(stable, namespace)).spec.replicas == 1 and d,
                     30, "stable scaled to 1", describe=s.describe)

    # Then: their label and annotation are still there, and the template was never changed (one ReplicaSet).
    assert dep.metadata.labels["team"] == "ml", dep.metadata.labels
    assert dep.metadata.annotations["example.com/on-call"] == "ml-oncall"
    selector = f"modelrollout.dev/rollout={s.name},modelrollout.dev/version=1"
    assert len(apps.list_namespaced_replica_set(namespace, label_selector=selector).items) == 1

    # When: someone scales the stable Deployment and points the Service elsewhere.
    cluster.kubectl("scale", "deployment", stable, "--replicas=3", "-n", namespace)
    cluster.kubectl("patch", "service", s.name, "-n", namespace, "--type=json",
                    "-p", json.dumps([{"op": "replace", "path": "/spec/selector", "value": {"app": "other"}}]))
    # Then: the operator restores its intent at its next look (a paused rollout: within IDLE, 60 s),
    # and the annotation survives that write too.
    wait_until(lambda: apps.read_namespaced_deployment(stable, namespace).spec.replicas == 1, IDLE_LOOK,
               "the stable replicas restored", describe=s.describe)
    svc = wait_until(lambda: (v := core.read_namespaced_service(s.name, namespace)).spec.selector
                     == {"modelrollout.dev/rollout": s.name} and v, IDLE_LOOK, "the selector restored",
                     describe=s.describe)
    assert svc.metadata.annotations["example.com/dns"] == "fraud.example.com"
    assert ("modelrollout", "Apply") in managers(svc)
    s.command("promote")
    s.wait_phase("Healthy", 90)


def test_a_second_rollout_naming_a_service_another_rollout_owns_is_refused_and_touches_nothing(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any],
        model_store: str) -> None:
    core = kubernetes.client.CoreV1Api(cluster.api)
    first = Scenario(cluster, namespace, "first")
    first.apply(make_rollout("first", "1", models["models"]["lr"], model_store, replicas=1))
    first.wait_phase("Healthy", 90)
    before = core.read_namespaced_service("first", namespace).spec.selector

    # When: a second rollout names the same Service.
    second = Scenario(cluster, namespace, "second")
    rollout = make_rollout("second", "7", models["models"]["lr"], model_store, replicas=1)
    rollout["spec"]["service"]["name"] = "first"
    with Traffic(first.service_url(), "first", models["holdout"], rate=40) as traffic:
        second.apply(rollout)
        # Then: it says who owns the Service, in its status and a Warning Event...
        wait_until(lambda: "belongs to ModelRollout first" in (second.status().get("message") or ""), 60,
                   "the owner named in the second rollout's status", describe=second.describe)
        wait_until(lambda: any(kind == "Warning" and reason == "Conflict" and "ModelRollout first" in message
                               for kind, reason, message in second.events()), 30, "a Conflict Event",
                   describe=second.describe)
        # ...and has written nothing: the selector is the first rollout's and it runs no pods.
        assert core.read_namespaced_service("first", namespace).spec.selector == before
        assert second.deployments() == []
    assert traffic.stats.failures == 0 and set(traffic.stats.by_version) == {"1"}
    assert first.status()["phase"] == "Healthy"


def test_an_adopted_service_gets_its_original_selector_back_when_the_rollout_is_deleted(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any],
        model_store: str) -> None:
    apps, core = kubernetes.client.AppsV1Api(cluster.api), kubernetes.client.CoreV1Api(cluster.api)
    # Given: a Service the user created, serving their own pods.
    legacy = {"app": "legacy"}
    apps.create_namespaced_deployment(namespace, deployment("legacy", 1, legacy, echo_container()))
    core.create_namespaced_service(namespace, service("fraud", legacy))

    # When: a rollout takes the Service over...
    s = Scenario(cluster, namespace, "fraud")
    s.apply(make_rollout(s.name, "1", models["models"]["lr"], model_store, replicas=1))
    s.wait_phase("Healthy", 90)
    adopted = core.read_namespaced_service("fraud", namespace)
    assert adopted.spec.selector == {"modelrollout.dev/rollout": "fraud"}
    assert json.loads(adopted.metadata.annotations["modelrollout.dev/original-selector"]) == legacy
    assert not adopted.metadata.owner_references, "an adopted Service must never be garbage-collected"

    # ...and is deleted.
    s.api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, s.name)
    wait_until(lambda: not _exists(s), 60, "the rollout gone", describe=s.describe)

    # Then: the Service is still there, selects the user's pods again and carries nothing of the operator.
    svc = core.read_namespaced_service("fraud", namespace)
    assert svc.spec.selector == legacy
    assert "modelrollout.dev/original-selector" not in (svc.metadata.annotations or {})
    assert "modelrollout.dev/rollout" not in (svc.metadata.labels or {})


def _exists(s: Scenario) -> bool:
    try:
        s.api.get_namespaced_custom_object(GROUP, VERSION, s.namespace, PLURAL, s.name)
    except kubernetes.client.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True
