"""The serving image on the local cluster: Ready, serves through its Service, scrapeable by a pod."""

from __future__ import annotations

from typing import Any

import kubernetes
import pytest

from localcluster.testing import apply_manifest, wait_until
from localcluster.traffic import pod_log, send_requests
from tests.conftest import ClusterHandle
from tests.e2e.builders import service

pytestmark = pytest.mark.e2e

SCRAPER = """
import sys, urllib.request
text = urllib.request.urlopen(f"http://{sys.argv[1]}:8080/metrics", timeout=5).read().decode()
print("\\n".join(line for line in text.splitlines() if line.startswith("modelserver_requests_total")))
"""


def test_served_model_answers_through_its_service_and_is_scraped_by_another_pod(
        cluster: ClusterHandle, namespace: str, models: dict[str, Any]) -> None:
    lr = models["models"]["lr-skops"]
    labels = {"app": "iris"}
    container = {
        "name": "server", "image": "ghcr.io/modelrollout/modelserver:0.1.0",
        "env": [{"name": "MODEL_NAME", "value": "iris"}, {"name": "MODEL_VERSION", "value": "1"},
                {"name": "MODEL_URI", "value": f"file://{models['dir']}/{lr['file']}"},
                {"name": "MODEL_DIGEST", "value": lr["digest"]}],
        "ports": [{"containerPort": 8080, "name": "http"}],
        "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": "http"}, "periodSeconds": 1},
    }
    apply_manifest(cluster.api, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "iris"},
                                 "spec": {"replicas": 2, "selector": {"matchLabels": labels}, "template": {
                                     "metadata": {"labels": labels}, "spec": {"containers": [container]}}}},
                   namespace)
    apply_manifest(cluster.api, service("iris", labels), namespace)
    apps, core = kubernetes.client.AppsV1Api(cluster.api), kubernetes.client.CoreV1Api(cluster.api)
    wait_until(lambda: apps.read_namespaced_deployment("iris", namespace).status.ready_replicas == 2, 90,
               "2 Ready model-server pods", describe=lambda: cluster.kubectl("get", "pods", "-n", namespace))
    ip = core.read_namespaced_service("iris", namespace).spec.cluster_ip
    row = models["holdout"]["X"][0]
    body = {"inputs": [{"name": "x", "shape": [1, len(row)], "datatype": "FP64", "data": row}]}
    report = send_requests(f"http://{ip}/v2/models/iris/infer", 40, method="POST", body=body)
    assert report.statuses == {200: 40}, report

    target = core.list_namespaced_pod(namespace, label_selector="app=iris").items[0].status.pod_ip
    core.create_namespaced_pod(namespace, {"metadata": {"name": "scraper"}, "spec": {
        "restartPolicy": "Never",
        "containers": [{"name": "c", "image": "localcluster/python:test", "args": ["-c", SCRAPER, target]}]}})
    wait_until(lambda: core.read_namespaced_pod("scraper", namespace).status.phase == "Succeeded", 60, "scraper")
    scraped = pod_log(cluster.workdir / "kubelet", namespace, "scraper", "c")
    assert 'modelserver_requests_total{' in scraped and 'model="iris"' in scraped and 'code="200"' in scraped, scraped
