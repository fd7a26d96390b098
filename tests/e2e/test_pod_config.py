"""What a kubelet gives a container: env from ConfigMaps/Secrets/downward API, volumes as files,
and liveness probes that restart it."""

from __future__ import annotations

import base64

import kubernetes
import pytest

from localcluster.testing import wait_until
from localcluster.traffic import pod_log
from tests.conftest import ClusterHandle

pytestmark = pytest.mark.e2e

PRINTER = """
import os, pathlib
for key in ("FROM_CM", "FROM_SECRET", "PREFIX_color", "MY_NS", "MY_APP", "EXPANDED"):
    print(f"{key}={os.environ.get(key)}")
for path in ("/etc/cfg/color", "/etc/secret/token", "/etc/info/labels", "/scratch"):
    p = pathlib.Path(path)
    print(f"{path}=" + (p.read_text().strip() if p.is_file() else str(p.is_dir())))
"""


def test_env_and_volumes_come_from_configmaps_secrets_and_the_downward_api(
        cluster: ClusterHandle, namespace: str) -> None:
    core = kubernetes.client.CoreV1Api(cluster.api)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "cfg"}, "data": {"color": "blue"}})
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
                 "MY_APP=env-test", f"EXPANDED=ns-{namespace}", "/etc/cfg/color=blue", "/etc/secret/token=s3cret",
                 '/etc/info/labels=app="env-test"', "/scratch=True"):
        assert line in out, out


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
