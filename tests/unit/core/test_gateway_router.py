"""The gatewayAPI router: exact weights on the user's HTTPRoute, a header rule for testers, pods that
need not follow the weight, and no version losing pods while the gateway may still send it traffic."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import pytest

from modelrollout.core import decide
from modelrollout.core.observations import (
    Decision,
    HeaderMatch,
    Observations,
    RouteObservation,
    TrafficIntent,
    selector,
)
from modelrollout.core.phases import Phase
from modelrollout.core.routers import gateway
from modelrollout.core.spec import RolloutSpec
from modelrollout.core.status import RolloutStatus

from .builders import at, healthy_status, make_spec, ready, spec_dict

pytestmark = pytest.mark.unit

EDIT = {"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "a", "value": "b"}]}}
USER_RULE = {"matches": [{"path": {"type": "PathPrefix", "value": "/v2"}}], "filters": [EDIT],
             "backendRefs": [{"name": "fraud", "port": 80}]}
OTHER_RULE = {"matches": [{"path": {"type": "PathPrefix", "value": "/docs"}}],
              "backendRefs": [{"name": "docs", "port": 80}]}
HEADER = HeaderMatch("X-Canary", "always")


def gateway_spec(replicas: int = 2, canary_replicas: int | None = None, header: bool = False,
                 **kwargs: Any) -> RolloutSpec:
    d = spec_dict(replicas=replicas, analysis=None, trafficRouting={"gatewayAPI": {"httpRoute": "web"}}, **kwargs)
    if canary_replicas is not None:
        d["strategy"]["canary"]["canaryReplicas"] = canary_replicas
    if header:
        d["strategy"]["canary"]["headerRoute"] = {"name": HEADER.name, "value": HEADER.value}
    return RolloutSpec.from_dict(d)


def seen(*rules: dict[str, Any], generation: int = 1, accepted: int | None = 1) -> RouteObservation:
    return RouteObservation("ml", "web", tuple(rules), "7", rollout_namespace="ml", generation=generation,
                            accepted_generation=accepted)


def weights(rule: dict[str, Any]) -> dict[str, int]:
    return {r["name"]: r["weight"] for r in rule["backendRefs"]}


@pytest.mark.parametrize(("replicas", "weight"), [(2, 5), (4, 5), (1, 1), (10, 33), (3, 99)])
def test_the_route_carries_exactly_the_weight_at_any_replica_count(replicas: int, weight: int) -> None:
    spec = gateway_spec(replicas=replicas)
    [rule] = gateway.desired_rules(spec, TrafficIntent("1", "2", weight), seen(USER_RULE))
    assert weights(rule) == {"fraud": 100 - weight, "fraud-canary": weight}


def test_only_the_weights_change_and_the_users_rules_stay_as_they_are() -> None:
    spec = gateway_spec()
    other_rule, rule = gateway.desired_rules(spec, TrafficIntent("1", "2", 25), seen(OTHER_RULE, USER_RULE))
    assert other_rule == OTHER_RULE
    assert {k: v for k, v in rule.items() if k != "backendRefs"} == {k: v for k, v in USER_RULE.items()
                                                                      if k != "backendRefs"}
    assert rule["backendRefs"] == [{"name": "fraud", "port": 80, "weight": 75},
                                   {"name": "fraud-canary", "port": 80, "weight": 25}]


def test_a_header_rule_sends_marked_requests_to_the_canary_only_while_one_runs() -> None:
    spec = gateway_spec(header=True)
    intent = TrafficIntent("1", "2", 5, canary_header=HEADER)
    marked, rule = gateway.desired_rules(spec, intent, seen(USER_RULE))
    assert marked["name"] == gateway.HEADER_RULE
    assert marked["matches"] == [{"path": {"type": "PathPrefix", "value": "/v2"},
                                  "headers": [{"type": "Exact", "name": "X-Canary", "value": "always"}]}]
    assert marked["filters"] == USER_RULE["filters"] and weights(marked) == {"fraud-canary": 1}
    assert weights(rule) == {"fraud": 95, "fraud-canary": 5}
    # Once no canary runs the operator's rule goes, and applying twice changes nothing
    [after] = gateway.desired_rules(spec, TrafficIntent("2"), seen(marked, rule))
    assert weights(after) == {"fraud": 100, "fraud-canary": 0}
    assert gateway.desired_rules(spec, intent, seen(marked, rule)) == [marked, rule]


@pytest.mark.parametrize(
    ("canary_replicas", "header", "weight", "pods"),
    [(None, False, 5, {"2": 1, "1": 2}), (2, False, 5, {"2": 2, "1": 2}), (None, True, 0, {"2": 1, "1": 2}),
     (None, False, 0, {"2": 0, "1": 2}), (None, False, 60, {"2": 2, "1": 2}), (3, False, 100, {"2": 2, "1": 2})],
)
def test_canary_pods_follow_the_weight_or_a_floor_and_the_stable_version_keeps_all_its_pods(
        canary_replicas: int | None, header: bool, weight: int, pods: dict[str, int]) -> None:
    spec = gateway_spec(replicas=2, canary_replicas=canary_replicas, header=header)
    intent = TrafficIntent("1", "2", weight, canary_header=HEADER if header else None,
                           canary_pods_floor=canary_replicas or 0)
    assert gateway.pods(spec, intent) == pods
    assert gateway.selectors(spec, "fraud", intent) == {"fraud": selector("fraud", "1"),
                                                        "fraud-canary": selector("fraud", "2")}


@pytest.mark.parametrize(
    ("canary_ready", "route_weight", "routable_weight"),
    [(0, 0, None), (1, 5, 5), (1, 0, 0), (2, 5, 25)],
)
def test_a_weight_rises_only_once_the_canary_pods_for_it_are_ready(
        canary_ready: int, route_weight: int, routable_weight: int | None) -> None:
    spec = gateway_spec(replicas=4)  # weight 25 of 4 replicas: 1 pod; asked for 2 here by the floor
    intent = TrafficIntent("1", "2", 25, canary_pods_floor=2)
    route = gateway.desired_rules(spec, TrafficIntent("1", "2", route_weight), seen(USER_RULE))
    obs = Observations("fraud", 1, deployments={"1": ready(4), "2": ready(2, canary_ready)}, route=seen(*route))
    got = gateway.routable(spec, intent, obs)
    assert (got.canary_weight if got.canary else None) == routable_weight


def test_routed_only_once_the_gateway_accepted_the_current_generation() -> None:
    spec = gateway_spec()
    intent = TrafficIntent("1", "2", 5)
    rules = gateway.desired_rules(spec, intent, seen(USER_RULE))
    pinned = {"fraud": selector("fraud", "1")}
    assert gateway.is_routed(spec, intent, Observations("fraud", 1, selectors=pinned, route=seen(*rules)))
    stale = seen(*rules, generation=2, accepted=1)
    assert not gateway.is_routed(spec, intent, Observations("fraud", 1, selectors=pinned, route=stale))
    assert not gateway.is_routed(spec, intent, Observations("fraud", 1, selectors=pinned, route=seen(USER_RULE)))


@dataclass
class GatewayWorld:
    """Deployments, Service selectors and one HTTPRoute, as the cluster and a gateway would keep them."""

    spec: RolloutSpec
    deployments: dict[str, Any] = field(default_factory=dict)
    selectors: dict[str, Any] = field(default_factory=dict)
    route: RouteObservation = field(default_factory=lambda: seen(USER_RULE))

    def observe(self) -> Observations:
        return Observations("fraud", 1, deployments=dict(self.deployments), selectors=dict(self.selectors),
                            route=self.route)

    def apply(self, d: Decision, accept: bool) -> None:
        for version, intent in (d.deployments or {}).items():
            self.deployments[version] = ready(intent.replicas)
        self.selectors.update(d.selectors)
        if d.route is not None:
            generation = self.route.generation + 1
            self.route = replace(self.route, rules=d.route.rules, generation=generation)
        if accept:
            self.route = replace(self.route, accepted_generation=self.route.generation)


def paused_at_5_percent(spec: RolloutSpec) -> tuple[GatewayWorld, RolloutStatus]:
    """Version 2 at a 5% route weight, paused, with the gateway accepting every route at once."""
    world = GatewayWorld(spec, deployments={"1": ready(2)})
    status: RolloutStatus = healthy_status("1")
    for i in range(6):
        d = decide(spec, status, world.observe(), at(i))
        world.apply(d, accept=True)
        status = d.status
    return world, status


def abort(spec: RolloutSpec, status: RolloutStatus, world: GatewayWorld, now: datetime) -> Decision:
    return decide(spec, status, replace(world.observe(), annotations={
        "modelrollout.dev/command": "abort", "modelrollout.dev/command-id": "a1"}), now)


def test_a_rollback_writes_weight_zero_at_once_and_keeps_the_canary_pods_until_the_gateway_took_it() -> None:
    spec = gateway_spec(replicas=2, canary_replicas=2, steps=[{"setWeight": 5}, {"pause": {}}])
    world, status = paused_at_5_percent(spec)
    assert status.phase == Phase.PAUSED and weights(dict(world.route.rules[0])) == {"fraud": 95, "fraud-canary": 5}
    assert status.traffic_router == "gatewayAPI"
    # When the canary is rolled back (abort) and the gateway has not yet taken the new route in
    aborted = abort(spec, status, world, at(10))
    assert aborted.status.phase == Phase.ROLLED_BACK
    assert aborted.route is not None and weights(dict(aborted.route.rules[0])) == {"fraud": 100, "fraud-canary": 0}
    assert aborted.deployments is not None and aborted.deployments["2"].replicas == 2  # still reachable
    assert aborted.selectors["fraud-canary"] == selector("fraud", "1")  # and its Service already on stable
    world.apply(aborted, accept=False)
    held = decide(spec, aborted.status, world.observe(), at(11))
    assert held.deployments is not None and held.deployments["2"].replicas == 2
    # Then once the gateway accepted it, the canary keeps its pods scaleDownDelaySeconds (30 s) more,
    # because the gateway applies an accepted route a moment later, and then goes to 0 pods
    world.apply(held, accept=True)
    accepted = decide(spec, held.status, world.observe(), at(12))
    assert accepted.deployments is not None and accepted.deployments["2"].replicas == 2
    assert accepted.next_tick_at == at(42) and accepted.status.route_accepted_at == at(12)
    world.apply(accepted, accept=True)
    still = decide(spec, accepted.status, world.observe(), at(41))
    assert still.deployments is not None and still.deployments["2"].replicas == 2
    cut = decide(spec, still.status, world.observe(), at(42))
    assert cut.deployments is not None and cut.deployments["2"].replicas == 0


def test_with_no_scale_down_delay_the_canary_goes_as_soon_as_the_gateway_accepted_the_route() -> None:
    spec = gateway_spec(replicas=2, canary_replicas=2, steps=[{"setWeight": 5}, {"pause": {}}])
    spec = replace(spec, traffic_routing=replace(spec.traffic_routing, scale_down_delay_seconds=0.0))
    world, status = paused_at_5_percent(spec)
    aborted = abort(spec, status, world, at(10))
    world.apply(aborted, accept=True)
    cut = decide(spec, aborted.status, world.observe(), at(11))
    assert cut.deployments is not None and cut.deployments["2"].replicas == 0


def test_a_step_completes_only_after_the_gateway_accepted_its_weight() -> None:
    spec = gateway_spec(replicas=2, steps=[{"setWeight": 5}, {"setWeight": 50}, {"pause": {}}])
    world = GatewayWorld(spec, deployments={"1": ready(2)})
    status = healthy_status("1")
    for i in range(4):
        d = decide(spec, status, world.observe(), at(i))
        world.apply(d, accept=False)
        status = d.status
    assert status.current_step_index == 0 and status.reason == "AwaitingRoute", status.message
    d = decide(spec, status, world.observe(), at(5))
    world.apply(d, accept=True)
    d = decide(spec, d.status, world.observe(), at(6))
    assert d.status.current_step_index == 1


@pytest.mark.parametrize(
    ("extra", "field_named"),
    [({"trafficRouting": {"gatewayAPI": {}}}, "spec.trafficRouting.gatewayAPI.httpRoute"),
     ({"trafficRouting": {}}, "spec.trafficRouting"),
     ({"trafficRouting": {"service": {}}}, "spec.trafficRouting.service"),
     ({"trafficRouting": {"gatewayAPI": {"httpRoute": "Web_Route"}}}, "spec.trafficRouting.gatewayAPI.httpRoute")],
)
def test_a_bad_traffic_routing_names_the_field(extra: dict[str, Any], field_named: str) -> None:
    with pytest.raises(ValueError, match=field_named.replace(".", r"\.")):
        RolloutSpec.from_dict(spec_dict(**extra))


def test_a_header_route_without_the_gateway_router_is_refused_rather_than_ignored() -> None:
    d = spec_dict()
    d["strategy"]["canary"]["headerRoute"] = {"name": "X-Canary", "value": "always"}
    with pytest.raises(ValueError, match=r"spec\.strategy\.canary: headerRoute"):
        RolloutSpec.from_dict(d)
    assert make_spec().traffic_routing is None


def test_an_ab_experiment_through_the_gateway_splits_requests_exactly_and_starts_once_the_route_is_taken() -> None:
    d = spec_dict(replicas=2, trafficRouting={"gatewayAPI": {"httpRoute": "web"}})
    d["strategy"] = {"abTest": {"weight": 10}}
    spec = RolloutSpec.from_dict(d)
    world = GatewayWorld(spec, deployments={"1": ready(2)}, selectors={"fraud": selector("fraud", "1")})
    status, now = healthy_status(), at(0)
    started = False
    for second in range(1, 8):
        decision = decide(spec, status, world.observe(), now)
        world.apply(decision, accept=second >= 4)  # the gateway takes the route only from the 4th second
        status, now = decision.status, at(second)
        if status.analysis.next_tick_at is not None and not started:
            started = True
            # Then the experiment starts only once the gateway carries B at exactly 10%, on one pod of B
            # beside A's two (the route, not the pods, splits the requests)
            assert world.route.accepted_generation == world.route.generation
            assert weights(world.route.rules[0]) == {"fraud": 90, "fraud-canary": 10}
            assert {v: o.replicas for v, o in world.deployments.items()} == {"1": 2, "2": 1}
            assert status.ab_test is not None and status.ab_test.split == 0.1
            assert second >= 4
    assert started, status.message


def sticky_spec() -> RolloutSpec:
    d = spec_dict(replicas=2, trafficRouting={"gatewayAPI": {"httpRoute": "web"}})
    d["strategy"] = {"abTest": {"weight": 30, "goal": {"type": "outcome", "outcome": "revenue"},
                                "sticky": {"cookie": "ab-arm", "maxAge": "1h"}}}
    return RolloutSpec.from_dict(d)


def test_a_sticky_ab_split_adds_a_cookie_rule_per_arm_beside_the_weights_and_removes_them_at_the_end() -> None:
    spec = sticky_spec()
    assert spec.strategy.sticky is not None
    intent = TrafficIntent("1", "2.1", 30, sticky=spec.strategy.sticky)
    a, b, rule = gateway.desired_rules(spec, intent, seen(USER_RULE))
    assert (a["name"], b["name"]) == gateway.STICKY_RULES
    assert a["matches"] == [{"path": {"type": "PathPrefix", "value": "/v2"}, "headers": [
        {"type": "RegularExpression", "name": "Cookie", "value": r"(^|;\s*)ab-arm=1(;|$)"}]}]
    assert b["matches"][0]["headers"] == [
        {"type": "RegularExpression", "name": "Cookie", "value": r"(^|;\s*)ab-arm=2\.1(;|$)"}]
    assert weights(a) == {"fraud": 1} and weights(b) == {"fraud-canary": 1}
    assert a["filters"] == b["filters"] == USER_RULE["filters"], "the user's rule's filters apply to them too"
    assert weights(rule) == {"fraud": 70, "fraud-canary": 30}
    # The cookie rules are not the split: the observed weight is the user's rule's
    observed = Observations("fraud", 1, route=seen(a, b, rule))
    assert gateway.observed_weight(spec, observed) == 30
    # Applying twice changes nothing; once the experiment ends both rules go
    assert gateway.desired_rules(spec, intent, seen(a, b, rule)) == [a, b, rule]
    [after] = gateway.desired_rules(spec, TrafficIntent("2.1"), seen(a, b, rule))
    assert weights(after) == {"fraud": 100, "fraud-canary": 0}


def test_a_sticky_experiment_tells_every_pod_to_set_the_cookie_while_it_runs_only() -> None:
    from modelrollout.core import abtest, shadowstep
    from modelrollout.core.status import ModelRecord

    spec = sticky_spec()
    running = RolloutStatus(phase=Phase.PROGRESSING, stable_model=ModelRecord("1", "u"),
                            canary_model=ModelRecord("2", "u"))
    traffic = abtest.traffic(spec, running)
    assert traffic.sticky == spec.strategy.sticky
    assert abtest.traffic(spec, replace(running, phase=Phase.PROMOTING)).sticky is None
    intent = shadowstep.mirror_intent(spec, Observations("r", 1), traffic.shadow, traffic.sticky)
    assert intent is not None and intent.data == {
        "mirror.yaml": "percent: 0\noutcomes: [revenue]\nsticky: {cookie: ab-arm, maxAge: 3600}\n"}
