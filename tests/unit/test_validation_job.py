"""The validation Job: a bounded, non-root, read-only pod whose arguments the serving image's own
`modelserver validate` parser accepts, and how its status is read back."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes.client import (
    V1ContainerState,
    V1ContainerStateTerminated,
    V1ContainerStateWaiting,
    V1ContainerStatus,
    V1Job,
    V1JobCondition,
    V1JobStatus,
    V1ObjectMeta,
    V1Pod,
    V1PodStatus,
)

from modelrollout.core import RolloutSpec
from modelrollout.core.observations import ValidationJobIntent
from modelrollout.core.status import ModelRecord
from modelrollout.validationjob import HOLDOUT_PATH, TERMINATION_LOG, job_observation, validation_job
from modelserver.validation.cli import parser

from .core.builders import spec_dict

pytestmark = pytest.mark.unit
ROLLOUT = {"apiVersion": "modelrollout.dev/v1alpha1", "kind": "ModelRollout",
           "metadata": {"name": "fraud", "namespace": "ml", "uid": "u1"}}
STABLE = ModelRecord(version="1", uri="http://store/1.skops")
CANDIDATE = ModelRecord(version="2", uri="http://store/2.joblib", digest="sha256:" + "b" * 64, format="joblib",
                        allow_pickle=True)
CHECKS = {"minAccuracy": 0.9, "maxRegression": {"f1": 2}}


def _job(data: dict[str, Any]) -> dict[str, Any]:
    spec = RolloutSpec.from_dict(spec_dict(validation={"data": data, "checks": CHECKS, "timeoutSeconds": 120}))
    return validation_job(ROLLOUT, spec, ValidationJobIntent("fraud-validate-2-abc", STABLE, CANDIDATE))


def test_the_job_is_bounded_non_root_read_only_and_owned_by_the_rollout() -> None:
    job = _job({"configMap": {"name": "holdout", "key": "holdout.csv"}})
    spec = job["spec"]
    assert (spec["activeDeadlineSeconds"], spec["backoffLimit"]) == (120, 0)
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    assert container["securityContext"]["runAsNonRoot"] and container["securityContext"]["readOnlyRootFilesystem"]
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "1Gi"}
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "u1"
    assert "modelrollout.dev/rollout" not in spec["template"]["metadata"]["labels"]  # never a serving pod
    assert {"name": "holdout", "mountPath": HOLDOUT_PATH, "readOnly": True} in container["volumeMounts"]


def test_the_serving_parser_accepts_the_jobs_arguments() -> None:
    args = _job({"configMap": {"name": "holdout", "key": "holdout.csv"}})["spec"]["template"]["spec"]
    container = args["containers"][0]
    assert container["args"][0] == "validate"
    parsed = parser("modelserver validate", None).parse_args(container["args"][1:])
    assert (parsed.baseline, parsed.candidate, parsed.candidate_digest) == (STABLE.uri, CANDIDATE.uri,
                                                                           CANDIDATE.digest)
    assert parsed.candidate_allow_pickle and not parsed.baseline_allow_pickle and not parsed.allow_pickle
    assert parsed.data == f"{HOLDOUT_PATH}/holdout.csv" and json.loads(parsed.config_json) == CHECKS
    assert str(parsed.termination_log) == TERMINATION_LOG
    by_url = _job({"url": "https://data/holdout.npz", "sha256": "c" * 64})["spec"]["template"]["spec"]
    parsed = parser("modelserver validate", None).parse_args(by_url["containers"][0]["args"][1:])
    assert (parsed.data, parsed.data_sha256) == ("https://data/holdout.npz", "c" * 64)
    assert [v["name"] for v in by_url["volumes"]] == ["scratch"]


def _pod(state: V1ContainerState) -> V1Pod:
    return V1Pod(metadata=V1ObjectMeta(name="p"), status=V1PodStatus(container_statuses=[
        V1ContainerStatus(name="validate", image="i", image_id="", ready=False, restart_count=0, state=state)]))


def test_the_result_comes_from_the_termination_message() -> None:
    assert not job_observation("j", None, []).exists
    done = V1Job(status=V1JobStatus(conditions=[V1JobCondition(type="Complete", status="True")]))
    seen = job_observation("j", done, [_pod(V1ContainerState(terminated=V1ContainerStateTerminated(
        exit_code=1, message='{"passed": false}')))])
    assert (seen.finished, seen.result, seen.failure) == (True, '{"passed": false}', "")
    late = V1Job(status=V1JobStatus(conditions=[V1JobCondition(type="Failed", status="True",
                                                               reason="DeadlineExceeded")]))
    assert job_observation("j", late, []).failure == "DeadlineExceeded"
    running = job_observation("j", V1Job(status=V1JobStatus()), [_pod(V1ContainerState(
        waiting=V1ContainerStateWaiting(reason="CreateContainerConfigError", message='configmap "h" not found')))])
    assert not running.finished and 'configmap "h" not found' in running.waiting
