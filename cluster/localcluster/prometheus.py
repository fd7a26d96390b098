"""A real Prometheus as a pod of the local cluster, scraping the serving pods of its own namespace.

It discovers pods through kubernetes_sd (role pod) with in-cluster credentials: the kubelet mounts the
pod's ServiceAccount token and CA at /var/run/secrets/kubernetes.io/serviceaccount and sets
KUBERNETES_SERVICE_HOST/PORT, as on any cluster, and a Role lets that ServiceAccount list and watch
pods in the namespace, nothing more. Only pods of a ModelRollout (label modelrollout.dev/rollout) are
scraped, on their `http` port, with the `namespace` and `pod` target labels the operator's built-in
queries select on.

    python -m localcluster.prometheus --namespace ml | kubectl apply -f -   # then Service prometheus:9090
    python -m localcluster.prometheus --namespace monitoring --scrape-namespace ml | kubectl apply -f -
"""

from __future__ import annotations

import argparse
from typing import Any

import yaml

NAME = "prometheus"
PORT = 9090
IMAGE = "localcluster/prometheus:v3.16.0"
ROLLOUT_LABEL = "modelrollout.dev/rollout"


def scrape_config(scrape_namespace: str, scrape_interval: str,
                  operator_targets: tuple[str, ...] = ()) -> dict[str, Any]:
    config: dict[str, Any] = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": [{
            "job_name": "modelrollout-serving",
            "kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": [scrape_namespace]}}],
            "relabel_configs": [
                # Pods of a ModelRollout only, and only their serving port (named http by the operator) or
                # a server's own metrics port (named metrics: MLServer's 8082, Triton's 8002).
                {"source_labels": ["__meta_kubernetes_pod_label_modelrollout_dev_rollout"], "regex": ".+",
                 "action": "keep"},
                {"source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": "http|metrics",
                 "action": "keep"},
                {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                # Other servers' presets select a version by it (their own version labels do not name it).
                {"source_labels": ["__meta_kubernetes_pod_label_modelrollout_dev_version"],
                 "target_label": "rollout_version"},
            ],
        }],
    }
    if operator_targets:  # the operator's own /metrics (host:port), for its dashboard panels
        config["scrape_configs"].append({"job_name": "modelrollout-operator",
                                         "static_configs": [{"targets": list(operator_targets)}]})
    return config


def manifests(namespace: str, scrape_interval: str = "1s", scrape_namespace: str | None = None,
              operator_targets: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """ServiceAccount, Role + RoleBinding (pods: get, list, watch in the scraped namespace), config,
    Deployment and Service, in `namespace`; the pods scraped are those of `scrape_namespace` (default: the same)."""
    scraped = scrape_namespace or namespace
    labels = {"app": NAME}
    meta = {"name": NAME, "namespace": namespace, "labels": labels}
    # The Role lives where the pods are: it grants reading pods there and nowhere else.
    access = {"name": f"{NAME}-{namespace}" if scraped != namespace else NAME, "namespace": scraped, "labels": labels}
    config = yaml.safe_dump(scrape_config(scraped, scrape_interval, operator_targets), sort_keys=False)
    container = {
        "name": NAME, "image": IMAGE,
        "args": ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=data",
                 f"--web.listen-address=$(POD_IP):{PORT}", "--storage.tsdb.retention.time=1h"],
        "ports": [{"name": "web", "containerPort": PORT}],
        "readinessProbe": {"httpGet": {"path": "/-/ready", "port": "web"}, "periodSeconds": 1},
        "volumeMounts": [{"name": "config", "mountPath": "/etc/prometheus", "readOnly": True}],
    }
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": access,
         "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": access,
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": access["name"]},
         "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": namespace}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"prometheus.yml": config}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": {
            "replicas": 1, "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {
                "serviceAccountName": NAME, "containers": [container], "terminationGracePeriodSeconds": 5,
                "volumes": [{"name": "config", "configMap": {"name": NAME}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": {
            "selector": labels, "ports": [{"name": "web", "port": PORT, "targetPort": "web"}]}},
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description="Print the manifests of a Prometheus pod for the local cluster.")
    parser.add_argument("--namespace", required=True, help="where it runs and which pods it scrapes")
    parser.add_argument("--scrape-namespace", help="whose ModelRollout pods it scrapes (default: --namespace)")
    parser.add_argument("--scrape-interval", default="1s")
    args = parser.parse_args()
    print(yaml.safe_dump_all(manifests(args.namespace, args.scrape_interval, args.scrape_namespace),
                             sort_keys=False), end="")


if __name__ == "__main__":
    main()
