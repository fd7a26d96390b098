"""`spec.serving`: the serving pods' settings, as typed, frozen values (parsed once, like the rest of the spec).

`podTemplate` is a fragment of a pod template (the names of `PodTemplateSpec`, as in an Argo Rollouts
`template` or a KServe predictor) merged into every version's Deployment. What the operator sets wins:
its labels, the model's environment, the scratch volume and the restricted security context.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelrollout.core.observations import LABEL_ROLLOUT, LABEL_VERSION
from modelrollout.core.servermetrics import ServerMetrics

# The pod spec fields a user may set; anything else (containers, securityContext, hostNetwork...) is the operator's.
POD_SPEC_FIELDS = ("nodeSelector", "tolerations", "affinity", "topologySpreadConstraints", "imagePullSecrets",
                   "serviceAccountName", "priorityClassName", "volumes")
OPERATOR_LABELS = (LABEL_ROLLOUT, LABEL_VERSION)
SCRATCH_VOLUME = "scratch"  # the emptyDir behind the read-only root filesystem (workloads.py)
SCRATCH_PATH = "/var/lib/modelserver/tmp"
# Requests that schedule a small scikit-learn server sensibly; memory is limited so one leaking pod
# cannot starve its node, CPU is not (throttling would show up as latency in the analysis).
DEFAULT_RESOURCES: Mapping[str, Any] = {"requests": {"cpu": "250m", "memory": "512Mi"},
                                        "limits": {"memory": "2Gi"}}
DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"


@dataclass(frozen=True)
class PodTemplate:
    """The user's part of every serving pod: labels, annotations and the fields of POD_SPEC_FIELDS."""

    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    spec: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DisruptionBudget:
    """A PodDisruptionBudget per version: exactly one of the two, an int or a percentage."""

    max_unavailable: int | str | None = None
    min_available: int | str | None = None


@dataclass(frozen=True)
class ServingSpec:
    """Pod template details; resources and env are passed to the Deployment unchanged."""

    image: str | None = None
    port: int = 8080
    resources: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_RESOURCES))
    env: tuple[Mapping[str, Any], ...] = ()
    volume_mounts: tuple[Mapping[str, Any], ...] = ()
    pod_template: PodTemplate = PodTemplate()
    disruption_budget: DisruptionBudget | None = None
    metrics: ServerMetrics = field(default_factory=ServerMetrics)  # the metric names the analysis reads

    @property
    def metrics_port(self) -> int:
        """The port the pods expose /metrics on (MLServer and Triton use one of their own)."""
        return self.metrics.port if self.metrics.port is not None else self.port


def parse_serving(d: Mapping[str, Any]) -> ServingSpec:
    where = "spec.serving"
    image, port = d.get("image"), d.get("port", ServingSpec.port)
    if image is not None and (not isinstance(image, str) or not image):
        raise ValueError(f"{where}.image: must be a non-empty string")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"{where}.port: must be an integer in [1, 65535], got {port!r}")
    template = _pod_template(_object(d.get("podTemplate"), f"{where}.podTemplate"))
    mounts = tuple(_object(m, f"{where}.volumeMounts[{i}]") for i, m in enumerate(_list(d.get("volumeMounts"),
                                                                                         f"{where}.volumeMounts")))
    _check_mounts(mounts, template)
    budget = d.get("podDisruptionBudget")
    return ServingSpec(
        image=image, port=port,
        resources=dict(d["resources"]) if d.get("resources") is not None else dict(DEFAULT_RESOURCES),
        env=tuple(d.get("env") or ()), volume_mounts=mounts, pod_template=template,
        disruption_budget=None if budget is None else _budget(_object(budget, f"{where}.podDisruptionBudget")),
        metrics=ServerMetrics.from_spec(d.get("metrics"), f"{where}.metrics"),
    )


def _object(value: Any, name: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{name}: must be an object")
    return value


def _list(value: Any, name: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{name}: must be a list")
    return value


def _strings(value: Any, name: str) -> dict[str, str]:
    mapping = _object(value, name)
    if not all(isinstance(v, str) for v in mapping.values()):
        raise ValueError(f"{name}: values must be strings")
    return dict(mapping)


def _pod_template(d: Mapping[str, Any]) -> PodTemplate:
    where = "spec.serving.podTemplate"
    meta = _object(d.get("metadata"), f"{where}.metadata")
    labels = _strings(meta.get("labels"), f"{where}.metadata.labels")
    taken = sorted(set(labels) & set(OPERATOR_LABELS))
    if taken:
        raise ValueError(f"{where}.metadata.labels: {', '.join(taken)} is set by the operator")
    spec = dict(_object(d.get("spec"), f"{where}.spec"))
    unknown = sorted(set(spec) - set(POD_SPEC_FIELDS))
    if unknown:
        raise ValueError(f"{where}.spec: {', '.join(unknown)} cannot be set (allowed: {', '.join(POD_SPEC_FIELDS)})")
    account = spec.get("serviceAccountName")
    if account is not None and not (isinstance(account, str) and re.fullmatch(DNS_SUBDOMAIN, account)):
        raise ValueError(f"{where}.spec.serviceAccountName: {account!r} is not a valid name")
    for i, toleration in enumerate(_list(spec.get("tolerations"), f"{where}.spec.tolerations")):
        operator = toleration.get("operator", "Equal") if isinstance(toleration, Mapping) else None
        if operator not in ("Equal", "Exists"):
            raise ValueError(f"{where}.spec.tolerations[{i}].operator: {operator!r} is not Equal or Exists")
    names = [v.get("name") for v in _list(spec.get("volumes"), f"{where}.spec.volumes") if isinstance(v, Mapping)]
    if SCRATCH_VOLUME in names:
        raise ValueError(f"{where}.spec.volumes: the name {SCRATCH_VOLUME!r} is the operator's scratch volume")
    return PodTemplate(labels=labels, annotations=_strings(meta.get("annotations"), f"{where}.metadata.annotations"),
                       spec=spec)


def _check_mounts(mounts: tuple[Mapping[str, Any], ...], template: PodTemplate) -> None:
    volumes = {v.get("name") for v in template.spec.get("volumes") or ()}
    for i, mount in enumerate(mounts):
        where = f"spec.serving.volumeMounts[{i}]"
        if mount.get("name") not in volumes:
            raise ValueError(f"{where}.name: {mount.get('name')!r} is not a volume of spec.serving.podTemplate.spec")
        if str(mount.get("mountPath", "")).rstrip("/") == SCRATCH_PATH:
            raise ValueError(f"{where}.mountPath: {SCRATCH_PATH} is the operator's scratch directory")


def _budget(d: Mapping[str, Any]) -> DisruptionBudget:
    where = "spec.serving.podDisruptionBudget"
    if ("maxUnavailable" in d) == ("minAvailable" in d):
        raise ValueError(f"{where}: set exactly one of maxUnavailable or minAvailable")
    key = "maxUnavailable" if "maxUnavailable" in d else "minAvailable"
    value = d[key]
    ok = (isinstance(value, int) and not isinstance(value, bool) and value >= 0) or (
        isinstance(value, str) and re.fullmatch(r"[0-9]{1,3}%", value) is not None)
    if not ok:
        raise ValueError(f"{where}.{key}: must be a count >= 0 or a percentage such as '50%', got {value!r}")
    return DisruptionBudget(**{"max_unavailable" if key == "maxUnavailable" else "min_available": value})
