"""The `replicas` router: a canary weight realised by replica counts behind one Service that
selects every version of the rollout (see modelrollout.core.weights for the rounding rule).

At weight 25 with 4 replicas: 1 canary pod and 3 stable pods, all behind Service <spec.service.name>.
"""

from __future__ import annotations

from collections.abc import Mapping

from modelrollout.core.observations import Observations, TrafficIntent, selector
from modelrollout.core.spec import RolloutSpec
from modelrollout.core.weights import replicas_for_weight


def pods(spec: RolloutSpec, traffic: TrafficIntent) -> dict[str, int]:
    """
    >>> from modelrollout.core.spec import CanaryStrategy, ModelSpec, ServiceSpec
    >>> spec = RolloutSpec(ModelSpec("m", "2", "u"), ServiceSpec("s"), CanaryStrategy(()), replicas=4)
    >>> pods(spec, TrafficIntent("1", "2", 25)), pods(spec, TrafficIntent("1"))
    ({'2': 1, '1': 3}, {'1': 4})
    """
    if traffic.stable is None:
        return {}
    if traffic.canary is None:
        return {traffic.stable: spec.replicas}
    canary, stable = replicas_for_weight(spec.replicas, traffic.canary_weight)
    return {traffic.canary: canary, traffic.stable: stable}


def selectors(spec: RolloutSpec, rollout: str, traffic: TrafficIntent) -> dict[str, Mapping[str, str]]:
    return {spec.service.name: selector(rollout, None)}


def is_routed(spec: RolloutSpec, traffic: TrafficIntent, obs: Observations) -> bool:
    """The Service selects every version, so the weight is whatever the Ready pods make it."""
    return obs.selectors.get(spec.service.name) == selector(obs.name, None)
