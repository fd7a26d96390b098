"""The analysis engine on real traffic: 3% errors against stable's 0.5% is rolled back with its
always-valid interval in status; an identical canary under the same traffic is promoted."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import ClusterHandle
from tests.e2e.rollouts import OperatorProcess, Scenario, Traffic, make_rollout

pytestmark = pytest.mark.e2e
ANALYSIS = {"interval": "3s", "minSamples": 200, "failureLimit": 1, "inconclusiveLimit": 100, "minExposure": "6s",
            "timeout": {"after": "5m", "action": "Pause"},
            "metrics": [{"name": "error-rate", "type": "errorRate", "margin": 0.01}]}
STEPS = [{"setWeight": 50}, {"pause": {"duration": "10s"}}, {"setWeight": 100}]


@pytest.mark.parametrize(("canary_errors", "outcome"), [("0.03", "RolledBack"), ("0.005", "Healthy")])
def test_three_percent_errors_against_half_a_percent(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any],
        model_store: str, canary_errors: str, outcome: str) -> None:
    s = Scenario(cluster, namespace, "ev")
    lr = models["models"]["lr"]
    s.apply(make_rollout(s.name, "1", lr, model_store, analysis=ANALYSIS,
                         faults={"MODELSERVER_CHAOS_ERROR_RATE": "0.005"}))
    s.wait_phase("Healthy", 90)
    with Traffic(s.service_url(), s.name, models["holdout"], rate=100, burst=1):
        s.apply(make_rollout(s.name, "2", lr, model_store, steps=STEPS, analysis=ANALYSIS,
                             faults={"MODELSERVER_CHAOS_ERROR_RATE": canary_errors}))
        final = s.wait_phase(outcome, 240)
    if outcome == "RolledBack":
        [result] = final["analysis"]["results"]
        low, high = result["interval"]
        # The interval comes from the test that decided, so a rollback's interval excludes 0.
        assert result["verdict"] == "Fail" and 0 < low < high and result["estimate"] > 0.01, result
        assert "always-valid interval" in result["message"] and "rollback" in result["message"], result
        assert "canary error rate" in final["message"]
    else:
        assert final["stableVersion"] == "2"
        assert any(reason == "AnalysisPassed" for _, reason, _ in s.events()), s.events()
