"""spec.serving.podTemplate, volumeMounts and podDisruptionBudget: parsed once, refused naming the field,
and merged into every version's pods with the operator's part winning."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from modelrollout.core import RolloutSpec
from modelrollout.core.change import model_record
from modelrollout.core.serving import DEFAULT_RESOURCES
from modelrollout.workloads import deployment, disruption_budget, feedback_key_secret

from .core.builders import spec_dict

pytestmark = pytest.mark.unit
ROLLOUT = {"apiVersion": "modelrollout.dev/v1alpha1", "kind": "ModelRollout",
           "metadata": {"name": "fraud", "namespace": "ml", "uid": "u-1"}}
TEMPLATE = {"metadata": {"labels": {"team": "ml"}, "annotations": {"example.com/scrape": "yes"}},
            "spec": {"nodeSelector": {"pool": "gpu"}, "tolerations": [{"key": "gpu", "operator": "Exists"}],
                     "imagePullSecrets": [{"name": "regcred"}], "serviceAccountName": "reader",
                     "priorityClassName": "high", "affinity": {"podAntiAffinity": {}},
                     "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone"}],
                     "volumes": [{"name": "ca", "configMap": {"name": "ca"}}]}}


def pod(serving: dict[str, Any]) -> dict[str, Any]:
    spec = RolloutSpec.from_dict(spec_dict(serving=serving))
    return dict(deployment(ROLLOUT, spec, model_record(spec.model), 2)["spec"]["template"])


def test_every_field_of_the_fragment_reaches_the_pods() -> None:
    template = pod({"podTemplate": TEMPLATE, "volumeMounts": [{"name": "ca", "mountPath": "/etc/ca"}]})
    assert template["metadata"]["annotations"] == {"example.com/scrape": "yes"}
    assert template["metadata"]["labels"]["team"] == "ml"
    for key, value in TEMPLATE["spec"].items():
        if key != "volumes":
            assert template["spec"][key] == value, key
    assert [v["name"] for v in template["spec"]["volumes"]] == ["scratch", "modelrollout-feedback-key",
                                                                  "modelrollout-mirror", "ca"]
    [container] = template["spec"]["containers"]
    assert [m["name"] for m in container["volumeMounts"]] == ["scratch", "modelrollout-feedback-key",
                                                                  "modelrollout-mirror", "ca"]


def test_every_version_mounts_the_rollout_s_feedback_key_read_only() -> None:
    template = pod({})
    [volume] = [v for v in template["spec"]["volumes"] if v["name"] == "modelrollout-feedback-key"]
    assert volume["secret"]["secretName"] == "fraud-feedback-key"
    [container] = template["spec"]["containers"]
    [mount] = [m for m in container["volumeMounts"] if m["name"] == "modelrollout-feedback-key"]
    assert mount["readOnly"] is True
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MODELSERVER_FEEDBACK_KEY_FILE"] == mount["mountPath"] + "/" + volume["secret"]["items"][0]["path"]


def test_the_feedback_key_secret_is_random_and_owned_by_the_rollout() -> None:
    first, second = feedback_key_secret(ROLLOUT), feedback_key_secret(ROLLOUT)
    assert first["metadata"]["name"] == "fraud-feedback-key" and first["metadata"]["namespace"] == "ml"
    assert first["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert len(base64.b64decode(first["data"]["key"])) == 32
    assert first["data"] != second["data"]


def test_the_operators_part_wins() -> None:
    template = pod({"podTemplate": TEMPLATE})
    assert template["metadata"]["labels"] == {"team": "ml", "modelrollout.dev/rollout": "fraud",
                                              "modelrollout.dev/version": "2"}
    spec = template["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["automountServiceAccountToken"] is False
    assert spec["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


def test_no_fragment_leaves_the_pods_as_before_with_default_resources() -> None:
    template = pod({})
    assert template["metadata"] == {"labels": {"modelrollout.dev/rollout": "fraud", "modelrollout.dev/version": "2"}}
    assert set(template["spec"]) == {"containers", "volumes", "securityContext", "automountServiceAccountToken",
                                     "terminationGracePeriodSeconds"}
    assert template["spec"]["containers"][0]["resources"] == DEFAULT_RESOURCES
    assert pod({"resources": {"limits": {"cpu": "2"}}})["spec"]["containers"][0]["resources"] == {
        "limits": {"cpu": "2"}}, "a user's resources replace the default whole"


@pytest.mark.parametrize(("serving", "field"), [
    ({"podTemplate": {"metadata": {"labels": {"modelrollout.dev/rollout": "x"}}}},
     "spec.serving.podTemplate.metadata.labels"),
    ({"podTemplate": {"spec": {"hostNetwork": True}}}, "spec.serving.podTemplate.spec: hostNetwork"),
    ({"podTemplate": {"spec": {"containers": []}}}, "spec.serving.podTemplate.spec: containers"),
    ({"podTemplate": {"spec": {"volumes": [{"name": "scratch", "emptyDir": {}}]}}},
     "spec.serving.podTemplate.spec.volumes"),
    ({"podTemplate": {"spec": {"serviceAccountName": "Not_Valid"}}},
     "spec.serving.podTemplate.spec.serviceAccountName"),
    ({"volumeMounts": [{"name": "missing", "mountPath": "/x"}]}, r"spec.serving.volumeMounts\[0\].name"),
    ({"podTemplate": TEMPLATE, "volumeMounts": [{"name": "ca", "mountPath": "/var/lib/modelserver/tmp/"}]},
     r"spec.serving.volumeMounts\[0\].mountPath"),
    ({"podDisruptionBudget": {}}, "spec.serving.podDisruptionBudget: set exactly one"),
    ({"podDisruptionBudget": {"maxUnavailable": 1, "minAvailable": 1}}, "spec.serving.podDisruptionBudget: set"),
    ({"podDisruptionBudget": {"minAvailable": "half"}}, "spec.serving.podDisruptionBudget.minAvailable"),
    ({"podDisruptionBudget": {"maxUnavailable": -1}}, "spec.serving.podDisruptionBudget.maxUnavailable"),
])
def test_a_bad_serving_section_is_refused_naming_the_field(serving: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}"):
        RolloutSpec.from_dict(spec_dict(serving=serving))


@pytest.mark.parametrize(("budget", "limit"), [({"maxUnavailable": 1}, {"maxUnavailable": 1}),
                                               ({"minAvailable": "50%"}, {"minAvailable": "50%"})])
def test_a_budget_per_version_selects_that_versions_pods(budget: dict[str, Any], limit: dict[str, Any]) -> None:
    spec = RolloutSpec.from_dict(spec_dict(serving={"podDisruptionBudget": budget}))
    pdb = disruption_budget(ROLLOUT, spec, "fraud-v2", "2")
    assert pdb is not None and pdb["metadata"]["name"] == "fraud-v2"
    assert pdb["spec"] == {"selector": {"matchLabels": {"modelrollout.dev/rollout": "fraud",
                                                        "modelrollout.dev/version": "2"}}, **limit}
    assert pdb["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert disruption_budget(ROLLOUT, RolloutSpec.from_dict(spec_dict()), "fraud-v2", "2") is None
