"""The validation gate on the local cluster, under continuous traffic: a missing holdout is named while the gate
waits (and the run is cancelled when a newer version supersedes it); a holdout with a missing value and a
candidate below minAccuracy are both rolled back having served nothing (no pod of theirs ever existed, so none
was ever an endpoint of the users' Service); a good candidate passes and goes on to its canary."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from typing import Any

import kubernetes
import pytest

from localcluster.testing import wait_until
from tests.conftest import ClusterHandle
from tests.e2e.rollouts import OperatorProcess, Scenario, Traffic, make_rollout

pytestmark = pytest.mark.e2e
CHECKS = {"minAccuracy": 0.8, "maxRegression": {"accuracy": 2}}
STEPS = [{"setWeight": 50}, {"pause": {"duration": "3s"}}, {"setWeight": 100}]


def holdout_csv(holdout: dict[str, Any], blank: tuple[int, int] | None = None) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([*(f"f{i}" for i in range(len(holdout["X"][0]))), "label"])
    for r, (row, label) in enumerate(zip(holdout["X"], holdout["y"], strict=True)):
        cells = [repr(v) for v in row]
        if blank is not None and blank[0] == r:
            cells[blank[1]] = ""
        writer.writerow([*cells, label])
    return out.getvalue()


def given_holdouts(cluster: ClusterHandle, namespace: str, models: dict[str, Any]) -> None:
    core = kubernetes.client.CoreV1Api(cluster.api)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "holdout"}, "data": {
        "good.csv": holdout_csv(models["holdout"]), "gaps.csv": holdout_csv(models["holdout"], blank=(7, 3))}})


def gated(s: Scenario, version: str, model: dict[str, Any], store: str, key: str) -> dict[str, Any]:
    rollout = make_rollout(s.name, version, model, store, steps=STEPS)
    rollout["spec"]["validation"] = {"data": {"configMap": {"name": "holdout", "key": key}}, "checks": CHECKS,
                                     "timeoutSeconds": 120}
    return rollout


def pods_of(s: Scenario, version: str) -> int:
    core = kubernetes.client.CoreV1Api(s.cluster.api)
    selector = f"modelrollout.dev/rollout={s.name},modelrollout.dev/version={version}"
    return len(core.list_namespaced_pod(s.namespace, label_selector=selector).items)


def never_runs(s: Scenario, version: str) -> Any:
    """A wait_phase check: at every look, the gated version has no pod (so it is no endpoint of anything)."""
    def check(_: dict[str, Any]) -> None:
        assert pods_of(s, version) == 0 and not [d for d in s.deployments()
                                                 if d.metadata.labels["modelrollout.dev/version"] == version]
    return check


def job_gone(s: Scenario, name: str) -> bool:
    try:
        kubernetes.client.BatchV1Api(s.cluster.api).read_namespaced_job(name, s.namespace)
    except kubernetes.client.ApiException as exc:
        return exc.status == 404
    return False


def cli_status(s: Scenario) -> str:
    out = subprocess.run([sys.executable, "-m", "modelrollout.cli", "status", s.name, "-n", s.namespace,
                          "--kubeconfig", str(s.cluster.kubeconfig)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_bad_data_and_a_weak_model_are_rolled_back_with_zero_candidate_responses(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any],
        model_store: str) -> None:
    s = Scenario(cluster, namespace, "fraud")
    given_holdouts(cluster, namespace, models)
    s.apply(make_rollout(s.name, "1", models["models"]["lr"], model_store, steps=STEPS))
    s.wait_phase("Healthy", 90)
    with Traffic(s.service_url(), "fraud", models["holdout"], burst=1) as traffic:
        # When the holdout's ConfigMap does not exist, the status says so while the Job's pod waits
        absent = gated(s, "2", models["models"]["rf"], model_store, "good.csv")
        absent["spec"]["validation"]["data"]["configMap"]["name"] = "absent"
        s.apply(absent)
        waiting = wait_until(lambda: "absent" in (s.status().get("validation") or {}).get("message", "")
                             and s.status(), 90, "the gate to say what it waits for", describe=s.describe)
        assert waiting["reason"] == "Validating" and pods_of(s, "2") == 0, waiting
        # and a newer version supersedes it: that run's Job is deleted
        s.apply(gated(s, "3", models["models"]["rf"], model_store, "gaps.csv"))
        wait_until(lambda: job_gone(s, waiting["validation"]["job"]), 60, "the superseded run's Job to go")
        # When the candidate is checked on a holdout with a missing value
        stopped = s.wait_phase("RolledBack", 150, check=never_runs(s, "3"))
        # Then it is stopped naming the column, before any model is judged
        assert stopped["reason"] == "ValidationFailed", stopped
        assert "missingValues failed: column f3: 1 of 500 values are missing" in stopped["message"]
        assert stopped["validation"]["state"] == "Failed"
        assert not any(c["name"] == "minAccuracy" for c in stopped["validation"]["checks"])
        # When a candidate at chance accuracy is checked on good data
        s.apply(gated(s, "4", models["models"]["lr-bad"], model_store, "good.csv"))
        rolled = s.wait_phase("RolledBack", 150, check=never_runs(s, "4"))
    # Then it is rolled back naming the check, with both versions' values in status and the plugin's table
    assert rolled["rejectedVersion"] == "4" and "minAccuracy failed" in rolled["message"], rolled
    accuracy = next(c for c in rolled["validation"]["checks"] if c["name"] == "minAccuracy")
    assert accuracy["verdict"] == "Fail" and accuracy["candidate"] < 0.6 and accuracy["stable"] > 0.85
    table = cli_status(s)
    assert "CHECK" in table and "minAccuracy" in table and "Fail" in table, table
    # And no user ever got an answer from either candidate, nor an error
    assert set(traffic.stats.by_version) == {"1"}, dict(traffic.stats.by_version)
    assert traffic.stats.failures == 0, traffic.stats.explain()
    assert any(reason == "ValidationFailed" for _, reason, _ in s.events())


def test_a_good_candidate_passes_the_gate_then_its_canary_and_is_promoted(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any],
        model_store: str) -> None:
    s = Scenario(cluster, namespace, "fraud")
    given_holdouts(cluster, namespace, models)
    s.apply(make_rollout(s.name, "1", models["models"]["lr"], model_store, steps=STEPS))
    s.wait_phase("Healthy", 90)
    with Traffic(s.service_url(), "fraud", models["holdout"], burst=1) as traffic:
        s.apply(gated(s, "2", models["models"]["rf"], model_store, "good.csv"))
        final = s.wait_phase("Healthy", 240)
    assert final["stableVersion"] == "2" and final["validation"]["state"] == "Passed", final
    validating = [st for st in s.seen if st.get("reason") == "Validating"]
    assert validating, "the rollout was never seen validating"
    assert {c["name"] for c in final["validation"]["checks"]} >= {"minAccuracy", "maxRegression.accuracy",
                                                                  "missingValues", "labels"}
    assert traffic.stats.by_version["2"].ok > 0 and traffic.stats.failures == 0
    assert any(reason == "ValidationPassed" for _, reason, _ in s.events())
