"""What a kubelet gives a container: env from ConfigMaps/Secrets/downward API, volumes as files,
and liveness probes that restart it; and what spec.serving.podTemplate gives every version's pods."""

from __future__ import annotations

import base64
import json
from typing import Any

import kubernetes
import pytest

from localcluster.kubelet import node_manifest
from localcluster.testing import wait_until
from localcluster.traffic import pod_log
from modelrollout.workloads import FEEDBACK_KEY_DIR, FEEDBACK_KEY_VOLUME, MIRROR_DIR, MIRROR_VOLUME, deployment_name
from tests.conftest import ClusterHandle
from tests.e2e.rollouts import OperatorProcess, Scenario, make_rollout

pytestmark = pytest.mark.e2e

PRINTER = """
import os, pathlib
for key in ("FROM_CM", "FROM_SECRET", "PREFIX_color", "MY_NS", "MY_APP", "EXPANDED"):
    print(f"{key}={os.environ.get(key)}")
for path in ("/etc/cfg/color", "/etc/cfg/blob", "/etc/secret/token", "/etc/info/labels", "/scratch"):
    p = pathlib.Path(path)
    print(f"{path}=" + (p.read_text().strip() if p.is_file() else str(p.is_dir())))
"""


def test_env_and_volumes_come_from_configmaps_secrets_and_the_downward_api(
        cluster: ClusterHandle, namespace: str) -> None:
    core = kubernetes.client.CoreV1Api(cluster.api)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "cfg"}, "data": {"color": "blue"},
                                                  "binaryData": {"blob": base64.b64encode(b"bytes").decode()}})
    core.create_namespaced_secret(namespace, {"metadata": {"name": "sec"},
                                              "data": {"token": base64.b64encode(b"s3cret").decode()}})
    core.create_namespaced_pod(namespace, {"metadata": {"name": "env", "labels": {"app": "env-test"}}, "spec": {
        "restartPolicy": "Never",
        "containers": [{
            "name": "c", "image": "localcluster/python:test", "args": ["-c", PRINTER],
            "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "PREFIX_"}],
            "env": [{"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "color"}}},
                    {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "token"}}},
                    {"name": "MY_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                    {"name": "MY_APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                    {"name": "EXPANDED", "value": "ns-$(MY_NS)"}],
            "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}, {"name": "sec", "mountPath": "/etc/secret"},
                             {"name": "info", "mountPath": "/etc/info"}, {"name": "scratch", "mountPath": "/scratch"}],
        }],
        "volumes": [{"name": "cfg", "configMap": {"name": "cfg"}}, {"name": "sec", "secret": {"secretName": "sec"}},
                    {"name": "info", "downwardAPI": {"items": [
                        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                    {"name": "scratch", "emptyDir": {}}]}})
    wait_until(lambda: core.read_namespaced_pod("env", namespace).status.phase == "Succeeded", 60, "env pod",
               describe=lambda: pod_log(cluster.workdir / "kubelet", namespace, "env", "c"))
    out = pod_log(cluster.workdir / "kubelet", namespace, "env", "c")
    for line in ("FROM_CM=blue", "FROM_SECRET=s3cret", "PREFIX_color=blue", f"MY_NS={namespace}",
                 "MY_APP=env-test", f"EXPANDED=ns-{namespace}", "/etc/cfg/color=blue", "/etc/cfg/blob=bytes",
                 "/etc/secret/token=s3cret",
                 '/etc/info/labels=app="env-test"', "/scratch=True"):
        assert line in out, out


WATCHER = """
import os, pathlib, sys, time
path = pathlib.Path("/etc/cfg/mode")
seen = None
while True:
    text = path.read_text() if path.exists() else "(missing)"
    if text != seen:
        print(f"mode={text} inode={os.stat(path).st_ino if path.exists() else 0}", flush=True)
        seen = text
    time.sleep(0.2)
"""


def test_a_mounted_configmap_is_updated_in_place_without_restarting_the_container(
        cluster: ClusterHandle, namespace: str) -> None:
    """As the real kubelet: a changed ConfigMap (optional, so created later) reaches the running container's
    files by an atomic `..data` swap, seen as a new inode, with no restart."""
    core = kubernetes.client.CoreV1Api(cluster.api)
    core.create_namespaced_pod(namespace, {"metadata": {"name": "watcher"}, "spec": {
        "containers": [{"name": "c", "image": "localcluster/python:test", "args": ["-c", WATCHER],
                        "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg", "readOnly": True}]}],
        "volumes": [{"name": "cfg", "configMap": {"name": "live", "optional": True}}]}})

    def log() -> str:
        return pod_log(cluster.workdir / "kubelet", namespace, "watcher", "c")

    wait_until(lambda: "mode=(missing)" in log(), 60, "the container to start without the ConfigMap",
               describe=log)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "live"}, "data": {"mode": "on"}})
    wait_until(lambda: "mode=on" in log(), 30, "the new ConfigMap to appear in the running container", describe=log)
    core.patch_namespaced_config_map("live", namespace, {"data": {"mode": "off"}})
    wait_until(lambda: "mode=off" in log(), 30, "the change to reach the running container", describe=log)
    inodes = [line.rsplit("inode=", 1)[1] for line in log().splitlines() if line.startswith("mode=o")]
    assert len(set(inodes)) == 2, log()  # a new file swapped in, never a rewrite of the one being read
    statuses = core.read_namespaced_pod("watcher", namespace).status.container_statuses
    assert statuses[0].restart_count == 0 and statuses[0].state.running is not None


