"""Blue-green switches, manual control and operator restarts, under continuous traffic."""

from __future__ import annotations

import time
from typing import Any

import kubernetes
import pytest

from localcluster.testing import holds, wait_until
from tests.conftest import ClusterHandle
from tests.e2e.rollouts import OperatorProcess, Scenario, Traffic, make_rollout

pytestmark = pytest.mark.e2e
ANALYSIS = {"interval": "2s", "minSamples": 60, "failureLimit": 2, "inconclusiveLimit": 30, "minExposure": "4s",
            "metrics": [{"name": "error-rate", "type": "errorRate", "margin": 0.02}]}


def _selector(s: Scenario, service: str) -> dict[str, str]:
    svc = kubernetes.client.CoreV1Api(s.cluster.api).read_namespaced_service(service, s.namespace)
    return dict(svc.spec.selector or {})


def test_blue_green_waits_for_promote_then_switches_without_a_failed_request(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any],
        model_store: str) -> None:
    s = Scenario(cluster, namespace, "bg")
    bg = {"previewService": "bg-preview", "scaleDownDelaySeconds": 3}
    s.apply(make_rollout(s.name, "1", models["models"]["lr"], model_store, blue_green=bg))
    s.wait_phase("Healthy", 90)
    with Traffic(s.service_url(), s.name, models["holdout"]) as traffic:
        s.apply(make_rollout(s.name, "2", models["models"]["lr"], model_store, blue_green=bg))
        paused = s.wait_phase("Paused", 90)
        assert _selector(s, "bg")["modelrollout.dev/version"] == "1"
        assert _selector(s, "bg-preview")["modelrollout.dev/version"] == "2"
        holds(lambda: s.status()["phase"] == "Paused" and traffic.stats.by_version["2"].ok == 0, 3,
              "paused with no user answered by the preview")  # it really waits
        s.command("promote")
        s.wait_phase("Healthy", 60)
        wait_until(lambda: _selector(s, "bg")["modelrollout.dev/version"] == "2", 10, "switch")
        switched_at = time.monotonic()
        wait_until(lambda: traffic.stats.share("2", since=switched_at + 1) > 0.99, 20, "all traffic on v2")
    assert paused["stableVersion"] == "1"
    assert traffic.stats.failures == 0, traffic.stats.explain()
    wait_until(lambda: len(s.deployments()) == 1, 30, "old version removed after scaleDownDelaySeconds")


def test_operator_killed_mid_canary_finishes_without_repeating_or_skipping(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any],
        model_store: str) -> None:
    s = Scenario(cluster, namespace, "restart")
    s.apply(make_rollout(s.name, "1", models["models"]["lr"], model_store, analysis=ANALYSIS))
    s.wait_phase("Healthy", 90)
    steps = [{"setWeight": 25}, {"pause": {"duration": "4s"}}, {"setWeight": 50}, {"pause": {"duration": "4s"}},
             {"setWeight": 100}]
    most_deployments = 0
    with Traffic(s.service_url(), s.name, models["holdout"]) as traffic:
        s.apply(make_rollout(s.name, "2", models["models"]["lr"], model_store, steps=steps, analysis=ANALYSIS))
        wait_until(lambda: s.status().get("desiredWeight") == 50, 120, "the 50% step", describe=s.describe)
        operator.kill()
        time.sleep(3)  # down for a while, as a crashed operator pod is until it is rescheduled
        operator.start()

        def healthy() -> bool:
            nonlocal most_deployments
            most_deployments = max(most_deployments, len(s.deployments()))
            st = s.status()
            return st.get("phase") == "Healthy" and st.get("stableVersion") == "2"

        wait_until(healthy, 150, "Healthy on version 2 after the restart", describe=s.describe)
    assert most_deployments <= 2
    completed = [m for _, reason, m in s.events() if reason == "StepCompleted"]
    assert completed == sorted(set(completed)) and len(completed) == len(steps) - 1, completed
    assert traffic.stats.failures == 0, traffic.stats.explain()


def test_abort_retry_pause_resume_and_undo(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any],
        model_store: str) -> None:
    s = Scenario(cluster, namespace, "ctl")
    s.apply(make_rollout(s.name, "1", models["models"]["lr"], model_store, analysis=ANALYSIS))
    s.wait_phase("Healthy", 90)
    steps = [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]
    with Traffic(s.service_url(), s.name, models["holdout"]) as traffic:
        s.apply(make_rollout(s.name, "2", models["models"]["lr"], model_store, steps=steps, analysis=ANALYSIS))
        wait_until(lambda: s.status().get("currentStepIndex") == 1, 90, "the manual pause step")
        s.command("abort")
        aborted = s.wait_phase("RolledBack", 30)
        holds(lambda: s.status()["phase"] == "RolledBack", 3, "an aborted rollout stays put")
        assert "retry" in aborted["message"].lower(), aborted["message"]
        s.command("retry")
        wait_until(lambda: s.status().get("phase") == "Progressing", 30, "retry restarts the canary")
        s.command("pause")
        wait_until(lambda: s.status().get("phase") == "Paused", 30, "pause")
        step = s.status().get("currentStepIndex")
        holds(lambda: s.status()["currentStepIndex"] == step and s.status()["phase"] == "Paused", 3,
              "a paused rollout stays at its step")
        s.command("resume")
        wait_until(lambda: s.status().get("reason") == "StepPause", 60, "resume, up to the step `pause: {}`")
        s.command("promote")
        final = s.wait_phase("Healthy", 120)
        assert final["stableVersion"] == "2"
        s.command("undo")
        undone = wait_until(lambda: (st := s.status()).get("phase") == "Healthy" and st.get("stableVersion") == "1"
                            and st, 120, "undo back to version 1", describe=s.describe)
    assert undone["stableVersion"] == "1"
    assert traffic.stats.failures == 0, traffic.stats.explain()
