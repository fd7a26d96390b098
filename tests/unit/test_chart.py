"""The Helm chart, rendered by the real helm binary (no cluster): lint, the CRD copy, the operator
Deployment's safety settings, least-privilege RBAC in both modes, optional monitors, the values schema.

Where helm is missing the tests skip locally but fail under CI=true, so CI never passes by skipping.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from localcluster.binaries import MissingBinaryError, binary
from tests.conftest import ROOT

pytestmark = pytest.mark.unit

CHART = ROOT / "charts" / "modelrollout"
# The operator's needs (operator/modelrollout/kube.py, handlers.py and kopf): the whole RBAC surface.
EXPECTED_RULES = {
    ("modelrollout.dev", "modelrollouts"): {"get", "list", "watch", "patch"},
    ("modelrollout.dev", "modelrollouts/status"): {"get", "patch", "update"},
    ("modelrollout.dev", "modelrollouts/finalizers"): {"update"},
    # Server-side apply is a patch; one that creates the object is authorized for create as well.
    ("apps", "deployments"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "services"): {"get", "list", "watch", "create", "patch"},
    ("policy", "poddisruptionbudgets"): {"create", "patch", "delete"},
    ("", "pods"): {"get", "list", "watch"},
    # KubeAdapter.secret_value (analysis.prometheus's CA and bearer token) and ensure_feedback_key.
    ("", "secrets"): {"get", "create", "patch"},
    ("", "configmaps"): {"get", "create", "patch"},  # the shadow stage's mirror ConfigMap (apply_mirror_config)
    ("", "events"): {"create", "patch"},
    ("events.k8s.io", "events"): {"create", "patch"},
    ("gateway.networking.k8s.io", "httproutes"): {"get", "patch"},
    ("batch", "jobs"): {"get", "create", "delete"},  # spec.validation's Job (KubeAdapter.ensure_validation_job)
}


def helm_path() -> Path:
    try:
        return binary("helm")
    except MissingBinaryError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"helm is required in CI: {exc}", pytrace=False)
        pytest.skip(f"helm not installed ({exc}); run `make k8s-bins`")


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([str(helm_path()), *args], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "KUBECONFIG": "/nonexistent"})
    if check:
        assert out.returncode == 0, out.stderr
    return out


def render(*sets: str) -> list[dict[str, Any]]:
    out = helm("template", "rel", str(CHART), "-n", "ops", *(f"--set={s}" for s in sets))
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def only(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    [doc] = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    return doc


def rule_table(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    table: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                table.setdefault((group, resource), set()).update(rule["verbs"])
    return table


def test_chart_crds_are_identical_to_the_top_level_crds() -> None:
    top = {p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert top, "no CRDs in crds/"
    assert chart == top, "charts/modelrollout/crds/ differs from crds/: copy crds/*.yaml into the chart"


def test_helm_lint_is_clean() -> None:
    out = helm("lint", "--strict", str(CHART), check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "[WARNING]" not in out.stdout and "[ERROR]" not in out.stdout, out.stdout


def test_operator_deployment_is_one_restricted_pod_with_probes() -> None:
    docs = render()
    dep = only(docs, "Deployment")
    spec, pod = dep["spec"], dep["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert container["image"] == f"ghcr.io/modelrollout/operator:{chart['appVersion']}"
    assert "command" not in container, "the image entrypoint is the console script"
    assert pod["serviceAccountName"] == only(docs, "ServiceAccount")["metadata"]["name"] == "rel-modelrollout"
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert not any(a.startswith("--leader-elect") for a in container["args"])
    assert not [d for d in docs if d["kind"] == "PodDisruptionBudget"
                or d["metadata"]["name"].endswith("-leader-election")]
    # All addresses by default, so `kubectl port-forward` reaches /metrics and /healthz.
    assert f"--liveness=http://0.0.0.0:{ports['health']}/healthz" in container["args"]
    assert "--metrics-address=0.0.0.0" in container["args"]
    assert f"--metrics-port={ports['metrics']}" in container["args"]
    assert {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}} in container["env"]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert not any(a.startswith("--namespace") for a in container["args"])


def test_cluster_rbac_grants_exactly_what_the_operator_uses() -> None:
    docs = render()
    role = only(docs, "ClusterRole", "rel-modelrollout")
    assert rule_table(role["rules"]) == EXPECTED_RULES
    binding = only(docs, "ClusterRoleBinding", "rel-modelrollout")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rel-modelrollout", "namespace": "ops"}]
    discovery = only(docs, "ClusterRole", "rel-modelrollout-discovery")
    assert all(set(r["verbs"]) <= {"get", "list", "watch"} for r in discovery["rules"])
    assert not [d for d in docs if d["kind"] in ("Role", "RoleBinding")]


def test_every_api_call_of_the_adapter_is_granted() -> None:
    """Each `_call(verb, resource...)` in kube.py (the only module calling the API) is in the table,
    so a new call without its RBAC rule fails here, not on a cluster."""
    source = (ROOT / "operator" / "modelrollout" / "kube.py").read_text()
    calls = re.findall(r'_(?:call|raw)\(\s*"(\w+)",\s*"([\w./]+)"', source)
    calls += [("list", what) for what in re.findall(r'_labelled\(\s*"([\w./]+)"', source)]
    calls += [("get", what) for what in re.findall(r'_read\(\s*"([\w./]+)"', source)]
    # start_cache: each watched kind is listed, then watched.
    watched = re.findall(r'"([\w./]+)": \(self\.\w+\.list_namespaced_', source)
    assert sorted(watched) == ["deployments.apps", "pods", "services"]
    calls += [(verb, what) for what in watched for verb in ("list", "watch")]
    assert len(calls) >= 15
    for verb, what in calls:
        resource, _, group = what.partition(".")
        if resource.startswith("modelrollouts"):
            group = "modelrollout.dev"
        assert verb in EXPECTED_RULES.get((group, resource), set()), (verb, group, resource)


def test_namespaced_mode_renders_a_role_per_watched_namespace_and_passes_them() -> None:
    docs = render("rbac.namespaced=true", "watchNamespaces={ml,ml-staging}")
    roles = [d for d in docs if d["kind"] == "Role"]
    bindings = [d for d in docs if d["kind"] == "RoleBinding"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["ml", "ml-staging"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["ml", "ml-staging"]
    assert all(rule_table(r["rules"]) == EXPECTED_RULES for r in roles)
    assert all(b["subjects"][0]["namespace"] == "ops" for b in bindings)
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "ClusterRole"] == ["rel-modelrollout-discovery"]
    args = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [a for a in args if a.startswith("--namespace")] == ["--namespace=ml", "--namespace=ml-staging"]


def test_namespaced_mode_without_namespaces_is_refused_with_a_reason() -> None:
    out = helm("template", "rel", str(CHART), "--set=rbac.namespaced=true", check=False)
    assert out.returncode != 0 and "needs watchNamespaces" in out.stderr


def test_monitors_are_off_by_default_and_select_operator_and_serving_pods() -> None:
    assert not [d for d in render() if d["kind"] in ("ServiceMonitor", "PodMonitor")]
    docs = render("metrics.serviceMonitor.enabled=true", "metrics.podMonitor.enabled=true")
    service = only(docs, "Service")
    monitor = only(docs, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True  # the rollouts' own `namespace` label
    pods = only(docs, "PodMonitor")["spec"]
    assert pods["selector"]["matchExpressions"] == [{"key": "modelrollout.dev/rollout", "operator": "Exists"}]
    assert pods["namespaceSelector"] == {"any": True}
    assert pods["podMetricsEndpoints"][0]["port"] == "http"  # the serving container's port name
    # Another server's own metrics port (spec.serving.metrics), and the version its presets select by.
    assert [e["port"] for e in pods["podMetricsEndpoints"]] == ["http", "metrics"]
    assert all(e["relabelings"] == [{"sourceLabels": ["__meta_kubernetes_pod_label_modelrollout_dev_version"],
                                     "targetLabel": "rollout_version"}] for e in pods["podMetricsEndpoints"])


@pytest.mark.parametrize(("flag", "complaint"), [
    ("unknownKey=1", "additional properties"),
    ("watchNamespaces={Not_A_Name}", "does not match pattern"),
    ("image.pullPolicy=Sometimes", "must be one of"),
    ("operator.metricsPort=70000", "maximum"),
])
def test_values_schema_refuses_bad_values(flag: str, complaint: str) -> None:
    out = helm("template", "rel", str(CHART), f"--set={flag}", check=False)
    assert out.returncode != 0 and complaint in out.stderr, out.stderr


def test_notes_tell_the_next_command() -> None:
    out = helm("install", "rel", str(CHART), "-n", "ops", "--dry-run=client")
    notes = out.stdout.split("NOTES:", 1)[1]
    assert "kubectl -n ops rollout status deployment/rel-modelrollout" in notes
    assert "kubectl -n ops logs deployment/rel-modelrollout" in notes
    # Whoever installed from a chart repository has no checkout: every file named is a URL at the release.
    assert not re.search(r"(?<![/\w])(examples|docs)/", notes), notes
    assert "https://raw.githubusercontent.com/modelrollout/modelrollout/v0.1.0/examples/canary.yaml" in notes


def test_pods_sharing_a_network_namespace_can_bind_the_pod_ip_only() -> None:
    [container] = only(render("operator.bindAddress=podIP"), "Deployment")["spec"]["template"]["spec"]["containers"]
    assert "--liveness=http://$(POD_IP):8080/healthz" in container["args"]
    assert "--metrics-address=$(POD_IP)" in container["args"]
    out = helm("template", "rel", str(CHART), "--set=operator.bindAddress=localhost", check=False)
    assert out.returncode != 0 and "does not match pattern" in out.stderr, out.stderr


def test_a_digest_pins_the_operator_image_whatever_the_tag() -> None:
    image = only(render(), "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "ghcr.io/modelrollout/operator:0.1.0"
    digest = "sha256:" + "ab" * 32
    pinned = only(render(f"image.digest={digest}", "image.tag=latest"), "Deployment")
    assert pinned["spec"]["template"]["spec"]["containers"][0]["image"] == f"ghcr.io/modelrollout/operator@{digest}"
    out = helm("template", "rel", str(CHART), "--set=image.digest=sha256:short", check=False)
    assert out.returncode != 0 and "does not match pattern" in out.stderr, out.stderr


def test_chart_metadata_has_an_icon_and_a_maintainer_contact() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["icon"].startswith("https://") and (ROOT / "docs" / "images" / "icon.svg").is_file()
    assert all(m.get("url") or m.get("email") for m in chart["maintainers"])
    lint = helm("lint", "--strict", str(CHART))
    assert "icon is recommended" not in lint.stdout, lint.stdout


def test_two_replicas_elect_a_leader_on_their_own_lease_only() -> None:
    docs = render("replicas=2")
    dep = only(docs, "Deployment")
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    [container] = dep["spec"]["template"]["spec"]["containers"]
    assert "--leader-elect" in container["args"] and "--lease-name=rel-modelrollout" in container["args"]
    assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in container["env"]
    pdb = only(docs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    role = only(docs, "Role", "rel-modelrollout-leader-election")
    assert role["metadata"]["namespace"] == "ops"
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["rel-modelrollout"],
         "verbs": ["get", "update"]},
    ]
    binding = only(docs, "RoleBinding", "rel-modelrollout-leader-election")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rel-modelrollout", "namespace": "ops"}]
    # The operator's other rights are unchanged.
    assert rule_table(only(docs, "ClusterRole", "rel-modelrollout")["rules"]) == EXPECTED_RULES


def test_leader_election_can_be_asked_for_at_one_replica() -> None:
    docs = render("leaderElection.enabled=true")
    [container] = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert "--leader-elect" in container["args"]
    assert not [d for d in docs if d["kind"] == "PodDisruptionBudget"]


def test_modelrollouts_join_the_built_in_view_edit_and_admin_roles() -> None:
    docs = render()
    view = only(docs, "ClusterRole", "rel-modelrollout-aggregate-to-view")
    edit = only(docs, "ClusterRole", "rel-modelrollout-aggregate-to-edit")
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert {edit["metadata"]["labels"][f"rbac.authorization.k8s.io/aggregate-to-{r}"] for r in ("edit", "admin")} \
        == {"true"}
    assert rule_table(view["rules"]) == {("modelrollout.dev", "modelrollouts"): {"get", "list", "watch"},
                                         ("modelrollout.dev", "modelrollouts/status"): {"get", "list", "watch"}}
    granted = rule_table(edit["rules"])
    assert {"create", "patch", "delete"} <= granted[("modelrollout.dev", "modelrollouts")]
    # Status is the operator's: people read it, they never write it.
    assert granted[("modelrollout.dev", "modelrollouts/status")] == {"get", "list", "watch"}
    assert not [d for d in render("rbac.aggregateToDefaultRoles=false") if "aggregate" in d["metadata"]["name"]]


def test_network_policy_is_off_by_default_and_opens_only_the_metrics_and_health_ports() -> None:
    assert not [d for d in render() if d["kind"] == "NetworkPolicy"]
    docs = render("networkPolicy.enabled=true", "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.team=obs")
    policy = only(docs, "NetworkPolicy")["spec"]
    deployment = only(docs, "Deployment")
    assert policy["podSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert policy["policyTypes"] == ["Ingress"]  # egress depends on addresses only the installer knows
    [rule] = policy["ingress"]
    assert sorted(p["port"] for p in rule["ports"]) == [8080, 8081]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"team": "obs"}}}]
    egress = render("networkPolicy.enabled=true", "networkPolicy.egress[0].ports[0].port=6443")
    assert only(egress, "NetworkPolicy")["spec"]["policyTypes"] == ["Ingress", "Egress"]
