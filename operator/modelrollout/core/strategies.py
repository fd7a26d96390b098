"""Rollout strategies: one module each, the same three functions, chosen from the spec.

A strategy decides *what* should happen to the version in flight (its steps, what `promote`
means, when it is done) and states where traffic should go as a router-independent TrafficIntent;
the router it names (see modelrollout.core.routers) decides *how*. `abort`, `retry`, `pause`,
`resume` and `undo` mean the same for every strategy and live in commands.py.

Adding a strategy (e.g. shadow, A/B): a spec dataclass in spec.py, one module implementing
`Strategy`, one line in STRATEGIES.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from modelrollout.core import abtest, bluegreen, canary
from modelrollout.core.abspec import ABTestStrategy
from modelrollout.core.change import Change
from modelrollout.core.observations import Observations, StrategyPlan
from modelrollout.core.routers import ROUTERS, TrafficRouter
from modelrollout.core.spec import BlueGreenStrategy, CanaryStrategy, RolloutSpec
from modelrollout.core.status import RolloutStatus


class Strategy(Protocol):
    # The router this strategy uses unless spec.trafficRouting names one.
    ROUTER: str

    def plan(self, spec: RolloutSpec, status: RolloutStatus, obs: Observations, now: datetime,
             router: TrafficRouter) -> StrategyPlan:
        """Advance the version in flight as far as the observations allow within this tick."""
        ...

    def promote(self, change: Change, spec: RolloutSpec) -> None:
        """`kubectl modelrollout promote` on an in-flight rollout: what "go on" means here."""
        ...

    def entry_services(self, spec: RolloutSpec) -> tuple[str, ...]:
        """Every Service this strategy routes through, main first (their selectors are observed)."""
        ...


STRATEGIES: dict[type, Strategy] = {CanaryStrategy: canary, BlueGreenStrategy: bluegreen, ABTestStrategy: abtest}


def strategy_for(spec: RolloutSpec) -> Strategy:
    return STRATEGIES[type(spec.strategy)]


def router_name(spec: RolloutSpec) -> str:
    """spec.trafficRouting's router, else the strategy's own (the CRD allows only matching pairs)."""
    return spec.traffic_routing.router if spec.traffic_routing is not None else strategy_for(spec).ROUTER


def router_for(spec: RolloutSpec) -> TrafficRouter:
    return ROUTERS[router_name(spec)]
