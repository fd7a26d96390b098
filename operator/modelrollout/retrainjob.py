"""The manifest of a retraining Job (spec.monitoring.retrain): the user's jobTemplate under the name the core
chose, labelled as the rollout's and owned by it (garbage-collected with it). A pure function of the typed spec.
"""

from __future__ import annotations

import copy
from typing import Any

from modelrollout.core.observations import RetrainJobIntent
from modelrollout.core.spec import RolloutSpec
from modelrollout.workloads import MANAGED_BY, owner_reference

LABEL_RETRAIN = "modelrollout.dev/retrain"  # the rollout a retraining Job belongs to


def retrain_job(rollout: dict[str, Any], spec: RolloutSpec, intent: RetrainJobIntent) -> dict[str, Any]:
    """The Job: the template's metadata and spec, with the operator's name, labels and owner on top.

    >>> from modelrollout.core.spec import RolloutSpec
    >>> spec = RolloutSpec.from_dict({"model": {"name": "m", "version": "1", "uri": "u"}, "service": {"name": "m"},
    ...     "strategy": {"canary": {"steps": [{"setWeight": 100}]}}, "monitoring": {"drift": {}, "retrain": {
    ...     "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "t", "image": "i"}]}}}}}}})
    >>> rollout = {"apiVersion": "modelrollout.dev/v1alpha1", "kind": "ModelRollout",
    ...            "metadata": {"name": "m", "namespace": "ns", "uid": "u1"}}
    >>> job = retrain_job(rollout, spec, RetrainJobIntent("m-retrain-1"))
    >>> job["metadata"]["labels"]["modelrollout.dev/retrain"], job["spec"]["template"]["spec"]["restartPolicy"]
    ('m', 'Never')
    """
    monitoring = spec.monitoring
    assert monitoring is not None and monitoring.retrain is not None
    template = copy.deepcopy(dict(monitoring.retrain.job_template))
    meta = rollout["metadata"]
    labels = {**(template.get("metadata") or {}).get("labels", {}), LABEL_RETRAIN: meta["name"], **MANAGED_BY}
    job_spec = template["spec"]
    pod = job_spec["template"]
    pod["metadata"] = {**(pod.get("metadata") or {}), "labels": {
        **((pod.get("metadata") or {}).get("labels") or {}), LABEL_RETRAIN: meta["name"]}}
    pod["spec"].setdefault("restartPolicy", "Never")  # a Job's pods must not restart in place (Never/OnFailure)
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": intent.name, "namespace": meta["namespace"], "labels": labels,
                     "annotations": dict((template.get("metadata") or {}).get("annotations") or {}),
                     "ownerReferences": [owner_reference(rollout)]},
        "spec": job_spec,
    }
