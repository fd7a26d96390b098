"""Bad models are caught and rolled back; missing data is never taken as pass or fail."""

from __future__ import annotations

import time
from typing import Any

import pytest

from localcluster.testing import holds, wait_until
from tests.conftest import ClusterHandle
from tests.e2e.rollouts import OperatorProcess, Scenario, Traffic, make_rollout

pytestmark = pytest.mark.e2e
MIN_SAMPLES = 60


def _analysis(*metrics: dict[str, Any], inconclusive_limit: int = 30) -> dict[str, Any]:
    return {"interval": "2s", "minSamples": MIN_SAMPLES, "failureLimit": 2, "inconclusiveLimit": inconclusive_limit,
            "minExposure": "4s", "metrics": list(metrics)}


ERRORS = {"name": "error-rate", "type": "errorRate", "margin": 0.01}
ACCURACY = {"name": "accuracy", "type": "accuracy", "margin": 0.05}
SLOW_STEPS = [{"setWeight": 25}, {"pause": {"duration": "60s"}}, {"setWeight": 100}]


def _start(s: Scenario, models: dict[str, Any], store: str, analysis: dict[str, Any],
           env: dict[str, str] | None = None) -> None:
    s.apply(make_rollout(s.name, "1", models["models"]["lr"], store, analysis=analysis, env=env))
    s.wait_phase("Healthy", 90)


def _ticks_after_min_samples(s: Scenario) -> int:
    """Analysis ticks between the first tick whose canary samples reached minSamples and the last one."""
    ticks = [((st.get("analysis") or {}).get("ticks", 0), st) for st in s.seen]
    reached = [t for t, st in ticks if any(r.get("canarySamples", 0) >= MIN_SAMPLES
                                           for r in (st.get("analysis") or {}).get("results") or [])]
    return max(t for t, _ in ticks) - min(reached)


def test_canary_answering_errors_is_rolled_back_with_the_numbers(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any],
        model_store: str) -> None:
    s = Scenario(cluster, namespace, "errs")
    _start(s, models, model_store, _analysis(ERRORS))
    with Traffic(s.service_url(), s.name, models["holdout"]) as traffic:
        s.apply(make_rollout(s.name, "2", models["models"]["lr"], model_store, steps=SLOW_STEPS,
                             analysis=_analysis(ERRORS), faults={"MODELSERVER_CHAOS_ERROR_RATE": "0.3"}))
        final = s.wait_phase("RolledBack", 120)
        served = traffic.stats.by_version["1"].ok  # and the stable keeps answering after the rollback
        wait_until(lambda: traffic.stats.by_version["1"].ok >= served + 100, 30, "stable answers after the rollback")
    assert final["stableVersion"] == "1"
    assert "error-rate" in final["message"] and "canary error rate" in final["message"], final["message"]
    assert _ticks_after_min_samples(s) <= 3, [(st.get("analysis") or {}).get("ticks") for st in s.seen]
    assert traffic.stats.by_version["1"].failed == 0 and traffic.stats.by_version["1"].ok > 100
    assert traffic.stats.by_version["2"].failed > 0  # it really was bad, and it really got traffic
    assert "?" not in traffic.stats.by_version  # every answer, failures included, named its version
    wait_until(lambda: [d.spec.replicas for d in s.deployments()
                        if d.metadata.labels["modelrollout.dev/version"] == "2"] in ([], [0]), 30, "canary at 0")
    assert any(reason == "AnalysisFailed" and kind == "Warning" for kind, reason, _ in s.events())
    assert "canary error rate" in s.describe()


