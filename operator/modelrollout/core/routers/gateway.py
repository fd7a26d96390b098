"""The `gatewayAPI` router: exact canary weights on the backendRefs of a user's HTTPRoute.

The user owns the HTTPRoute (hostnames, matches, filters, parents); the operator only rewrites the
weights of the backendRefs that name the rollout's Services, and keeps rules of its own: with
`canary.headerRoute` one (HEADER_RULE) that sends marked requests to the canary, with an A/B experiment's
`sticky` split two (STICKY_RULES) that send requests whose cookie names a version to that version. Two Services carry
the versions: `spec.service.name` pins the stable version, `<spec.service.name>-canary` the canary
(or the stable version while no canary runs, so a stale weight on it still reaches Ready pods).

Weights are exact at any replica count, so the canary's pods need not follow the weight: they scale
by it (rounded up) or stay at `canary.canaryReplicas`, and the stable version keeps all its pods.
At 5% on 2 + 2 replicas the rule reads: fraud weight 95, fraud-canary weight 5.

A weight only rises once the canary's pods for it are Ready, and a lower weight is written at once;
versions lose pods only after the gateway has accepted the route that stops sending them traffic
(decide.py holds them until `is_routed`).
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from modelrollout.core.observations import (
    HeaderMatch,
    Observations,
    RouteIntent,
    RouteObservation,
    TrafficIntent,
    selector,
)
from modelrollout.core.spec import RolloutSpec

HEADER_RULE = "modelrollout-header-route"  # a rule the operator adds (and removes) itself
# An A/B experiment's sticky split: one rule per arm sending requests whose cookie names that arm's version to it.
STICKY_RULES = ("modelrollout-sticky-a", "modelrollout-sticky-b")
OWN_RULES = frozenset({HEADER_RULE, *STICKY_RULES})
ALL_PATHS = {"path": {"type": "PathPrefix", "value": "/"}}  # the Gateway API's default match


def canary_service(spec: RolloutSpec) -> str:
    return f"{spec.service.name}-canary"


def canary_pods(spec: RolloutSpec, traffic: TrafficIntent) -> int:
    """Canary pods for `weight`: by the weight (rounded up), at least canaryReplicas, and at least one
    while a header route may send testers to it.

    >>> from modelrollout.core.spec import CanaryStep, CanaryStrategy, ModelSpec, ServiceSpec
    >>> spec = RolloutSpec(ModelSpec("m", "2", "u"), ServiceSpec("s"), CanaryStrategy((CanaryStep(5),)), replicas=2)
    >>> [canary_pods(spec, TrafficIntent("1", "2", w)) for w in (0, 5, 50, 51, 100)]
    [0, 1, 1, 2, 2]
    >>> canary_pods(spec, TrafficIntent("1", "2", 5, canary_pods_floor=2))
    2
    """
    if traffic.canary_weight >= 100:
        return spec.replicas
    floor = max(traffic.canary_pods_floor, 1 if traffic.canary_header else 0)
    return max(math.ceil(spec.replicas * traffic.canary_weight / 100), floor)


def pods(spec: RolloutSpec, traffic: TrafficIntent) -> dict[str, int]:
    """The stable version keeps all its pods while a canary runs (the route, not pods, splits)."""
    if traffic.stable is None:
        return {}
    if traffic.canary is None:
        return {traffic.stable: spec.replicas}
    return {traffic.canary: canary_pods(spec, traffic), traffic.stable: spec.replicas}


def share(spec: RolloutSpec, traffic: TrafficIntent) -> float:
    """Exactly the weight: the gateway draws each request's backend (header-routed requests aside)."""
    return traffic.canary_weight / 100 if traffic.canary is not None else 0.0


def selectors(spec: RolloutSpec, rollout: str, traffic: TrafficIntent) -> dict[str, Mapping[str, str]]:
    if traffic.stable is None:
        return {}
    return {spec.service.name: selector(rollout, traffic.stable),
            canary_service(spec): selector(rollout, traffic.canary or traffic.stable)}


