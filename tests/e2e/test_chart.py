"""The Helm chart on the local cluster: its manifests pass the real apiserver's validation, and the
operator it installs - a pod under the chart's ServiceAccount, RBAC enforced - completes a canary
rollout; with a rule taken out of its ClusterRole it names the missing permission instead of hanging.

The session's local-process operator (admin credentials, every namespace) is paused while these
tests run: otherwise two operators would reconcile the same rollouts and the test would not prove
that the chart's RBAC is enough.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from localcluster.binaries import binary
from localcluster.testing import wait_until
from localcluster.traffic import read_metrics
from tests.conftest import ROOT, ClusterHandle
from tests.e2e.rollouts import OperatorProcess, Scenario, Traffic, make_rollout

pytestmark = pytest.mark.e2e

CHART = ROOT / "charts" / "modelrollout"
FAST_CANARY: list[dict[str, Any]] = [{"setWeight": 50}, {"pause": {"duration": "4s"}}, {"setWeight": 100}]
ANALYSIS: dict[str, Any] = {
    "interval": "2s", "minSamples": 40, "failureLimit": 2, "inconclusiveLimit": 30, "minExposure": "4s",
    "metrics": [{"name": "error-rate", "type": "errorRate", "margin": 0.02}],
}


def helm(cluster: ClusterHandle, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([str(binary("helm")), "--kubeconfig", str(cluster.kubeconfig), *args],
                         capture_output=True, text=True, timeout=120)
    if check and out.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return out


class Release:
    """One `helm install` of the chart, with ways to look at the operator pod it runs."""

    def __init__(self, cluster: ClusterHandle, name: str, namespace: str) -> None:
        self.cluster, self.name, self.namespace = cluster, name, namespace
        self.fullname = f"{name}-modelrollout"

    def install(self, *sets: str) -> str:
        # The local cluster's pods share one network namespace: each operator pod binds its own IP.
        flags = [f"--set={s}" for s in ("operator.bindAddress=podIP", *sets)]
        out = helm(self.cluster, "install", self.name, str(CHART), "-n", self.namespace, *flags)
        return out.stdout

    def uninstall(self) -> None:
        helm(self.cluster, "uninstall", self.name, "-n", self.namespace, "--wait", "--timeout=60s", check=False)

    def operator_pod(self) -> Any:
        core = kubernetes.client.CoreV1Api(self.cluster.api)
        selector = f"app.kubernetes.io/instance={self.name},app.kubernetes.io/component=operator"
        pods = core.list_namespaced_pod(self.namespace, label_selector=selector).items
        return pods[0] if len(pods) == 1 else None

    def wait_ready(self, timeout: float = 120) -> Any:
        def ready() -> Any:
            pod = self.operator_pod()
            conditions = (pod.status.conditions or []) if pod else []
            return pod if any(c.type == "Ready" and c.status == "True" for c in conditions) else None

        return wait_until(ready, timeout, f"the operator pod of release {self.name} to be Ready",
                          interval=0.5, describe=self.log)

    def log(self) -> str:
        """The operator container's log, read where the local kubelet writes it."""
        pod = self.operator_pod()
        if pod is None:
            return "(no operator pod)"
        folder = f"{self.namespace}_{pod.metadata.name}_{pod.metadata.uid[:8]}"
        path = Path(self.cluster.workdir) / "kubelet" / "pods" / folder / "logs" / "operator.log"
        return path.read_text(errors="replace") if path.exists() else f"(no log at {path})"

    def can(self, verb: str, resource: str, namespace: str) -> bool:
        sa = f"system:serviceaccount:{self.namespace}:{self.fullname}"
        out = self.cluster.kubectl("auth", "can-i", verb, resource, "-n", namespace, f"--as={sa}", check=False)
        return out.strip() == "yes"


@pytest.fixture
def local_operator_paused(operator: OperatorProcess) -> Iterator[None]:
    operator.kill()
    yield
    operator.start()


@pytest.fixture
def release(cluster: ClusterHandle, namespace: str, apply_crds: None,
            local_operator_paused: None) -> Iterator[Release]:
    # apply_crds first: helm skips CRDs that exist, so the CRD keeps one field manager.
    rel = Release(cluster, "mr", namespace)
    yield rel
    rel.uninstall()


