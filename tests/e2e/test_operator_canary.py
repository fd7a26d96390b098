"""Canary rollouts end to end: a good model is promoted, bad ones are rolled back, with
continuous traffic through the Service the whole time."""

from __future__ import annotations

from typing import Any

import pytest

from localcluster.testing import wait_until
from tests.conftest import ClusterHandle
from tests.e2e.rollouts import OperatorProcess, Scenario, Traffic, make_rollout

pytestmark = pytest.mark.e2e

ANALYSIS = {
    "interval": "3s", "minSamples": 60, "failureLimit": 2, "inconclusiveLimit": 30, "minExposure": "4s",
    "metrics": [
        {"name": "error-rate", "type": "errorRate", "margin": 0.02},
        {"name": "latency-p99", "type": "latency", "quantile": 0.99, "maxRatioToStable": 3.0},
    ],
}


def _deploy_v1(s: Scenario, models: dict[str, Any], store: str) -> None:
    s.apply(make_rollout(s.name, "1", models["models"]["lr"], store, analysis=ANALYSIS))
    s.wait_phase("Healthy", 90)


def test_good_model_is_promoted_with_no_failed_request(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any],
        model_store: str) -> None:
    s = Scenario(cluster, namespace, "fraud")
    _deploy_v1(s, models, model_store)
    with Traffic(s.service_url(), "fraud", models["holdout"], burst=1) as traffic:
        s.apply(make_rollout(s.name, "2", models["models"]["lr"], model_store, analysis=ANALYSIS))
        final = s.wait_phase("Healthy", 240)
    assert final["stableVersion"] == "2" and "canaryVersion" not in final
    assert traffic.stats.failures == 0, traffic.stats.explain()
    assert traffic.stats.by_version["2"].ok > 100
    # effectiveWeight (measured from request counters) stays within 10 points of the share of ready
    # pods, for every analysis tick whose whole window saw one replica share.
    compared = []
    for i in range(1, len(s.seen)):
        before, now = s.seen[i - 1].get("analysis") or {}, s.seen[i].get("analysis") or {}
        if now.get("ticks", 0) > before.get("ticks", 0) and s.seen[i].get("phase") == "Progressing":
            window = s.shares[max(0, i - 10):i + 1]  # the looks of the last 3 s interval or so
            if None not in window and len(set(window)) == 1:
                compared.append((window[0], s.seen[i]["effectiveWeight"]))
    print("(replica share, effectiveWeight):", compared)
    assert {round(share) for share, _ in compared} >= {25, 50, 75}, compared
    assert all(abs(share - eff) <= 10 for share, eff in compared), compared
    wait_until(lambda: len(s.deployments()) == 1, 30, "the old version's Deployment to go")
    [d] = s.deployments()
    assert d.metadata.labels["modelrollout.dev/version"] == "2" and d.spec.replicas == 4


def test_canary_is_promoted_although_clients_abort_a_fifth_of_their_uploads(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any],
        model_store: str) -> None:
    # An absolute bound: were aborted uploads counted as errors, the canary's rate would be ~20%.
    analysis = {**ANALYSIS, "metrics": [{"name": "error-rate", "type": "errorRate", "max": 0.05}]}
    s = Scenario(cluster, namespace, "aborts")
    s.apply(make_rollout(s.name, "1", models["models"]["lr"], model_store, analysis=analysis))
    s.wait_phase("Healthy", 90)

    def settled() -> dict[str, Any] | None:  # promoted or rolled back, whichever comes first
        obj = s.get()
        st = dict(obj.get("status") or {})
        current = st.get("observedGeneration") == obj["metadata"].get("generation")
        return st if current and st.get("phase") in ("Healthy", "RolledBack") else None

    with Traffic(s.service_url(), s.name, models["holdout"], burst=1, abort_fraction=0.2) as traffic:
        s.apply(make_rollout(s.name, "2", models["models"]["lr"], model_store, analysis=analysis))
        final = wait_until(settled, 240, "version 2 to be promoted or rolled back", interval=0.5,
                           describe=s.describe)
    assert (final["phase"], final["stableVersion"]) == ("Healthy", "2"), final.get("message")
    stats = traffic.stats
    answered = sum(stats.statuses.values())
    assert stats.aborted_uploads > 0.1 * (answered + stats.aborted_uploads), (stats.aborted_uploads, answered)
    assert stats.failures == 0, (stats.statuses, stats.transport_errors)