def routable(spec: RolloutSpec, traffic: TrafficIntent, obs: Observations) -> TrafficIntent:
    """The part of `traffic` the Ready pods can take now: no canary while none of its pods is Ready,
    and a rising weight held at the route's current one until all pods for the new weight are Ready.

    >>> from modelrollout.core.observations import DeploymentObservation as D
    >>> from modelrollout.core.spec import CanaryStep, CanaryStrategy, ModelSpec, ServiceSpec
    >>> spec = RolloutSpec(ModelSpec("m", "2", "u"), ServiceSpec("s"), CanaryStrategy((CanaryStep(50),)), replicas=4)
    >>> obs = Observations("r", 1, deployments={"1": D(4, 4, 4, 4), "2": D(2, 1, 2, 1)})
    >>> got = routable(spec, TrafficIntent("1", "2", 50), obs)  # 1 of 2 pods Ready, the route at 0%
    >>> got.canary, got.canary_weight
    ('2', 0)
    """
    if traffic.canary is None:
        return traffic
    if obs.ready_pods(traffic.canary) == 0:
        return TrafficIntent(stable=traffic.stable)  # its header rule waits too: no pod could answer
    if obs.has_ready_pods(traffic.canary, pods(spec, traffic)[traffic.canary]):
        return traffic
    current = observed_weight(spec, obs) or 0
    return replace(traffic, canary_weight=min(traffic.canary_weight, current))


def route(spec: RolloutSpec, traffic: TrafficIntent, obs: Observations) -> RouteIntent | None:
    """The observed route with the weights (and header rule) for `traffic`; None when nothing changes."""
    seen = obs.route
    if seen is None:
        return None
    rules = desired_rules(spec, traffic, seen)
    if rules == [dict(r) for r in seen.rules]:
        return None
    return RouteIntent(namespace=seen.namespace, name=seen.name, rules=tuple(rules),
                       resource_version=seen.resource_version)


def is_routed(spec: RolloutSpec, traffic: TrafficIntent, obs: Observations) -> bool:
    """Whether the gateway has accepted a route carrying exactly `traffic`, and the stable Service
    pins the stable version."""
    seen = obs.route
    if seen is None or not seen.is_current or traffic.stable is None:
        return False
    if obs.selectors.get(spec.service.name) != selector(obs.name, traffic.stable):
        return False
    rules = desired_rules(spec, traffic, seen)
    return _has_split(spec, seen) and rules == [dict(r) for r in seen.rules]


def observed_weight(spec: RolloutSpec, obs: Observations) -> int | None:
    """The canary's share (percent) in the first rule that splits between the rollout's Services."""
    seen = obs.route
    if seen is None:
        return None
    for rule in seen.rules:
        refs = [r for r in rule.get("backendRefs") or [] if _names(r, seen, spec.service.name)
                or _names(r, seen, canary_service(spec))]
        if rule.get("name") in OWN_RULES or not refs:
            continue
        total = sum(_weight(r) for r in refs)
        canary = sum(_weight(r) for r in refs if _names(r, seen, canary_service(spec)))
        return 0 if total == 0 else round(100 * canary / total)
    return None


