"""Traffic routers: how a strategy's TrafficIntent becomes desired object state.

A router is a module with the three functions of `TrafficRouter`, pure like the rest of the core;
the adapter (kube.py) applies what it returns. Routers are chosen from `ROUTERS` by name:

- `replicas`: weights as replica counts behind one Service that selects every version (canary).
- `service`: every version at full size; the main Service pins one version, a preview Service
  another, and a switch is one selector patch (blue-green).
- `gatewayAPI`: exact weights on the backendRefs of a user's HTTPRoute, and a header rule.

`spec.trafficRouting` names the router; without it the strategy's own (`Strategy.ROUTER`) is used.
Adding a router: one module here implementing the protocol, one line in ROUTERS, and in kube.py the
read and apply of any new kind of object it returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from modelrollout.core.observations import Observations, RouteIntent, TrafficIntent
from modelrollout.core.routers import gateway, replicas, service
from modelrollout.core.spec import RolloutSpec


class TrafficRouter(Protocol):
    def pods(self, spec: RolloutSpec, traffic: TrafficIntent) -> dict[str, int]:
        """Pods per version that realise `traffic` (decide then holds capacity while pods start)."""
        ...

    def selectors(self, spec: RolloutSpec, rollout: str, traffic: TrafficIntent) -> dict[str, Mapping[str, str]]:
        """The pod selector of every Service this router sets, by Service name."""
        ...

    def is_routed(self, spec: RolloutSpec, traffic: TrafficIntent, obs: Observations) -> bool:
        """Whether the observed objects already send the main traffic where `traffic` says."""
        ...

    def routable(self, spec: RolloutSpec, traffic: TrafficIntent, obs: Observations) -> TrafficIntent:
        """The part of `traffic` the Ready pods can take now (what selectors and routes are set to)."""
        ...

    def route(self, spec: RolloutSpec, traffic: TrafficIntent, obs: Observations) -> RouteIntent | None:
        """The HTTPRoute rules to write for `traffic`; None: this router writes no route, or no change."""
        ...

    def share(self, spec: RolloutSpec, traffic: TrafficIntent) -> float:
        """The canary's share of requests (0-1) once `traffic` is realised: what an A/B experiment's
        sample-ratio check expects, since a replica split is only as fine as the pod counts."""
        ...


ROUTERS: dict[str, TrafficRouter] = {"replicas": replicas, "service": service, "gatewayAPI": gateway}
