"""The `replicas` router: a canary weight realised by replica counts behind one Service that
selects every version of the rollout.

With plain Service load balancing each ready pod gets about the same share of connections, so
the canary's expected share of requests is its share of ready pods. Rounding can only make the
share approximate; the operator reports the share it measured (effectiveWeight) next to it.
At weight 25 with 4 replicas: 1 canary pod and 3 stable pods, all behind Service <spec.service.name>.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from modelrollout.core.observations import Observations, RouteIntent, TrafficIntent, selector
from modelrollout.core.spec import RolloutSpec


def replicas_for_weight(total: int, weight: int) -> tuple[int, int]:
    """(canary, stable) pods for `weight` percent of `total` pods.

    Rounds to the nearest pod (halves go to the canary), then two guards win over rounding:
    a canary with weight > 0 gets at least one pod, and a stable with weight < 100 keeps at
    least one pod (when total is 1, weight 1..99 therefore means 1 canary and 1 stable pod:
    the rollout surges one pod above `total` rather than pretend 0% or 100%).

    >>> [replicas_for_weight(4, w) for w in (0, 10, 25, 50, 60, 99, 100)]
    [(0, 4), (1, 3), (1, 3), (2, 2), (2, 2), (3, 1), (4, 0)]
    >>> replicas_for_weight(10, 25), replicas_for_weight(1, 50), replicas_for_weight(3, 50)
    ((3, 7), (1, 1), (2, 1))
    """
    if total < 1 or not 0 <= weight <= 100:
        raise ValueError(f"replicas_for_weight: total {total} must be >= 1 and weight {weight} in 0..100")
    if weight == 0:
        return 0, total
    if weight == 100:
        return total, 0
    canary = max(1, int(total * weight / 100 + 0.5))
    if total > 1:
        canary = min(canary, total - 1)
    return canary, max(1, total - canary)


def pods(spec: RolloutSpec, traffic: TrafficIntent) -> dict[str, int]:
    """Canary and stable pods for the weight; spec.replicas for a lone stable version.

    >>> from modelrollout.core.spec import CanaryStrategy, ModelSpec, ServiceSpec
    >>> spec = RolloutSpec(ModelSpec("m", "2", "u"), ServiceSpec("s"), CanaryStrategy(()), replicas=4)
    >>> pods(spec, TrafficIntent("1", "2", 25)), pods(spec, TrafficIntent("1"))
    ({'2': 1, '1': 3}, {'1': 4})
    """
    if traffic.stable is None:
        return {}
    if traffic.shadow is not None:  # the stable version serves every user; the shadow runs beside it
        return {traffic.stable: spec.replicas, traffic.shadow.version: traffic.shadow.pods}
    if traffic.canary is None:
        return {traffic.stable: spec.replicas}
    canary, stable = replicas_for_weight(spec.replicas, traffic.canary_weight)
    return {traffic.canary: canary, traffic.stable: stable}


def selectors(spec: RolloutSpec, rollout: str, traffic: TrafficIntent) -> dict[str, Mapping[str, str]]:
    """Every version behind the main Service; during a shadow stage the stable version alone, and the
    shadow version behind its own Service <service>-shadow (which no user-facing route names).

    >>> from modelrollout.core.observations import ShadowTraffic
    >>> from modelrollout.core.spec import CanaryStrategy, ModelSpec, ServiceSpec
    >>> spec = RolloutSpec(ModelSpec("m", "2", "u"), ServiceSpec("s"), CanaryStrategy(()))
    >>> selectors(spec, "r", TrafficIntent("1", shadow=ShadowTraffic("2", 1)))["s-shadow"]
    {'modelrollout.dev/rollout': 'r', 'modelrollout.dev/version': '2'}
    """
    if traffic.shadow is not None:
        return {spec.service.name: selector(rollout, traffic.stable),
                f"{spec.service.name}-shadow": selector(rollout, traffic.shadow.version)}
    if traffic.pin_stable and traffic.stable is not None:
        return {spec.service.name: selector(rollout, traffic.stable)}
    return {spec.service.name: selector(rollout, None)}


def is_routed(spec: RolloutSpec, traffic: TrafficIntent, obs: Observations) -> bool:
    """The Service selects what `selectors` says: every version (the weight is whatever the Ready pods make
    it), or during a shadow stage the stable version alone."""
    wanted = selectors(spec, obs.name, traffic)
    return all(obs.selectors.get(name) == sel for name, sel in wanted.items())


def routable(spec: RolloutSpec, traffic: TrafficIntent, obs: Observations) -> TrafficIntent:
    """Pods are the weight here, so whatever runs is routable; but a main Service narrowed to the stable
    version stays so while a version without traffic still has pods (a shadow candidate rolled back), so
    they never become endpoints of the user-facing Service on their way out."""
    if traffic.shadow is not None or traffic.canary is not None or traffic.stable is None:
        return traffic
    narrowed = obs.selectors.get(spec.service.name) == selector(obs.name, traffic.stable)
    leaving = any(v != traffic.stable and (d.replicas > 0 or d.ready_replicas > 0)
                  for v, d in obs.deployments.items())
    return replace(traffic, pin_stable=True) if narrowed and leaving else traffic


def route(spec: RolloutSpec, traffic: TrafficIntent, obs: Observations) -> RouteIntent | None:
    return None  # no HTTPRoute: Services carry the traffic


def share(spec: RolloutSpec, traffic: TrafficIntent) -> float:
    """The canary's pods over all pods the Service selects (each pod answers an equal share of connections).

    >>> from modelrollout.core.spec import CanaryStep, CanaryStrategy, ModelSpec, ServiceSpec
    >>> spec = RolloutSpec(ModelSpec("m", "2", "u"), ServiceSpec("s"), CanaryStrategy((CanaryStep(30),)), replicas=4)
    >>> share(spec, TrafficIntent("1", "2", 30))  # 30% of 4 pods is 1 pod of 4
    0.25
    """
    counts = pods(spec, traffic)
    if traffic.canary is None or not counts:
        return 0.0
    return counts.get(traffic.canary, 0) / (sum(counts.values()) or 1)
