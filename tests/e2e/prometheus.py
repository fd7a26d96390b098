"""A real Prometheus pod on the local cluster (localcluster.prometheus) for the tests, and promtool."""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request
from typing import Any

import kubernetes

from localcluster import prometheus as local_prometheus
from localcluster.binaries import prometheus_binary
from localcluster.testing import apply_manifest, wait_until
from tests.conftest import ClusterHandle


class PrometheusPod:
    """The Prometheus Deployment of one namespace; `address` is its Service's cluster IP URL."""

    def __init__(self, cluster: ClusterHandle, namespace: str, scrape_namespace: str | None = None,
                 operator_targets: tuple[str, ...] = ()) -> None:
        prometheus_binary("prometheus")  # a missing build fails here, saying `make prom-bins`
        self.cluster, self.namespace = cluster, namespace
        for obj in local_prometheus.manifests(namespace, scrape_namespace=scrape_namespace,
                                              operator_targets=operator_targets):
            apply_manifest(cluster.api, obj, obj["metadata"]["namespace"])
        svc = kubernetes.client.CoreV1Api(cluster.api).read_namespaced_service(local_prometheus.NAME, namespace)
        self.address = f"http://{svc.spec.cluster_ip}:{local_prometheus.PORT}"
        self.wait_ready()

    def _scale(self, replicas: int) -> None:
        kubernetes.client.AppsV1Api(self.cluster.api).patch_namespaced_deployment_scale(
            local_prometheus.NAME, self.namespace, {"spec": {"replicas": replicas}})

    def wait_ready(self) -> None:
        apps = kubernetes.client.AppsV1Api(self.cluster.api)
        wait_until(lambda: (apps.read_namespaced_deployment(local_prometheus.NAME, self.namespace).status
                            .ready_replicas or 0) >= 1, 60, "the Prometheus pod to be Ready", interval=0.5)

    def stop(self) -> None:
        """Scale to 0 and wait until no Prometheus pod is left: every query then fails to connect."""
        self._scale(0)
        core = kubernetes.client.CoreV1Api(self.cluster.api)
        wait_until(lambda: not core.list_namespaced_pod(self.namespace, label_selector="app=prometheus").items,
                   60, "the Prometheus pod to be gone", interval=0.5)

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"{self.address}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(url, timeout=5) as response:
            return list(json.load(response)["data"]["result"])


def promtool_check_metrics(text: str) -> subprocess.CompletedProcess[str]:
    """`promtool check metrics` over one /metrics page: its exit code and what it complained about."""
    return subprocess.run([str(prometheus_binary("promtool")), "check", "metrics"], input=text,
                          capture_output=True, text=True, timeout=60)
