"""The drift watch on the local cluster (issue 15 item 2), with live traffic through the users' Service: inputs
drawn from the training distribution raise no drift for 2 minutes; shifting one feature's mean by one standard
deviation sets `Drifted` naming that feature within 3 windows; going back to the training distribution clears it.
(Not to be confused with test_drift.py, about owned objects drifting from what the operator applied.)"""

from __future__ import annotations

import time
import urllib.request
from typing import Any

import kubernetes
import numpy as np
import pytest
import yaml

from localcluster.testing import holds, wait_until
from modelrollout.cli import render_status
from tests.conftest import ROOT, ClusterHandle
from tests.e2e.rollouts import OperatorProcess, Scenario, Traffic, make_rollout

pytestmark = pytest.mark.e2e
WINDOW_S, INTERVAL_S = 10.0, 2.0
SHIFTED = "f3"


def watched(s: Scenario, models: dict[str, Any], store: str) -> dict[str, Any]:
    """Version 1 (logistic regression) on 2 pods, its reference verified by its digest, watched every 2 s."""
    lr = models["models"]["lr"]
    rollout = make_rollout(s.name, "1", lr, store, replicas=2, steps=[{"setWeight": 100}])
    rollout["spec"]["model"]["driftReferenceDigest"] = lr["drift_reference"]["digest"]
    rollout["spec"]["monitoring"] = {"drift": {"window": f"{WINDOW_S:g}s", "interval": f"{INTERVAL_S:g}s",
                                               "minSamples": 200}}
    return rollout


def with_retraining(rollout: dict[str, Any]) -> dict[str, Any]:
    """The retraining trigger of examples/drift-retrain.yaml (its Job as written), after 4 s of drift."""
    example = yaml.safe_load((ROOT / "examples" / "drift-retrain.yaml").read_text())
    rollout["spec"]["monitoring"]["retrain"] = {**example["spec"]["monitoring"]["retrain"], "for": "4s"}
    return rollout


def retrain_jobs(s: Scenario) -> list[Any]:
    batch = kubernetes.client.BatchV1Api(s.cluster.api)
    return list(batch.list_namespaced_job(s.namespace, label_selector=f"modelrollout.dev/retrain={s.name}").items)


def retrain_state(s: Scenario, state: str) -> dict[str, Any] | None:
    run = s.status().get("retrain") or {}
    return run if run.get("state") == state else None


def shifted(holdout: dict[str, Any], feature: str) -> dict[str, Any]:
    """The held-out rows with one feature's values moved up by that feature's standard deviation."""
    x = np.asarray(holdout["X"], dtype=float)
    column = int(feature[1:])
    x[:, column] += x[:, column].std()
    return {"X": x.tolist(), "y": holdout["y"]}


def drifted(s: Scenario) -> dict[str, Any] | None:
    """The Drifted condition as stored, None before the first look."""
    conditions = s.status().get("conditions") or []
    return next((c for c in conditions if c["type"] == "Drifted"), None)


def condition_is(s: Scenario, value: str) -> dict[str, Any] | None:
    found = drifted(s)
    return found if found is not None and found["status"] == value else None


