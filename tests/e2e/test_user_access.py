"""What people (not the operator) may do with ModelRollouts on a real apiserver: the chart's aggregated
ClusterRoles put them in the built-in view / edit / admin roles, and examples/admission-policy.yaml
narrows what a namespace's rollouts may ask for (images, Secrets, pickled models)."""

from __future__ import annotations

import copy
import json
import subprocess
import uuid
from typing import Any

import pytest

from localcluster.binaries import binary
from localcluster.testing import wait_until
from tests.conftest import ROOT, ClusterHandle

pytestmark = pytest.mark.e2e

CHART = ROOT / "charts" / "modelrollout"
ROLLOUT: dict[str, Any] = {
    "apiVersion": "modelrollout.dev/v1alpha1", "kind": "ModelRollout", "metadata": {"name": "fraud"},
    "spec": {"model": {"name": "fraud", "version": "2", "uri": "http://store/fraud/2/model.joblib"},
             "service": {"name": "fraud"}, "strategy": {"canary": {"steps": [{"setWeight": 50}]}}},
}


def can(cluster: ClusterHandle, who: str, verb: str, resource: str, namespace: str, subresource: str = "") -> bool:
    extra = [f"--subresource={subresource}"] if subresource else []
    out = cluster.kubectl("auth", "can-i", verb, resource, *extra, "-n", namespace,
                          f"--as=system:serviceaccount:{namespace}:{who}", check=False)
    return out.strip() == "yes"


def test_people_who_may_view_or_edit_a_namespace_may_read_or_change_its_rollouts(
        cluster: ClusterHandle, namespace: str, apply_crds: None) -> None:
    # Given the chart's aggregated roles (rendered alone, under a release name of this test's own)
    release = f"access-{uuid.uuid4().hex[:5]}"
    roles = subprocess.run([str(binary("helm")), "template", release, str(CHART), "-n", namespace,
                            "--show-only", "templates/aggregate-roles.yaml"],
                           check=True, capture_output=True, text=True).stdout
    cluster.kubectl("apply", "-f", "-", input=roles)
    try:
        # And two people: alice may edit the namespace, bob may view it
        for who, role in (("alice", "edit"), ("bob", "view")):
            cluster.kubectl("create", "serviceaccount", who, "-n", namespace)
            cluster.kubectl("create", "rolebinding", who, f"--clusterrole={role}",
                            f"--serviceaccount={namespace}:{who}", "-n", namespace)
        # Then the aggregation controller gives alice ModelRollouts with the rest of `edit`
        wait_until(lambda: can(cluster, "alice", "create", "modelrollouts.modelrollout.dev", namespace), 60,
                   "edit to include ModelRollouts")
        assert can(cluster, "alice", "patch", "modelrollouts.modelrollout.dev", namespace)  # promote/abort
        assert can(cluster, "alice", "get", "modelrollouts.modelrollout.dev", namespace, "status")
        assert not can(cluster, "alice", "patch", "modelrollouts.modelrollout.dev", namespace, "status")
        # And bob may read them, and nothing more
        wait_until(lambda: can(cluster, "bob", "list", "modelrollouts.modelrollout.dev", namespace), 60,
                   "view to include ModelRollouts")
        assert not can(cluster, "bob", "create", "modelrollouts.modelrollout.dev", namespace)
        assert not can(cluster, "bob", "patch", "modelrollouts.modelrollout.dev", namespace)
        assert not can(cluster, "alice", "list", "modelrollouts.modelrollout.dev", "default")
    finally:
        cluster.kubectl("delete", "-f", "-", "--ignore-not-found", input=roles)


def dry_run(cluster: ClusterHandle, namespace: str, rollout: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return cluster.cluster.kubectl("apply", "--server-side", "--dry-run=server", "-n", namespace, "-f", "-",
                                   input=json.dumps(rollout), check=False)


def with_spec(**changes: Any) -> dict[str, Any]:
    rollout = copy.deepcopy(ROLLOUT)
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = rollout["spec"]
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return rollout


def test_the_example_admission_policy_narrows_what_a_restricted_namespace_may_run(
        cluster: ClusterHandle, namespace: str, apply_crds: None) -> None:
    foreign = with_spec(serving__image="docker.io/someone/miner:latest")
    secret_env = with_spec(serving__env=[{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}])
    pickled = with_spec(model__allowPickle=True, model__digest="sha256:" + "a" * 64)
    allowed = with_spec(serving__image="ghcr.io/modelrollout/modelserver:0.1.0",
                        serving__env=[{"name": "LOG_LEVEL", "value": "info"}])
    policy = (ROOT / "examples" / "admission-policy.yaml").read_text()
    # Given the policy, in a namespace not labelled restricted every one is admitted
    cluster.kubectl("apply", "-f", "-", input=policy)
    try:
        for rollout in (foreign, secret_env, pickled, allowed):
            out = dry_run(cluster, namespace, rollout)
            assert out.returncode == 0, out.stderr
        # When the namespace is labelled restricted
        cluster.kubectl("label", "namespace", namespace, "modelrollout.dev/restricted=true")
        # Then each rule refuses its case, naming the field (the policy takes effect within seconds)
        wait_until(lambda: dry_run(cluster, namespace, foreign).returncode != 0, 60, "the policy to apply")
        expected = {"spec.serving.image: docker.io/someone/miner:latest is not from an allowed registry": foreign,
                    "spec.serving.env: Secrets may not be passed": secret_env,
                    "spec.model.allowPickle: pickled models are not allowed": pickled}
        for message, rollout in expected.items():
            out = dry_run(cluster, namespace, rollout)
            assert out.returncode != 0 and message in out.stderr, out.stderr
        # And a rollout that asks for nothing restricted is admitted
        out = dry_run(cluster, namespace, allowed)
        assert out.returncode == 0, out.stderr
    finally:
        cluster.kubectl("delete", "-f", "-", "--ignore-not-found", input=policy)