def test_failing_liveness_probe_restarts_the_container(cluster: ClusterHandle, namespace: str) -> None:
    core = kubernetes.client.CoreV1Api(cluster.api)
    # Serves nothing on 8080, so the liveness probe fails and the kubelet restarts it.
    core.create_namespaced_pod(namespace, {"metadata": {"name": "sick"}, "spec": {"containers": [{
        "name": "c", "image": "localcluster/python:test", "args": ["-c", "import time; time.sleep(3600)"],
        "livenessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1, "failureThreshold": 2}}]}})

    def restarted() -> bool:
        statuses = core.read_namespaced_pod("sick", namespace).status.container_statuses or []
        return bool(statuses) and statuses[0].restart_count >= 1

    wait_until(restarted, 60, "a liveness restart", describe=lambda: cluster.kubectl("get", "pod", "sick", "-n",
                                                                                       namespace, "-o", "yaml"))


def test_a_pod_template_reaches_the_pods_of_both_versions(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any],
        model_store: str) -> None:
    core = kubernetes.client.CoreV1Api(cluster.api)
    policy = kubernetes.client.PolicyV1Api(cluster.api)
    # Given: a private registry's pull secret, a ServiceAccount and a CA bundle in the namespace, and a
    # node selector the local cluster's node matches (its kubelet, like kube-scheduler, binds only then).
    node_os = node_manifest()["metadata"]["labels"]["kubernetes.io/os"]
    auth = json.dumps({"auths": {"registry.example.com": {"auth": base64.b64encode(b"u:p").decode()}}})
    core.create_namespaced_secret(namespace, {"metadata": {"name": "regcred"}, "type": "kubernetes.io/dockerconfigjson",
                                              "data": {".dockerconfigjson": base64.b64encode(auth.encode()).decode()}})
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "model-reader"}})
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "ca"}, "data": {"ca.pem": "-----CERT-----"}})
    template = {
        "metadata": {"labels": {"team": "fraud"}, "annotations": {"example.com/owner": "ml"}},
        "spec": {"nodeSelector": {"kubernetes.io/os": node_os},
                 "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                 "imagePullSecrets": [{"name": "regcred"}], "serviceAccountName": "model-reader",
                 "volumes": [{"name": "ca", "configMap": {"name": "ca"}}]}}
    serving = {"podTemplate": template, "volumeMounts": [{"name": "ca", "mountPath": "/etc/ca", "readOnly": True}],
               "podDisruptionBudget": {"maxUnavailable": 1}}

    def rollout(version: str) -> dict[str, Any]:
        body = make_rollout("gpu", version, models["models"]["lr"], model_store, replicas=2,
                            steps=[{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}])
        body["spec"]["serving"].update(serving)
        return body

    # When: version 1 runs and version 2 is canaried beside it.
    s = Scenario(cluster, namespace, "gpu")
    s.apply(rollout("1"))
    s.wait_phase("Healthy", 90)
    s.apply(rollout("2"))
    s.wait_phase("Paused", 90)

    # Then: the pods of both versions carry every field, Ready on the node; the operator's parts stay.
    pods = core.list_namespaced_pod(namespace, label_selector="modelrollout.dev/rollout=gpu").items
    ready = [p for p in pods if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]
    assert {p.metadata.labels["modelrollout.dev/version"] for p in ready} == {"1", "2"}, pods
    for pod in ready:
        spec = pod.spec
        assert spec.node_selector == {"kubernetes.io/os": node_os}
        assert [(t.key, t.operator, t.effect) for t in spec.tolerations or []
                if t.key == "nvidia.com/gpu"] == [("nvidia.com/gpu", "Exists", "NoSchedule")]
        assert [r.name for r in spec.image_pull_secrets] == ["regcred"]
        assert spec.service_account_name == "model-reader"
        assert pod.metadata.labels["team"] == "fraud" and pod.metadata.annotations["example.com/owner"] == "ml"
        [container] = spec.containers
        assert {m.name: m.mount_path for m in container.volume_mounts} == {
            "scratch": "/var/lib/modelserver/tmp", "ca": "/etc/ca",
            FEEDBACK_KEY_VOLUME: FEEDBACK_KEY_DIR,  # the prediction-token key every version's pods mount
            MIRROR_VOLUME: MIRROR_DIR}  # and the mirror configuration (a shadow step's ConfigMap)
        assert container.security_context.read_only_root_filesystem is True
    # One PodDisruptionBudget per version, selecting that version's pods, gone with its version.
    for version in ("1", "2"):
        pdb = policy.read_namespaced_pod_disruption_budget(deployment_name("gpu", version), namespace)
        assert pdb.spec.max_unavailable == 1 and pdb.spec.selector.match_labels["modelrollout.dev/version"] == version
    s.command("promote")
    s.wait_phase("Healthy", 120)

    def budgets() -> list[str] | None:
        names = [p.metadata.name for p in policy.list_namespaced_pod_disruption_budget(namespace).items]
        return names if names == [deployment_name("gpu", "2")] else None

    wait_until(budgets, 90, "only version 2's PodDisruptionBudget left", describe=s.describe)


