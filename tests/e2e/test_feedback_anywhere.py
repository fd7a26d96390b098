"""Labels that arrive the way they do in production: late, in a batch, from another pod, through the Service on
fresh connections, after the pods that predicted were restarted - and still counted for the version that
predicted, in the counters the operator reads (docs/metrics.md, prediction tokens)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from localcluster.testing import wait_until
from localcluster.traffic import pod_log, read_metrics
from modelserver.contract_parse import parse_pod_metrics
from tests.conftest import ROOT, ClusterHandle
from tests.e2e.predictions import predict_on_fresh_connections
from tests.e2e.rollouts import OperatorProcess, Scenario, make_rollout

pytestmark = pytest.mark.e2e

LABEL_DELAY_S = 60.0  # labels are sent this long after the last prediction
PREDICTIONS = 400
SELECTOR = "modelrollout.dev/rollout=fraud"


async def _predict(url: str, rows: list[list[float]], labels: list[Any]) -> list[dict[str, Any]]:
    """Answers spread over all pods of both versions, each with the label it will get."""
    answered = await predict_on_fresh_connections(url, "fraud", rows, PREDICTIONS)
    return [{"version": version, "label": labels[i % len(labels)], "predicted": payload["outputs"][0]["data"][0],
             "token": payload["parameters"]["prediction_token"]} for i, (version, payload) in enumerate(answered)]


def _serving_pods(core: kubernetes.client.CoreV1Api, namespace: str) -> list[Any]:
    return [p for p in core.list_namespaced_pod(namespace, label_selector=SELECTOR).items
            if not p.metadata.deletion_timestamp]


def _ready_replacements(core: kubernetes.client.CoreV1Api, namespace: str, old: set[str]) -> list[Any] | None:
    pods = _serving_pods(core, namespace)
    ready = [p for p in pods if p.metadata.uid not in old and p.status.pod_ip and any(
        c.type == "Ready" and c.status == "True" for c in p.status.conditions or ())]
    return ready if len(ready) == 4 and len(pods) == 4 else None


def _feedback_by_version(pods: list[Any]) -> dict[str, tuple[float, float]]:
    """What the operator's pod scrape reads: each version's feedback series summed over every pod."""
    totals: dict[str, tuple[float, float]] = {}
    for pod in pods:
        for (_model, version), m in parse_pod_metrics(read_metrics(pod.status.pod_ip, 8080)).models.items():
            correct, incorrect = totals.get(version, (0.0, 0.0))
            totals[version] = (correct + m.feedback_correct, incorrect + m.feedback_incorrect)
    return totals


def test_late_labels_from_another_pod_count_for_the_version_that_predicted_after_its_pods_restarted(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any],
        model_store: str, tmp_path: Path) -> None:
    core = kubernetes.client.CoreV1Api(cluster.api)
    # Given a canary paused at 50%: two pods of each version behind one Service, sharing the rollout's key
    s = Scenario(cluster, namespace, "fraud")
    s.apply(make_rollout("fraud", "1", models["models"]["lr"], model_store))
    s.wait_phase("Healthy", 90)
    s.apply(make_rollout("fraud", "2", models["models"]["rf"], model_store,
                         steps=[{"setWeight": 50}, {"pause": {}}]))
    s.wait_phase("Paused", 120)
    wait_until(lambda: sorted(d.status.ready_replicas or 0 for d in s.deployments()) == [2, 2], 60,
               "two ready pods per version")
    key = core.read_namespaced_secret("fraud-feedback-key", namespace)
    assert key.metadata.owner_references[0].kind == "ModelRollout"

    # When predictions go through the Service, then every pod that made them is deleted and replaced
    holdout = models["holdout"]
    answered = asyncio.run(_predict(s.service_url(), holdout["X"], holdout["y"]))
    last_prediction = time.time()
    sent = {v: sum(1 for a in answered if a["version"] == v) for v in ("1", "2")}
    assert min(sent.values()) >= PREDICTIONS * 0.25, sent
    old = {p.metadata.uid for p in _serving_pods(core, namespace)}
    core.delete_collection_namespaced_pod(namespace, label_selector=SELECTOR)
    replacements = wait_until(lambda: _ready_replacements(core, namespace, old), 120, "4 new ready serving pods")

    # And a separate pod posts all the labels in batches, LABEL_DELAY_S after the last prediction
    labels_file = tmp_path / "labels.json"
    labels_file.write_text(json.dumps([{"token": a["token"], "label": a["label"]} for a in answered]))
    args = [str(ROOT / "examples" / "models" / "send_labels.py"), "--url", "http://fraud", "--model", "fraud",
            "--labels", str(labels_file), "--batch", "50", "--not-before", str(last_prediction + LABEL_DELAY_S)]
    core.create_namespaced_pod(namespace, {"metadata": {"name": "labels"}, "spec": {
        "restartPolicy": "Never", "containers": [{"name": "send", "image": "localcluster/python:test", "args": args}]}})
    kubelet_dir = cluster.workdir / "kubelet"
    wait_until(lambda: core.read_namespaced_pod("labels", namespace).status.phase in ("Succeeded", "Failed"),
               LABEL_DELAY_S + 120, "the labels pod to finish", describe=lambda: pod_log(kubelet_dir, namespace,
                                                                                           "labels", "send"))
    out = pod_log(kubelet_dir, namespace, "labels", "send")
    totals = json.loads(out.strip().splitlines()[-1])
    assert time.time() - last_prediction >= LABEL_DELAY_S

    # Then (nearly) every label is counted, for the version that made the prediction
    assert totals["statuses"] == {"200": PREDICTIONS // 50}, out
    counted = _feedback_by_version(replacements)
    for version in ("1", "2"):
        correct, incorrect = counted.get(version, (0.0, 0.0))
        expected_correct = sum(1 for a in answered if a["version"] == version and a["predicted"] == a["label"])
        print(f"version {version}: sent {sent[version]}, counted {correct + incorrect:.0f} "
              f"({correct:.0f} correct, expected {expected_correct})")
        assert correct + incorrect >= 0.99 * sent[version], (version, counted, sent)
        assert correct == expected_correct, (version, counted)