def operator_psi(operator: OperatorProcess, s: Scenario, feature: str) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{operator.metrics_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    wanted = (f'modelrollout_drift_psi{{feature="{feature}",namespace="{s.namespace}",rollout="{s.name}",'
              'version="1"}')
    line = next((ln for ln in text.splitlines() if ln.startswith(wanted)), None)
    return None if line is None else float(line.split()[-1])


def test_a_shifted_feature_is_named_within_three_windows_starts_one_retraining_job_and_clears(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any],
        model_store: str) -> None:
    # Given version 1 Healthy, watched for drift with a retraining Job after 4 s of drift, answering traffic drawn
    # from the training distribution
    s = Scenario(cluster, namespace, "fraud")
    s.apply(with_retraining(watched(s, models, model_store)))
    s.wait_phase("Healthy", 90)
    with Traffic(s.service_url(), "fraud", models["holdout"], burst=1) as traffic:
        judged = wait_until(lambda: condition_is(s, "False"), 60, "the first judged look: no drift",
                            describe=lambda: str(s.status().get("drift")))
        assert "no drift" in judged["message"], judged
        # Then it stays without drift for 2 minutes
        holds(lambda: (drifted(s) or {}).get("status") != "True", 120, "no drift on training-like inputs",
              interval=1.0)
        looks = s.status()["drift"]["versions"][0]
        assert looks["state"] == "NoDrift" and all(f["samples"] >= 200 for f in looks["features"]), looks
    assert traffic.stats.failures == 0, traffic.stats.explain()

    # When one feature's mean moves by one standard deviation
    with Traffic(s.service_url(), "fraud", shifted(models["holdout"], SHIFTED), burst=1):
        started = time.monotonic()
        found = wait_until(lambda: condition_is(s, "True"), 3 * WINDOW_S + 4 * INTERVAL_S,
                           "Drifted to be True within 3 windows", describe=lambda: str(s.status().get("drift")))
        took = time.monotonic() - started
        # Then the condition names that feature, and that feature only, with its score
        assert found["reason"] == "InputDrift" and f"{SHIFTED}: PSI" in found["message"], found
        entry = s.status()["drift"]["versions"][0]
        assert [f["name"] for f in entry["features"] if f["drifted"]] == [SHIFTED], entry
        assert ("Warning", "DriftDetected") in [(t, r) for t, r, _ in s.events()]
        psi = operator_psi(operator, s, SHIFTED)
        assert psi is not None and psi >= 0.2, psi
        assert f"v1 Drifted      drifted: {SHIFTED}: PSI" in render_status(s.get())
        # And once it lasted 4 s the example's retraining Job runs, and ends, once
        run = wait_until(lambda: retrain_state(s, "Succeeded"), 180, "the retraining Job to succeed",
                         describe=lambda: str(s.status().get("retrain")))
        assert run["job"] == "fraud-retrain-1" and run["runs"] == 1 and "finishedAt" in run, run
        assert [j.metadata.name for j in retrain_jobs(s)] == ["fraud-retrain-1"]
        assert [j.metadata.owner_references[0].name for j in retrain_jobs(s)] == [s.name]

    # When the inputs come from the training distribution again, the condition clears
    with Traffic(s.service_url(), "fraud", models["holdout"], burst=1):
        wait_until(lambda: condition_is(s, "False"), 3 * WINDOW_S + 4 * INTERVAL_S, "Drifted to clear",
                   describe=lambda: str(s.status().get("drift")))
    assert s.status()["drift"].get("driftedSince") is None
    reasons = [(t, r) for t, r, _ in s.events()]
    assert ("Normal", "DriftCleared") in reasons and ("Normal", "RetrainSucceeded") in reasons, reasons
    assert [r for _, r in reasons].count("RetrainStarted") == 1, reasons
    # Exactly one Job: the cooldown (1 h) holds the next one back however long drift lasted
    assert [j.metadata.name for j in retrain_jobs(s)] == ["fraud-retrain-1"]
    print(f"Drifted after {took:.1f} s (window {WINDOW_S:g} s, interval {INTERVAL_S:g} s)")


def test_a_model_without_a_reference_is_served_and_the_watch_says_not_available(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any],
        model_store: str) -> None:
    # Given a model whose reference is not where the server looks (MODELSERVER_DRIFT_REFERENCE names a file the
    # store does not have)
    s = Scenario(cluster, namespace, "plain")
    rollout = watched(s, models, model_store)
    del rollout["spec"]["model"]["driftReferenceDigest"]
    rollout["spec"]["serving"]["env"] = [{"name": "MODELSERVER_DRIFT_REFERENCE",
                                          "value": f"{model_store}/absent.drift.json"}]
    s.apply(rollout)
    s.wait_phase("Healthy", 90)
    with Traffic(s.service_url(), "plain", models["holdout"], burst=1) as traffic:
        # Then it serves, and the watch says why it cannot judge instead of claiming no drift
        found = wait_until(lambda: condition_is(s, "Unknown"), 60, "Drifted Unknown",
                           describe=lambda: str(s.status().get("drift")))
    assert found["reason"] == "NotAvailable" and "reference missing" in found["message"], found
    assert traffic.stats.failures == 0 and traffic.stats.by_version["1"].ok > 0, traffic.stats.explain()


def test_min_accuracy_holds_retraining_back_while_the_labels_show_the_model_still_does_well(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any],
        model_store: str) -> None:
    # Given version 1 watched for drift, retraining after 4 s of drift only below 50% accuracy on the labels
    s = Scenario(cluster, namespace, "labelled")
    rollout = with_retraining(watched(s, models, model_store))
    rollout["spec"]["monitoring"]["retrain"]["minAccuracy"] = 0.5
    s.apply(rollout)
    s.wait_phase("Healthy", 90)
    # When one feature shifts, under traffic whose labels come back (the model still gets most of them right)
    with Traffic(s.service_url(), "labelled", shifted(models["holdout"], SHIFTED), burst=1):
        wait_until(lambda: condition_is(s, "True"), 3 * WINDOW_S + 4 * INTERVAL_S, "Drifted to be True",
                   describe=lambda: str(s.status().get("drift")))
        # Then drift lasting well past `for` starts no Job: the accuracy on the window's labels is above 50%
        holds(lambda: not retrain_jobs(s) and "retrain" not in s.status(), 15, "no retraining Job", interval=1.0)
        entry = s.status()["drift"]["versions"][0]
        assert entry["state"] == "Drifted" and entry["labels"] > 0 and entry["accuracy"] >= 0.5, entry
