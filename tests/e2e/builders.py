"""Builders for the objects the data-plane tests create (instead of YAML copied between tests)."""

from __future__ import annotations

from typing import Any

ECHO_IMAGE = "localcluster/python:test"


def echo_container(env: dict[str, str] | None = None, readiness_path: str = "/",
                   liveness: bool = False) -> dict[str, Any]:
    probe = {"httpGet": {"path": readiness_path, "port": "http"}, "periodSeconds": 1, "failureThreshold": 1}
    container: dict[str, Any] = {
        "name": "web",
        "image": ECHO_IMAGE,
        "args": ["-m", "localcluster.echo"],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                *({"name": k, "value": v} for k, v in (env or {}).items())],
        "ports": [{"containerPort": 8080, "name": "http"}],
        "readinessProbe": probe,
    }
    if liveness:
        container["livenessProbe"] = {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1}
    return container


def deployment(name: str, replicas: int, labels: dict[str, str], container: dict[str, Any] | None = None,
               max_unavailable: int | str = "25%", max_surge: int | str = "25%") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxUnavailable": max_unavailable, "maxSurge": max_surge}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [container or echo_container()], "terminationGracePeriodSeconds": 10},
            },
        },
    }


def service(name: str, selector: dict[str, str], port: int = 80) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"selector": selector, "ports": [{"name": "http", "port": port, "targetPort": "http"}]},
    }