def test_rendered_chart_passes_server_side_dry_run(cluster: ClusterHandle, namespace: str,
                                                    apply_crds: None) -> None:
    for values in ([], ["rbac.namespaced=true", f"watchNamespaces={{{namespace}}}"]):
        flags = [f"--set={v}" for v in values]
        rendered = helm(cluster, "template", "dry", str(CHART), "-n", namespace, *flags).stdout
        out = cluster.cluster.kubectl("apply", "--server-side", "--dry-run=server", "-n", namespace, "-f", "-",
                                      input=rendered, check=False)
        assert out.returncode == 0, out.stderr
        applied = out.stdout
        for kind in ("serviceaccount/", "deployment.apps/", "service/"):
            assert kind in applied, applied
        role_kind = "role.rbac" if values else "clusterrole.rbac"
        assert f"{role_kind}.authorization.k8s.io/dry-modelrollout" in applied, applied


def test_chart_operator_promotes_a_canary_under_its_own_rbac(
        cluster: ClusterHandle, namespace: str, release: Release, models: dict[str, Any],
        model_store: str) -> None:
    # Given the chart installed with Roles only in this namespace
    notes = release.install("rbac.namespaced=true", f"watchNamespaces={{{namespace}}}")
    assert f"rollout status deployment/{release.fullname}" in notes
    pod = release.wait_ready()
    assert pod.spec.service_account_name == release.fullname
    assert release.can("create", "deployments.apps", namespace)
    assert not release.can("create", "deployments.apps", "default"), "Roles must not reach other namespaces"
    assert not release.can("delete", "services", namespace), "the operator never deletes Services"

    # When a model is deployed and a second version is rolled out under traffic
    s = Scenario(cluster, namespace, "fraud")
    s.apply(make_rollout(s.name, "1", models["models"]["lr"], model_store, steps=FAST_CANARY, analysis=ANALYSIS))
    s.wait_phase("Healthy", 60)
    with Traffic(s.service_url(), "fraud", models["holdout"], rate=60) as traffic:
        s.apply(make_rollout(s.name, "2", models["models"]["lr"], model_store, steps=FAST_CANARY,
                             analysis=ANALYSIS))
        final = s.wait_phase("Healthy", 75)

    # Then the chart's operator promoted it, with no failed request and no permission error
    assert final["stableVersion"] == "2" and "canaryVersion" not in final, final
    assert traffic.stats.failures == 0, traffic.stats.explain()
    assert traffic.stats.by_version["2"].ok > 0
    assert "forbidden" not in release.log().lower(), release.log()[-3000:]

    # And its own metrics and liveness endpoint answer on the pod's IP
    ip = release.operator_pod().status.pod_ip
    metrics = read_metrics(ip, 8081)
    assert f'modelrollout_phase{{namespace="{namespace}",phase="Healthy",rollout="fraud"}} 1.0' in metrics, metrics
    for series in ("modelrollout_reconcile_duration_seconds_count", "modelrollout_analysis_verdicts_total{",
                   "modelrollout_desired_weight_ratio{", "modelrollout_effective_weight_ratio{"):
        assert series in metrics, series
    with urllib.request.urlopen(f"http://{ip}:8080/healthz", timeout=5) as response:
        assert response.status == 200


def test_rule_missing_from_cluster_role_is_reported_as_forbidden(
        cluster: ClusterHandle, namespace: str, release: Release, models: dict[str, Any],
        model_store: str) -> None:
    # Given the chart's ClusterRole without `create` on deployments
    release.install(f"watchNamespaces={{{namespace}}}")
    rbac = kubernetes.client.RbacAuthorizationV1Api(cluster.api)
    role = rbac.read_cluster_role(release.fullname)
    [index] = [i for i, r in enumerate(role.rules) if r.resources == ["deployments"]]
    verbs = [v for v in role.rules[index].verbs if v != "create"]
    patch = [{"op": "replace", "path": f"/rules/{index}/verbs", "value": verbs}]
    cluster.kubectl("patch", "clusterrole", release.fullname, "--type=json", "-p", json.dumps(patch))
    wait_until(lambda: not release.can("create", "deployments.apps", namespace), 10, "the rule to be gone")
    release.wait_ready()

    # When a rollout is applied
    s = Scenario(cluster, namespace, "fraud")
    s.apply(make_rollout(s.name, "1", models["models"]["lr"], model_store, steps=FAST_CANARY))

    # Then the operator says what it may not do, and keeps running
    wait_until(lambda: "cannot create deployments.apps" in release.log(), 30,
               "the operator to log the missing permission", describe=lambda: release.log()[-3000:])
    line = next(ln for ln in release.log().splitlines() if "cannot create deployments.apps" in ln)
    assert "forbidden" in line and namespace in line, line
    assert s.deployments() == []
    assert release.wait_ready(5).status.container_statuses[0].restart_count == 0
