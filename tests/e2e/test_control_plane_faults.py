"""Control-plane faults mid-rollout: kube-apiserver restarted while a canary runs under traffic.
Watches resume (the operator's, the node's and the service proxy's), the rollout completes, no step
is repeated or skipped, and no user request fails (the data plane does not need the apiserver)."""

from __future__ import annotations

from typing import Any

import pytest

from localcluster.testing import wait_until
from tests.conftest import ClusterHandle
from tests.e2e.rollouts import OperatorProcess, Scenario, Traffic, make_rollout

pytestmark = pytest.mark.e2e
ANALYSIS = {"interval": "2s", "minSamples": 40, "failureLimit": 2, "inconclusiveLimit": 60, "minExposure": "4s",
            "metrics": [{"name": "error-rate", "type": "errorRate", "margin": 0.03}]}
STEPS = [{"setWeight": 25}, {"pause": {"duration": "4s"}}, {"setWeight": 50}, {"pause": {"duration": "4s"}},
         {"setWeight": 100}]


def test_rollout_completes_across_an_apiserver_restart_without_a_failed_request(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any],
        model_store: str) -> None:
    s = Scenario(cluster, namespace, "apirestart")
    lr = models["models"]["lr"]
    s.apply(make_rollout(s.name, "1", lr, model_store, replicas=2, analysis=ANALYSIS))
    s.wait_phase("Healthy", 90)
    with Traffic(s.service_url(), s.name, models["holdout"], rate=40) as traffic:
        s.apply(make_rollout(s.name, "2", lr, model_store, replicas=2, steps=STEPS, analysis=ANALYSIS))
        wait_until(lambda: s.status().get("desiredWeight") == 25, 120, "the 25% step", describe=s.describe)
        cluster.cluster.control_plane.restart_apiserver(down_seconds=3)
        final = wait_until(lambda: (st := s.status()).get("phase") == "Healthy" and st.get("stableVersion") == "2"
                           and st, 180, "Healthy on version 2 after the restart", describe=s.describe)
    assert final["stableVersion"] == "2"
    completed = [m for _, reason, m in s.events() if reason == "StepCompleted"]
    assert completed == sorted(set(completed)) and len(completed) == len(STEPS) - 1, completed
    assert traffic.stats.failures == 0, traffic.stats.explain()
    cluster.cluster.check_alive()  # the node and the service proxy survived it too
