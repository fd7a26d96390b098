"""The manifest of a validation Job (spec.validation), a pure function of the typed spec and the two model
records, and how its state is read back. The Job runs the serving image's `modelserver validate`
(modelserver/validation), which loads both model files itself, checks the holdout and writes its JSON
result to /dev/termination-log; the operator reads it from the pod's status, needing no extra permission.
"""

from __future__ import annotations

import json
from typing import Any

from modelrollout.core.observations import ValidationJobIntent, ValidationJobObservation
from modelrollout.core.serving import SCRATCH_PATH, SCRATCH_VOLUME
from modelrollout.core.spec import RolloutSpec, ValidationSpec
from modelrollout.core.status import ModelRecord
from modelrollout.workloads import CONTAINER_SECURITY, DEFAULT_SERVING_IMAGE, MANAGED_BY, owner_reference

LABEL_VALIDATION = "modelrollout.dev/validation"  # the rollout a validation Job belongs to
HOLDOUT_PATH = "/var/run/modelrollout/holdout"
TERMINATION_LOG = "/dev/termination-log"
# Bounded like any batch work on a shared cluster; the holdout and two models fit in this.
RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
FINISHED_TTL_SECONDS = 3600  # the finished Job (and its pod's result) stays an hour for `kubectl logs`


def _model_args(role: str, model: ModelRecord) -> list[str]:
    args = [f"--{role}", model.uri]
    if model.digest:
        args += [f"--{role}-digest", model.digest]
    if model.format:
        args += [f"--{role}-format", model.format]
    if model.allow_pickle:
        args.append(f"--{role}-allow-pickle")
    return args


def _data_args(validation: ValidationSpec) -> list[str]:
    if validation.url is not None:
        return ["--data", validation.url, "--data-sha256", validation.sha256 or ""]
    return ["--data", f"{HOLDOUT_PATH}/{validation.key}"]


def validation_job(rollout: dict[str, Any], spec: RolloutSpec, intent: ValidationJobIntent) -> dict[str, Any]:
    """The Job of one validation run, owned (and garbage-collected) by the rollout."""
    validation = spec.validation
    assert validation is not None
    meta = rollout["metadata"]
    labels = {LABEL_VALIDATION: meta["name"], **MANAGED_BY}
    mounts: list[dict[str, Any]] = [{"name": SCRATCH_VOLUME, "mountPath": SCRATCH_PATH}]
    container = {
        "name": "validate", "image": spec.serving.image or DEFAULT_SERVING_IMAGE,
        "args": ["validate", *_model_args("baseline", intent.stable), *_model_args("candidate", intent.candidate),
                 *_data_args(validation), "--config-json", json.dumps(dict(validation.checks), sort_keys=True),
                 "--termination-log", TERMINATION_LOG],
        "env": [{"name": "TMPDIR", "value": SCRATCH_PATH}],
        "resources": RESOURCES, "securityContext": CONTAINER_SECURITY,
        # A usage error or a crash writes no result: the tail of its log becomes the message instead.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": mounts,
    }
    volumes: list[dict[str, Any]] = [{"name": SCRATCH_VOLUME, "emptyDir": {"sizeLimit": "1Gi"}}]
    if validation.config_map is not None:
        volumes.append({"name": "holdout", "configMap": {"name": validation.config_map,
                                                         "items": [{"key": validation.key, "path": validation.key}]}})
        mounts.append({"name": "holdout", "mountPath": HOLDOUT_PATH, "readOnly": True})
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": intent.name, "namespace": meta["namespace"], "labels": labels,
                     "ownerReferences": [owner_reference(rollout)]},
        "spec": {
            "backoffLimit": 0,  # the same data and models give the same verdict: no retries
            "activeDeadlineSeconds": validation.timeout_seconds,
            "ttlSecondsAfterFinished": FINISHED_TTL_SECONDS,
            "template": {"metadata": {"labels": labels}, "spec": {
                "restartPolicy": "Never", "containers": [container], "volumes": volumes,
                "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                "automountServiceAccountToken": False,
            }},
        },
    }


WAITING_AS_USUAL = (None, "", "ContainerCreating", "PodInitializing")


def job_observation(name: str, job: Any | None, pods: list[Any]) -> ValidationJobObservation:
    """What the Job and its pod say: finished (Complete or Failed), the termination message, why it waits."""
    if job is None:
        return ValidationJobObservation(name=name, exists=False)
    conditions = {c.type: c for c in (job.status.conditions or []) if c.status == "True"}
    failed = conditions.get("Failed")
    finished = "Complete" in conditions or failed is not None
    result, waiting = None, ""
    for pod in pods:
        for status in pod.status.container_statuses or []:
            state = status.state
            if state is not None and state.terminated is not None and state.terminated.message:
                result = state.terminated.message
            elif state is not None and state.waiting is not None and state.waiting.reason not in WAITING_AS_USUAL:
                waiting = f"pod {pod.metadata.name} waits: {state.waiting.reason} {state.waiting.message or ''}"
    failure = "" if failed is None else (failed.reason or "Failed")
    return ValidationJobObservation(name=name, finished=finished, result=result, waiting=waiting, failure=failure)
