"""What the operator sends again under server-side apply (managedFields read back) and who owns a Service."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import kubernetes
import pytest

from modelrollout.kube import KubeAdapter
from modelrollout.managedfields import applied_by
from modelrollout.ownership import ORIGINAL_SELECTOR, OwnershipConflictError, adoption, check_owner, release
from modelrollout.reconcile import Context, is_due
from modelrollout.sources import SOURCES
from modelrollout.workloads import deployment_scale, identity, merged

pytestmark = pytest.mark.unit
ROLLOUT = {"apiVersion": "modelrollout.dev/v1alpha1", "kind": "ModelRollout",
           "metadata": {"name": "fraud", "namespace": "ml", "uid": "u-1"}}
ENV = [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}, {"name": "THEIRS", "value": "x"}]


def live_deployment() -> dict[str, Any]:
    """A Deployment the operator applied, then labelled by kubectl and given an env var by a webhook."""
    ours = {"f:metadata": {"f:labels": {"f:modelrollout.dev/rollout": {}}},
            "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                'k:{"name":"modelserver"}': {".": {}, "f:name": {}, "f:image": {}, "f:env": {
                    'k:{"name":"A"}': {".": {}, "f:name": {}, "f:value": {}},
                    'k:{"name":"B"}': {".": {}, "f:name": {}, "f:value": {}}},
                    "f:securityContext": {"f:capabilities": {"f:drop": {}}}}}}}}}
    theirs = {"f:metadata": {"f:labels": {"f:team": {}}}}
    return {"metadata": {"name": "fraud-v1", "labels": {"modelrollout.dev/rollout": "fraud", "team": "ml"},
                         "managedFields": [
                             {"manager": "modelrollout", "operation": "Apply", "fieldsV1": ours},
                             {"manager": "kubectl-label", "operation": "Update", "fieldsV1": theirs}]},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{
                "name": "modelserver", "image": "m:1", "env": ENV, "imagePullPolicy": "IfNotPresent",
                "securityContext": {"capabilities": {"drop": ["ALL"]}, "privileged": False}}]}}}}


def test_only_what_the_manager_applied_is_read_back_in_the_live_order() -> None:
    got = applied_by(live_deployment(), "modelrollout")
    assert got["metadata"] == {"labels": {"modelrollout.dev/rollout": "fraud"}}  # not kubectl's `team`
    [container] = got["spec"]["template"]["spec"]["containers"]
    # The env keeps the live order (B before A): reordering it would change the template and restart pods.
    assert container == {"name": "modelserver", "image": "m:1", "env": ENV[:2],
                         "securityContext": {"capabilities": {"drop": ["ALL"]}}}
    assert got["spec"]["replicas"] == 2


def test_nothing_is_read_back_for_a_manager_that_never_applied() -> None:
    assert applied_by(live_deployment(), "kubectl-label") == {}  # an Update, not an Apply
    assert applied_by({"metadata": {}}, "modelrollout") == {}


def test_scaling_sends_the_template_it_applied_and_nothing_when_nothing_changes() -> None:
    live = live_deployment()
    ours = identity(applied_by(live, "modelrollout"), "apps/v1", "Deployment", "fraud-v1", "ml")
    scaled = merged(ours, deployment_scale(ROLLOUT, "fraud-v1", "1", 3))
    assert scaled["spec"]["replicas"] == 3
    assert scaled["spec"]["template"] == ours["spec"]["template"]
    assert "team" not in scaled["metadata"]["labels"]
    # Once that is applied, the same intent sends nothing (the adapter compares before writing).
    assert merged(scaled, deployment_scale(ROLLOUT, "fraud-v1", "1", 3)) == scaled
    assert merged(scaled, deployment_scale(ROLLOUT, "fraud-v1", "1", 2)) != scaled


def service(labels: dict[str, str] | None = None, owners: list[dict[str, Any]] | None = None,
            annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "fraud", "namespace": "ml", "labels": labels or {}, "ownerReferences": owners or [],
                         "annotations": annotations or {}},
            "spec": {"selector": {"app": "legacy"}}}


@pytest.mark.parametrize(("live", "named"), [
    (service(labels={"modelrollout.dev/rollout": "other"}), "belongs to ModelRollout other"),
    (service(owners=[{"kind": "Rollout", "name": "argo", "uid": "u-9", "controller": True}]),
     "is controlled by Rollout argo"),
])
def test_a_service_of_another_rollout_or_controller_is_refused_naming_the_owner(live: dict[str, Any],
                                                                                 named: str) -> None:
    with pytest.raises(OwnershipConflictError, match=named):
        check_owner(live, ROLLOUT)


@pytest.mark.parametrize("live", [
    service(),  # the user's own: adopted
    service(labels={"modelrollout.dev/rollout": "fraud"}, owners=[{"kind": "ModelRollout", "uid": "u-1",
                                                                   "controller": True}]),
    service(owners=[{"kind": "Team", "name": "ml", "uid": "u-5"}]),  # an owner that is not a controller
])
def test_a_free_or_own_service_is_not_refused(live: dict[str, Any]) -> None:
    check_owner(live, ROLLOUT)


def test_adoption_records_the_original_selector_once_and_release_gives_it_back() -> None:
    first = adoption(service(), ROLLOUT, {"modelrollout.dev/rollout": "fraud"})
    assert json.loads(first["metadata"]["annotations"][ORIGINAL_SELECTOR]) == {"app": "legacy"}
    assert "ports" not in first["spec"] and "ownerReferences" not in first["metadata"]
    adopted = service(labels={"modelrollout.dev/rollout": "fraud"}, annotations=first["metadata"]["annotations"])
    adopted["spec"]["selector"] = {"modelrollout.dev/rollout": "fraud"}
    # A later apply keeps the first record, not the rollout's own selector.
    assert adoption(adopted, ROLLOUT, {})["metadata"]["annotations"] == first["metadata"]["annotations"]
    back = release(adopted, ROLLOUT)
    assert back is not None and back["spec"] == {"selector": {"app": "legacy"}}
    assert set(back["metadata"]) == {"name", "namespace"}, "the label and annotation are dropped"


def test_a_service_the_rollout_created_is_not_released() -> None:
    created = service(labels={"modelrollout.dev/rollout": "fraud"}, owners=[{"uid": "u-1", "controller": True}],
                      annotations={ORIGINAL_SELECTOR: "{}"})
    assert release(created, ROLLOUT) is None
    assert release(service(), ROLLOUT) is None


def test_a_rollout_being_deleted_is_not_reconciled_so_a_released_service_stays_released() -> None:
    ctx = Context(kube=KubeAdapter(kubernetes.client.ApiClient()), source=SOURCES["pods"]())
    now = datetime.now(UTC)
    body = {"metadata": {**ROLLOUT["metadata"], "generation": 1}, "status": {"observedGeneration": 1}}
    assert is_due(ctx, body, now)
    body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert not is_due(ctx, body, now)
