"""The `service` router: whole versions behind Services, switched by selector (blue-green).

Every version in the intent runs at full size, so a switch never lands on too few pods. The main
Service pins the canary once its weight is 100 and the stable version before; a preview Service, if
the intent names one, pins the preview version. A selector change is one atomic patch.
"""

from __future__ import annotations

from collections.abc import Mapping

from modelrollout.core.observations import Observations, RouteIntent, TrafficIntent, selector
from modelrollout.core.spec import RolloutSpec


def pods(spec: RolloutSpec, traffic: TrafficIntent) -> dict[str, int]:
    return {v: spec.replicas for v in (traffic.stable, traffic.canary) if v is not None}


def active_version(traffic: TrafficIntent) -> str | None:
    """The version the main Service pins: this router cannot split, so it is all or nothing."""
    return traffic.canary if traffic.canary is not None and traffic.canary_weight >= 100 else traffic.stable


def selectors(spec: RolloutSpec, rollout: str, traffic: TrafficIntent) -> dict[str, Mapping[str, str]]:
    wanted: dict[str, Mapping[str, str]] = {spec.service.name: selector(rollout, active_version(traffic))}
    if traffic.preview is not None:
        wanted[traffic.preview.service] = selector(rollout, traffic.preview.version)
    return wanted


def is_routed(spec: RolloutSpec, traffic: TrafficIntent, obs: Observations) -> bool:
    return obs.selectors.get(spec.service.name) == selector(obs.name, active_version(traffic))


def routable(spec: RolloutSpec, traffic: TrafficIntent, obs: Observations) -> TrafficIntent:
    """The strategy switches only to Ready pods itself (blue-green waits for them)."""
    return traffic


def route(spec: RolloutSpec, traffic: TrafficIntent, obs: Observations) -> RouteIntent | None:
    return None  # no HTTPRoute: Services carry the traffic


def share(spec: RolloutSpec, traffic: TrafficIntent) -> float:
    return 1.0 if traffic.canary is not None and active_version(traffic) == traffic.canary else 0.0
