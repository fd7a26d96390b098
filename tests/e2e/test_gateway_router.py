"""The gatewayAPI router end to end: a real gateway (Traefik, a pod) splits continuous traffic by the
weights the operator writes on the user's HTTPRoute; the replica counts no longer decide the share."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from localcluster.testing import wait_until
from tests.conftest import ClusterHandle
from tests.e2e.gateway import Gateway
from tests.e2e.rollouts import OperatorProcess, Scenario, Traffic, make_rollout

pytestmark = pytest.mark.e2e

ROUTE = "web-route"
ANALYSIS = {
    "interval": "3s", "minSamples": 30, "failureLimit": 2, "inconclusiveLimit": 4, "minExposure": "3s",
    "metrics": [{"name": "error-rate", "type": "errorRate", "margin": 0.02}],
}
MARKED = {"X-Canary": "always"}


def gateway_rollout(name: str, version: str, models: dict[str, Any], store: str, steps: list[dict[str, Any]],
                    analysis: dict[str, Any] | None = ANALYSIS) -> dict[str, Any]:
    """2 stable + 2 canary replicas, exact weights on HTTPRoute web-route, testers marked by X-Canary."""
    rollout = make_rollout(name, version, models["models"]["lr"], store, replicas=2, steps=steps, analysis=analysis)
    rollout["spec"]["trafficRouting"] = {"gatewayAPI": {"httpRoute": ROUTE}}
    rollout["spec"]["strategy"]["canary"].update(
        canaryReplicas=2, headerRoute={"name": "X-Canary", "value": "always"})
    return rollout


def given_v1_behind_the_gateway(s: Scenario, gw: Gateway, models: dict[str, Any], store: str) -> None:
    gw.create_route(ROUTE, backend=s.name)
    s.apply(gateway_rollout(s.name, "1", models, store, steps=[{"setWeight": 50}]))
    s.wait_phase("Healthy", 120)
    wait_until(lambda: gw.weights(ROUTE) == {s.name: 100, f"{s.name}-canary": 0} and gw.is_accepted(ROUTE), 60,
               "the route to carry version 1 alone", describe=lambda: json.dumps(gw.route(ROUTE), indent=1))


def when_the_route_carries(gw: Gateway, name: str, canary_weight: int, timeout: float = 60) -> float:
    """Wait until the gateway accepted the route at this canary weight; returns when (monotonic)."""
    wanted = {name: 100 - canary_weight, f"{name}-canary": canary_weight}
    wait_until(lambda: gw.weights(ROUTE) == wanted and gw.is_accepted(ROUTE), timeout,
               f"the route at canary weight {canary_weight}", describe=lambda: json.dumps(gw.route(ROUTE), indent=1))
    return time.monotonic()


def requests_since(traffic: Traffic, since: float) -> list[str]:
    return [version for t, version, _ok in list(traffic.stats.timeline) if t >= since]


def test_exact_weights_header_route_and_a_user_edit_through_a_full_rollout(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any],
        model_store: str, gateway: Gateway) -> None:
    s = Scenario(cluster, namespace, "fraud")
    given_v1_behind_the_gateway(s, gateway, models, model_store)
    steps = [{"setWeight": 5}, {"pause": {}}, {"setWeight": 25}, {"pause": {"duration": "3s"}},
             {"setWeight": 50}, {"pause": {"duration": "3s"}}, {"setWeight": 100}]
    seen_weights: list[int] = []

    def note_weight(_st: dict[str, Any]) -> None:
        weight = gateway.weights(ROUTE).get("fraud-canary")
        if weight is not None and (not seen_weights or seen_weights[-1] != weight):
            seen_weights.append(weight)

    with Traffic(gateway.url, "fraud", models["holdout"], rate=150, burst=5) as traffic:
        # When version 2 starts on a 5% step that waits for a promote
        s.apply(gateway_rollout(s.name, "2", models, model_store, steps=steps))
        s.wait_phase("Paused", 120, check=note_weight)
        start = when_the_route_carries(gateway, "fraud", 5)
        with Traffic(gateway.url, "fraud", models["holdout"], rate=20, burst=5, headers=MARKED) as marked:
            window = wait_until(lambda: (w := requests_since(traffic, start)) and len(w) >= 4000 and w, 240,
                                "4,000 requests at weight 5%")
        # Then 5% +/- 1.5 points of unmarked requests reach the canary, on 2 + 2 pods
        share = 100 * window[:4000].count("2") / 4000
        assert 3.5 <= share <= 6.5, share
        assert {d.metadata.labels["modelrollout.dev/version"]: d.spec.replicas for d in s.deployments()} == \
            {"1": 2, "2": 2}
        # And every marked request reached the canary
        marked_answers = {v: st.ok for v, st in marked.stats.by_version.items()}
        assert set(marked_answers) == {"2"} and marked_answers["2"] > 50, (
            marked_answers, json.dumps(gateway.route(ROUTE)["spec"], indent=1), gateway.routers())
        assert marked.stats.failures == 0, marked.stats.explain()
        status = s.status()
        assert status["trafficRouter"] == "gatewayAPI" and status.get("effectiveWeight") is not None, status

        # When the user adds a filter to their rule, then the rollout goes on
        user_edit(cluster, namespace)
        s.command("promote")
        final = s.wait_phase("Healthy", 240, check=note_weight)
    assert final["stableVersion"] == "2", final
    assert traffic.stats.failures == 0, traffic.stats.explain()
    # Then the route stepped 5 -> 25 -> 50, and at 100 the stable Service (now version 2) carries it all
    assert [w for w in seen_weights if w in (5, 25, 50)] == [5, 25, 50], seen_weights
    when_the_route_carries(gateway, "fraud", 0)
    # And the user's filter is still on their rule
    rules = gateway.route(ROUTE)["spec"]["rules"]
    assert any(f.get("requestHeaderModifier", {}).get("set") == [{"name": "X-Edited-By", "value": "user"}]
               for r in rules for f in r.get("filters") or []), rules
    wait_until(lambda: len(s.deployments()) == 1, 60, "version 1's Deployment to go")


def user_edit(cluster: ClusterHandle, namespace: str) -> None:
    """A person's edit of their own rule (kubectl patch), as one would during a rollout."""
    route = json.loads(cluster.kubectl("get", "httproute", ROUTE, "-n", namespace, "-o", "json"))
    index = next(i for i, r in enumerate(route["spec"]["rules"]) if r.get("name") != "modelrollout-header-route")
    header = {"name": "X-Edited-By", "value": "user"}
    edit = {"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [header]}}
    patch = [{"op": "add", "path": f"/spec/rules/{index}/filters", "value": [edit]}]
    cluster.kubectl("patch", "httproute", ROUTE, "-n", namespace, "--type=json", "-p", json.dumps(patch))


def test_a_rollback_sets_the_canary_weight_to_zero_at_once_without_a_failed_request(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any],
        model_store: str, gateway: Gateway) -> None:
    s = Scenario(cluster, namespace, "fraud")
    given_v1_behind_the_gateway(s, gateway, models, model_store)
    with Traffic(gateway.url, "fraud", models["holdout"], rate=100, burst=5) as traffic:
        s.apply(gateway_rollout(s.name, "2", models, model_store, steps=[{"setWeight": 25}, {"pause": {}}]))
        s.wait_phase("Paused", 120)
        when_the_route_carries(gateway, "fraud", 25)
        # When the canary is aborted
        s.command("abort")
        asked = time.monotonic()
        when_the_route_carries(gateway, "fraud", 0, timeout=15)
        took = time.monotonic() - asked
        s.wait_phase("RolledBack", 30)
        wait_until(lambda: all(d.spec.replicas == 0 for d in s.deployments()
                               if d.metadata.labels["modelrollout.dev/version"] == "2"), 60, "the canary at 0 pods")
        served = traffic.stats.by_version["1"].ok
        wait_until(lambda: traffic.stats.by_version["1"].ok > served + 200, 60, "200 more answers from version 1")
    # Then the weight went to 0 within a few seconds (one tick and the gateway's reload), and no request failed
    assert took < 10, took
    assert traffic.stats.failures == 0, traffic.stats.explain()
    assert traffic.stats.by_version["2"].ok > 0