def test_a_job_runs_to_completion_and_its_termination_message_is_kept(cluster: ClusterHandle,
                                                                       namespace: str) -> None:
    """The validation gate reads a Job's result from its container's termination message."""
    batch = kubernetes.client.BatchV1Api(cluster.api)
    core = kubernetes.client.CoreV1Api(cluster.api)
    script = "import pathlib; pathlib.Path('/dev/termination-log').write_text('{\"passed\": true}'); print('done')"
    failing = "import sys; print('first words'); print('last words'); sys.exit(3)"
    for name, args, policy in (("ok", script, "File"), ("bad", failing, "FallbackToLogsOnError")):
        batch.create_namespaced_job(namespace, {"metadata": {"name": name}, "spec": {
            "backoffLimit": 0, "activeDeadlineSeconds": 60, "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "c", "image": "localcluster/python:test", "args": ["-c", args],
                                "terminationMessagePolicy": policy}]}}}})

    def terminated(job: str) -> Any:
        pods = core.list_namespaced_pod(namespace, label_selector=f"job-name={job}").items
        states = [s.state.terminated for p in pods for s in (p.status.container_statuses or [])]
        return next((t for t in states if t is not None), None)

    def pods() -> str:
        return "\n".join(f"{p.metadata.name}: {p.status.phase} {p.status.container_statuses}"
                         for p in core.list_namespaced_pod(namespace).items)

    wait_until(lambda: (batch.read_namespaced_job_status("ok", namespace).status.succeeded or 0) == 1, 90,
               "job ok succeeds", describe=pods)
    assert json.loads(terminated("ok").message) == {"passed": True}
    wait_until(lambda: (batch.read_namespaced_job_status("bad", namespace).status.failed or 0) == 1, 90,
               "job bad fails", describe=pods)
    bad = terminated("bad")
    assert bad.exit_code == 3 and bad.message.endswith("first words\nlast words")