def desired_rules(spec: RolloutSpec, traffic: TrafficIntent, seen: RouteObservation) -> list[dict[str, Any]]:
    """`rules` with every rule that names the stable Service split between stable and canary, and the
    header rule first when a canary runs and canary.headerRoute is set. Everything else is kept.

    >>> from modelrollout.core.spec import CanaryStep, CanaryStrategy, ModelSpec, ServiceSpec
    >>> spec = RolloutSpec(ModelSpec("m", "2", "u"), ServiceSpec("fraud"), CanaryStrategy((CanaryStep(5),)))
    >>> rule = {"filters": [{"type": "RequestHeaderModifier"}], "backendRefs": [{"name": "fraud", "port": 80}]}
    >>> seen = RouteObservation("ml", "web", (rule,), "7", rollout_namespace="ml")
    >>> [(r["name"], r["weight"]) for r in desired_rules(spec, TrafficIntent("1", "2", 5), seen)[0]["backendRefs"]]
    [('fraud', 95), ('fraud-canary', 5)]
    """
    main, canary = spec.service.name, canary_service(spec)
    weight = traffic.canary_weight if traffic.canary is not None else 0
    out: list[dict[str, Any]] = []
    header: dict[str, Any] | None = None
    sticky: list[dict[str, Any]] = []
    for rule in seen.rules:
        if rule.get("name") in OWN_RULES:
            continue
        refs = list(rule.get("backendRefs") or [])
        stable_ref = next((r for r in refs if _names(r, seen, main)), None)
        if stable_ref is None:
            out.append(copy.deepcopy(dict(rule)))
            continue
        canary_ref = next((r for r in refs if _names(r, seen, canary)), None)
        canary_ref = dict(copy.deepcopy(canary_ref if canary_ref is not None else stable_ref), name=canary)
        others = [copy.deepcopy(dict(r)) for r in refs if not (_names(r, seen, main) or _names(r, seen, canary))]
        split = dict(copy.deepcopy(dict(rule)))
        split["backendRefs"] = [dict(copy.deepcopy(dict(stable_ref)), weight=100 - weight),
                                dict(canary_ref, weight=weight), *others]
        out.append(split)
        if header is None and traffic.canary is not None and traffic.canary_header is not None:
            header = _header_rule(split, canary_ref, traffic.canary_header)
        if not sticky and traffic.canary is not None and traffic.sticky is not None and traffic.stable is not None:
            sticky = [_cookie_rule(split, ref, name, traffic.sticky.cookie, version) for name, ref, version in (
                (STICKY_RULES[0], stable_ref, traffic.stable), (STICKY_RULES[1], canary_ref, traffic.canary))]
    return ([header] if header is not None else []) + sticky + out


def _header_rule(rule: Mapping[str, Any], canary_ref: Mapping[str, Any], header: HeaderMatch) -> dict[str, Any]:
    """A copy of the user's rule whose every match also requires the header, sending all to the canary."""
    wanted = {"type": "Exact", "name": header.name, "value": header.value}
    return _marked_rule(HEADER_RULE, rule, canary_ref, wanted)


def _cookie_rule(rule: Mapping[str, Any], ref: Mapping[str, Any], name: str, cookie: str,
                 version: str) -> dict[str, Any]:
    """A copy of the user's rule for requests whose Cookie header holds `cookie=version`, sent to `ref` only.
    (The Gateway API has no cookie match; a header match of type RegularExpression on Cookie is the way.)

    >>> _cookie_rule({}, {"name": "fraud-canary"}, "r", "arm", "2.1")["matches"][0]["headers"][0]["value"]
    '(^|;\\\\s*)arm=2\\\\.1(;|$)'
    """
    wanted = {"type": "RegularExpression", "name": "Cookie", "value": rf"(^|;\s*){cookie}={re.escape(version)}(;|$)"}
    return _marked_rule(name, rule, ref, wanted)


def _marked_rule(name: str, rule: Mapping[str, Any], ref: Mapping[str, Any], wanted: dict[str, str]) -> dict[str, Any]:
    """A copy of the user's rule whose every match also requires the header `wanted`, all sent to `ref`."""
    matches = []
    for match in rule.get("matches") or [ALL_PATHS]:
        m = copy.deepcopy(dict(match))
        m["headers"] = [h for h in m.get("headers") or [] if h.get("name", "").lower() != wanted["name"].lower()]
        m["headers"].append(wanted)
        matches.append(m)
    out: dict[str, Any] = {"name": name, "matches": matches}
    if rule.get("filters"):
        out["filters"] = copy.deepcopy(rule["filters"])
    out["backendRefs"] = [dict(copy.deepcopy(dict(ref)), weight=1)]
    return out


def _has_split(spec: RolloutSpec, seen: RouteObservation) -> bool:
    return any(_names(r, seen, spec.service.name) for rule in seen.rules for r in rule.get("backendRefs") or [])


def _names(ref: Mapping[str, Any], seen: RouteObservation, service: str) -> bool:
    """Whether a backendRef points at the rollout's Service `service` (a ref without a namespace
    means the route's own)."""
    return (ref.get("name") == service and ref.get("group", "") in ("", "core")
            and ref.get("kind", "Service") == "Service"
            and ref.get("namespace", seen.namespace) == seen.rollout_namespace)


def _weight(ref: Mapping[str, Any]) -> int:
    return int(ref.get("weight", 1))  # the Gateway API's default weight