def test_with_the_gateway_stopped_the_rollout_holds_and_never_promotes(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any],
        model_store: str, gateway: Gateway) -> None:
    s = Scenario(cluster, namespace, "fraud")
    given_v1_behind_the_gateway(s, gateway, models, model_store)
    steps = [{"setWeight": 25}, {"pause": {"duration": "40s"}}, {"setWeight": 100}]

    with Traffic(gateway.url, "fraud", models["holdout"], rate=60, burst=5):
        s.apply(gateway_rollout(s.name, "2", models, model_store, steps=steps))
        s.wait_phase("Progressing", 60)
        when_the_route_carries(gateway, "fraud", 25)
        # When the gateway stops, no request reaches either version
        gateway.scale(0)
        final = s.wait_phase("Paused", 180, check=_assert_not_promoted)
    # Then the analysis found nothing to judge, and the rollout paused instead of promoting
    assert final["analysis"]["lastVerdict"] == "Inconclusive", final["analysis"]
    assert final["stableVersion"] == "1" and final["canaryVersion"] == "2", final
    assert "nconclusive" in final["message"], final["message"]


def _assert_not_promoted(st: dict[str, Any]) -> None:
    assert st.get("phase") not in ("Promoting", "Healthy") and st.get("stableVersion") == "1", st