def test_canary_whose_model_cannot_load_is_rolled_back_at_once_saying_why(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any],
        model_store: str) -> None:
    # Given version 1 serving under traffic
    s = Scenario(cluster, namespace, "digest")
    _start(s, models, model_store, _analysis(ERRORS))
    with Traffic(s.service_url(), s.name, models["holdout"]) as traffic:
        # When version 2 names a digest its file does not have
        wrong = {**models["models"]["lr"], "digest": "sha256:" + "0" * 64}
        started = time.monotonic()
        s.apply(make_rollout(s.name, "2", wrong, model_store, steps=SLOW_STEPS, analysis=_analysis(ERRORS)))
        final = s.wait_phase("RolledBack", 60)
        took = time.monotonic() - started
        served = traffic.stats.by_version["1"].ok
        wait_until(lambda: traffic.stats.by_version["1"].ok > served + 100, 30,
                   "version 1 to answer 100 more requests after the rollback")
    # Then it is rolled back within a poll of the server giving up, not after progressDeadlineSeconds (10m),
    assert took < 30, took
    assert (final["reason"], final["stableVersion"]) == ("ModelLoadFailed", "1"), final
    # saying why where a user looks (status, describe, a Warning Event),
    assert "digest_mismatch" in final["message"] and "spec.model.digest" in final["message"], final["message"]
    assert "digest" in s.describe()
    assert any(kind == "Warning" and reason == "ModelLoadFailed" and "digest" in message
               for kind, reason, message in s.events()), s.events()
    # and version 1 kept serving every request; version 2 never got one.
    assert traffic.stats.failures == 0 and set(traffic.stats.by_version) == {"1"}, traffic.stats.by_version
    wait_until(lambda: [d.spec.replicas for d in s.deployments()
                        if d.metadata.labels["modelrollout.dev/version"] == "2"] in ([], [0]), 30, "canary at 0")


def test_canary_with_lower_accuracy_from_feedback_is_rolled_back(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any],
        model_store: str) -> None:
    s = Scenario(cluster, namespace, "acc")
    _start(s, models, model_store, _analysis(ACCURACY))
    with Traffic(s.service_url(), s.name, models["holdout"]) as traffic:
        s.apply(make_rollout(s.name, "2", models["models"]["lr-bad"], model_store, steps=SLOW_STEPS,
                             analysis=_analysis(ACCURACY)))
        final = s.wait_phase("RolledBack", 150)
    assert "accuracy" in final["message"], final["message"]
    result = next(r for r in final["analysis"]["results"] if r["name"] == "accuracy")
    assert result["verdict"] == "Fail" and result["canaryValue"] < result["stableValue"] - 0.1, result
    assert traffic.stats.by_version["2"].feedback_sent > 0
    assert traffic.stats.failures == 0


def test_failing_scrapes_hold_the_rollout_without_promoting_or_rolling_back(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any],
        model_store: str) -> None:
    s = Scenario(cluster, namespace, "blind")
    analysis = _analysis(ERRORS, inconclusive_limit=6)
    _start(s, models, model_store, analysis)
    steps = [{"setWeight": 25}, {"pause": {"duration": "2s"}}, {"setWeight": 100}]
    with Traffic(s.service_url(), s.name, models["holdout"]) as traffic:
        s.apply(make_rollout(s.name, "2", models["models"]["lr"], model_store, steps=steps, analysis=analysis,
                             faults={"MODELSERVER_CHAOS_METRICS_HANG": "1"}))
        paused = s.wait_phase("Paused", 90, check=lambda st: _never_decided(st))
        holds(lambda: s.status()["phase"] == "Paused", 6, "the blind canary stays paused")  # and it stays put
        after = s.status()
    assert paused["reason"] == "Inconclusive" and "inconclusive" in paused["message"].lower(), paused
    _never_decided(after)
    assert after["phase"] == "Paused" and after["canaryVersion"] == "2" and after["stableVersion"] == "1"
    assert all(r["verdict"] == "Inconclusive" for r in after["analysis"]["results"])
    assert traffic.stats.failures == 0


def _never_decided(st: dict[str, Any]) -> None:
    assert st.get("phase") not in ("RolledBack", "Promoting") and st.get("stableVersion") != "2", st
