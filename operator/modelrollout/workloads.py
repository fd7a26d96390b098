"""Manifests of what the operator owns: one Deployment per model version and the Services.

Pure functions of the rollout's typed spec (parsed once per tick) - the adapter layer sends them. A version's pod
template never changes once created, so promoting a version never restarts its pods: the
Deployment of the canary simply becomes the stable one.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from typing import Any

from modelrollout.core.observations import LABEL_ROLLOUT, LABEL_VERSION
from modelrollout.core.serving import SCRATCH_PATH, SCRATCH_VOLUME, ServingSpec
from modelrollout.core.spec import RolloutSpec
from modelrollout.core.status import ModelRecord

# A version of lower-case letters and digits only names its Deployment as is. Every other name ends
# in "-<hash>", which a plain one cannot (it has no dash after "-v"), so the two kinds never meet.
PLAIN_VERSION = re.compile(r"[a-z0-9]+")
DEFAULT_SERVING_IMAGE = "ghcr.io/modelrollout/modelserver:0.1.0"
MANAGED_BY = {"app.kubernetes.io/managed-by": "modelrollout"}
# Restricted Pod Security profile: non-root, read-only root filesystem, nothing extra.
CONTAINER_SECURITY = {
    "runAsNonRoot": True, "runAsUser": 65532, "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


# The rollout's prediction-token key (docs/metrics.md): one Secret per rollout, mounted read-only by the
# pods of every version, so a label is verified and counted on whichever pod of the rollout receives it.
FEEDBACK_KEY_VOLUME = "modelrollout-feedback-key"
FEEDBACK_KEY_DIR = "/var/run/modelrollout/feedback-key"
FEEDBACK_KEY_ITEM = "key"


# The rollout's mirror configuration (docs/metrics.md, "Mirroring to a shadow candidate"): one ConfigMap per
# rollout, mounted by the pods of every version from their start (optional: it exists only once a rollout has
# a shadow step), so turning mirroring on or off changes the file, never a pod template: no pod restarts.
MIRROR_VOLUME = "modelrollout-mirror"
MIRROR_DIR = "/var/run/modelrollout/mirror"
MIRROR_ITEM = "mirror.yaml"  # core.shadowstep.MIRROR_CONFIG_KEY


def mirror_config_map_name(rollout: str) -> str:
    """`fraud` -> `fraud-mirror`."""
    return f"{rollout}-mirror"


def mirror_config_map(rollout: dict[str, Any], data: dict[str, str]) -> dict[str, Any]:
    """The mirror ConfigMap with `data` (core.shadowstep.mirror_intent), owned by the rollout."""
    meta = rollout["metadata"]
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": mirror_config_map_name(meta["name"]), "namespace": meta["namespace"],
                     "labels": {LABEL_ROLLOUT: meta["name"], **MANAGED_BY},
                     "ownerReferences": [owner_reference(rollout)]},
        "data": dict(data),
    }


def feedback_key_secret_name(rollout: str) -> str:
    """`fraud` -> `fraud-feedback-key` (Secret names may be 253 characters; rollout names are DNS-1123)."""
    return f"{rollout}-feedback-key"


def feedback_key_secret(rollout: dict[str, Any], key: bytes | None = None) -> dict[str, Any]:
    """The Secret holding a fresh random 32-byte key, owned (and garbage-collected) by the rollout.

    Applied once, when it is missing: a key is never rotated under a running rollout, as tokens already
    handed out must keep verifying.
    """
    meta = rollout["metadata"]
    raw = key if key is not None else os.urandom(32)
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": feedback_key_secret_name(meta["name"]), "namespace": meta["namespace"],
                     "labels": {LABEL_ROLLOUT: meta["name"], **MANAGED_BY},
                     "ownerReferences": [owner_reference(rollout)]},
        "data": {FEEDBACK_KEY_ITEM: base64.b64encode(raw).decode()},
    }


def deployment_name(rollout: str, version: str) -> str:
    """The Deployment of one version: a DNS-1123 name of at most 63 characters, distinct per version.

    A version of lower-case letters and digits keeps it (`fraud` version `2` -> `fraud-v2`). Any other
    (upper case, `.`/`_`/`-`, or too long) gets a readable prefix plus a hash of the exact version, so
    `rc1`/`RC1` or `2.1`/`2-1` never share a Deployment (they did when names were slugs cut at 63).

    >>> deployment_name("fraud", "2")
    'fraud-v2'
    >>> deployment_name("fraud", "2.1_b")
    'fraud-v2-1-b-58197a42'
    """
    plain = f"{rollout}-v{version}"
    if PLAIN_VERSION.fullmatch(version) and len(plain) <= 63:
        return plain
    digest = hashlib.sha256(version.encode()).hexdigest()[:8]
    slug = re.sub(r"[^a-z0-9-]+", "-", version.lower()).strip("-")
    readable = f"{rollout}-v{slug}"[: 63 - len(digest) - 1].rstrip("-")
    return f"{readable}-{digest}"


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
    if model.drift_reference_digest:
        env.append({"name": "MODELSERVER_DRIFT_REFERENCE_DIGEST", "value": model.drift_reference_digest})
    return env


def _ports(serving: ServingSpec) -> list[dict[str, Any]]:
    """The serving port, and a server's own metrics port (MLServer 8082, Triton 8002) named `metrics`
    so that a PodMonitor or kubernetes_sd job can select it.

    >>> from modelrollout.core.servermetrics import ServerMetrics
    >>> _ports(ServingSpec(metrics=ServerMetrics.from_spec({"preset": "mlserver"})))
    [{'name': 'http', 'containerPort': 8080}, {'name': 'metrics', 'containerPort': 8082}]
    """
    ports = [{"name": "http", "containerPort": serving.port}]
    if serving.metrics_port != serving.port:
        ports.append({"name": "metrics", "containerPort": serving.metrics_port})
    return ports


def serving_container(spec: RolloutSpec, model: ModelRecord) -> dict[str, Any]:
    serving = spec.serving
    port = serving.port
    extra = [dict(e) for e in serving.env if e.get("name") not in {"MODEL_NAME", "MODEL_VERSION"}]
    extra.append({"name": "TMPDIR", "value": SCRATCH_PATH})
    extra.append({"name": "MODELSERVER_FEEDBACK_KEY_FILE", "value": f"{FEEDBACK_KEY_DIR}/{FEEDBACK_KEY_ITEM}"})
    extra.append({"name": "MODELSERVER_MIRROR_CONFIG", "value": f"{MIRROR_DIR}/{MIRROR_ITEM}"})
    # The feature names describe the model spec names; an older version keeps its own input shape.
    if spec.model.features and spec.model.version == model.version:
        extra.append({"name": "MODEL_FEATURES", "value": str(len(spec.model.features))})
    probe = {"port": "http", "path": "/v2/health/ready"}
    return {
        "name": "modelserver",
        "image": serving.image or DEFAULT_SERVING_IMAGE,
        "env": _model_env(spec.model.name, model, port) + extra,
        "ports": _ports(serving),
        "readinessProbe": {"httpGet": probe, "periodSeconds": 1, "failureThreshold": 2},
        "livenessProbe": {"httpGet": {"port": "http", "path": "/v2/health/live"}, "periodSeconds": 5,
                          "failureThreshold": 6},
        "resources": dict(serving.resources),
        "securityContext": CONTAINER_SECURITY,
        # The root filesystem is read-only; a model fetched over HTTP is downloaded here first.
        "volumeMounts": [{"name": SCRATCH_VOLUME, "mountPath": SCRATCH_PATH},
                         {"name": FEEDBACK_KEY_VOLUME, "mountPath": FEEDBACK_KEY_DIR, "readOnly": True},
                         {"name": MIRROR_VOLUME, "mountPath": MIRROR_DIR, "readOnly": True},
                         *(dict(m) for m in serving.volume_mounts)],
    }


def deployment(rollout: dict[str, Any], spec: RolloutSpec, model: ModelRecord, replicas: int) -> dict[str, Any]:
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
            "template": pod_template(spec.serving, labels, serving_container(spec, model),
                                     feedback_key_secret_name(meta["name"]), mirror_config_map_name(meta["name"])),
        },
    }


def pod_template(serving: ServingSpec, labels: dict[str, str], container: dict[str, Any],
                 key_secret: str | None = None, mirror_config: str | None = None) -> dict[str, Any]:
    """`serving.podTemplate` with the operator's part on top: its labels (the selectors depend on
    them), its container (the model env, the read-only root) and the pod security settings win;
    the user's volumes come after the scratch volume, the rollout's feedback-key Secret and mirror ConfigMap.

    >>> from modelrollout.core.serving import PodTemplate
    >>> t = pod_template(ServingSpec(pod_template=PodTemplate(labels={"team": "ml"},
    ...                  spec={"nodeSelector": {"gpu": "a100"}})), {"app": "x"}, {"name": "c"})
    >>> t["metadata"], t["spec"]["nodeSelector"]
    ({'labels': {'team': 'ml', 'app': 'x'}}, {'gpu': 'a100'})
    """
    user = serving.pod_template
    metadata: dict[str, Any] = {"labels": {**user.labels, **labels}}
    if user.annotations:
        metadata["annotations"] = dict(user.annotations)
    volumes = [{"name": SCRATCH_VOLUME, "emptyDir": {"sizeLimit": "1Gi"}}]
    if key_secret is not None:
        volumes.append({"name": FEEDBACK_KEY_VOLUME, "secret": {
            "secretName": key_secret, "defaultMode": 0o444,
            "items": [{"key": FEEDBACK_KEY_ITEM, "path": FEEDBACK_KEY_ITEM}]}})
    if mirror_config is not None:
        volumes.append({"name": MIRROR_VOLUME, "configMap": {
            "name": mirror_config, "optional": True, "defaultMode": 0o444,
            "items": [{"key": MIRROR_ITEM, "path": MIRROR_ITEM}]}})
    volumes += [dict(v) for v in user.spec.get("volumes") or ()]
    return {"metadata": metadata, "spec": {
        **{k: v for k, v in user.spec.items() if k != "volumes"},
        "containers": [container],
        "volumes": volumes,
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        # The token is not mounted: the model server never calls the API (a projected
        # serviceAccountToken volume in podTemplate gives one to a server that needs it).
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 30,
    }}


def disruption_budget(rollout: dict[str, Any], spec: RolloutSpec, name: str, version: str) -> dict[str, Any] | None:
    """The PodDisruptionBudget of one version (named as its Deployment), if spec asks for one."""
    budget = spec.serving.disruption_budget
    if budget is None:
        return None
    meta = rollout["metadata"]
    labels = {LABEL_ROLLOUT: meta["name"], LABEL_VERSION: version}
    limit = ({"maxUnavailable": budget.max_unavailable} if budget.max_unavailable is not None
             else {"minAvailable": budget.min_available})
    return {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": meta["namespace"], "labels": {**labels, **MANAGED_BY},
                     "ownerReferences": [owner_reference(rollout)]},
        "spec": {"selector": {"matchLabels": labels}, **limit},
    }


def deployment_scale(rollout: dict[str, Any], name: str, version: str, replicas: int) -> dict[str, Any]:
    """What the operator applies to a version's existing Deployment on top of what it applied
    before: its labels, its owner and the replicas (the template is never changed)."""
    meta = rollout["metadata"]
    labels = {LABEL_ROLLOUT: meta["name"], LABEL_VERSION: version}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": meta["namespace"], "labels": {**labels, **MANAGED_BY},
                     "ownerReferences": [owner_reference(rollout)]},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels}},
    }


def identity(fields: dict[str, Any], api_version: str, kind: str, name: str, namespace: str) -> dict[str, Any]:
    """`fields` (what a manager applied, from managedFields) as an object that can be applied again."""
    return merged({"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": namespace}},
                  fields)


def merged(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """`base` with `overlay` on top: maps merge key by key, anything else (lists too) is replaced.

    >>> merged({"a": {"x": 1, "y": 2}, "l": [1]}, {"a": {"y": 3}, "l": [2]})
    {'a': {'x': 1, 'y': 3}, 'l': [2]}
    """
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


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
