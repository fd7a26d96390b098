"""Manifests of what the operator owns: one Deployment per model version and the Services.

Pure functions of the rollout's spec (as a dict) - the adapter layer sends them. A version's pod
template never changes once created, so promoting a version never restarts its pods: the
Deployment of the canary simply becomes the stable one.
"""

from __future__ import annotations

import re
from typing import Any

from modelrollout.core.observations import LABEL_ROLLOUT, LABEL_VERSION
from modelrollout.core.status import ModelRecord

DEFAULT_SERVING_IMAGE = "ghcr.io/modelrollout/modelserver:0.1.0"
SCRATCH = "/var/lib/modelserver/tmp"
MANAGED_BY = {"app.kubernetes.io/managed-by": "modelrollout"}
# Restricted Pod Security profile: non-root, read-only root filesystem, nothing extra.
CONTAINER_SECURITY = {
    "runAsNonRoot": True, "runAsUser": 65532, "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def deployment_name(rollout: str, version: str) -> str:
    """`fraud` version `2.1_b` -> `fraud-v2-1-b` (a DNS-1123 name, at most 63 characters).

    >>> deployment_name("fraud", "2.1_b")
    'fraud-v2-1-b'
    """
    slug = re.sub(r"[^a-z0-9-]+", "-", version.lower()).strip("-") or "x"
    return f"{rollout}-v{slug}"[:63].rstrip("-")


def _model_env(name: str, model: ModelRecord, port: int) -> list[dict[str, Any]]:
    env = [
        {"name": "MODEL_NAME", "value": name},
        {"name": "MODEL_VERSION", "value": model.version},
        {"name": "MODEL_URI", "value": model.uri},
        {"name": "PORT", "value": str(port)},
    ]
    if model.digest:
        env.append({"name": "MODEL_DIGEST", "value": model.digest})
    if model.format:
        env.append({"name": "MODEL_FORMAT", "value": model.format})
    if model.allow_pickle:
        env.append({"name": "MODEL_ALLOW_PICKLE", "value": "true"})
    return env


def serving_container(spec: dict[str, Any], model: ModelRecord) -> dict[str, Any]:
    serving = spec.get("serving") or {}
    port = int(serving.get("port", 8080))
    extra = [e for e in serving.get("env") or [] if e.get("name") not in {"MODEL_NAME", "MODEL_VERSION"}]
    extra.append({"name": "TMPDIR", "value": SCRATCH})
    features = (spec.get("model") or {}).get("features") or []
    if features and (spec.get("model") or {}).get("version") == model.version:
        extra.append({"name": "MODEL_FEATURES", "value": str(len(features))})
    probe = {"port": "http", "path": "/v2/health/ready"}
    return {
        "name": "modelserver",
        "image": serving.get("image") or DEFAULT_SERVING_IMAGE,
        "env": _model_env(str((spec.get("model") or {}).get("name", "model")), model, port) + extra,
        "ports": [{"name": "http", "containerPort": port}],
        "readinessProbe": {"httpGet": probe, "periodSeconds": 1, "failureThreshold": 2},
        "livenessProbe": {"httpGet": {"port": "http", "path": "/v2/health/live"}, "periodSeconds": 5,
                          "failureThreshold": 6},
        "resources": dict(serving.get("resources") or {}),
        "securityContext": CONTAINER_SECURITY,
        # The root filesystem is read-only; a model fetched over HTTP is downloaded here first.
        "volumeMounts": [{"name": "scratch", "mountPath": SCRATCH}],
    }


def deployment(rollout: dict[str, Any], model: ModelRecord, replicas: int) -> dict[str, Any]:
    """The Deployment of one model version, owned (and garbage-collected) by the rollout."""
    meta = rollout["metadata"]
    labels = {LABEL_ROLLOUT: meta["name"], LABEL_VERSION: model.version}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "name": deployment_name(meta["name"], model.version), "namespace": meta["namespace"],
            "labels": {**labels, **MANAGED_BY}, "ownerReferences": [owner_reference(rollout)],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            # Within one version, capacity never dips during its own updates either.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [serving_container(rollout["spec"], model)],
                    "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}}],
                    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": 30,
                },
            },
        },
    }


def service(rollout: dict[str, Any], name: str, port: int, target_port: int,
            selector: dict[str, str]) -> dict[str, Any]:
    meta = rollout["metadata"]
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": meta["namespace"], "labels": {LABEL_ROLLOUT: meta["name"],
                     **MANAGED_BY}, "ownerReferences": [owner_reference(rollout)]},
        "spec": {"selector": selector,
                 "ports": [{"name": "http", "port": port, "targetPort": target_port, "protocol": "TCP"}]},
    }


def owner_reference(rollout: dict[str, Any]) -> dict[str, Any]:
    meta = rollout["metadata"]
    return {"apiVersion": rollout["apiVersion"], "kind": rollout["kind"], "name": meta["name"],
            "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}
