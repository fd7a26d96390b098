"""Strategies and routers are the two extension points: each is one module plus one registry line,
and no other module knows which strategy or router it is dealing with."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from modelrollout.core import spec as spec_module
from modelrollout.core.observations import LABEL_ROLLOUT, LABEL_VERSION, Observations, Preview, TrafficIntent
from modelrollout.core.routers import ROUTERS, replicas, service
from modelrollout.core.strategies import STRATEGIES

from .builders import make_spec

pytestmark = pytest.mark.unit
PACKAGE = Path(spec_module.__file__).resolve().parents[1]
STRATEGY_TYPES = ("CanaryStrategy", "BlueGreenStrategy", "ABTestStrategy")


def pins(version: str | None) -> dict[str, str]:
    return {LABEL_ROLLOUT: "fraud"} | ({} if version is None else {LABEL_VERSION: version})


@pytest.mark.parametrize(
    ("intent", "pods"),
    [
        (TrafficIntent("1"), {"1": 4}),
        (TrafficIntent("1", "2", 0), {"2": 0, "1": 4}),
        (TrafficIntent("1", "2", 25), {"2": 1, "1": 3}),
        (TrafficIntent("1", "2", 50), {"2": 2, "1": 2}),
        (TrafficIntent("1", "2", 100), {"2": 4, "1": 0}),
        (TrafficIntent(None), {}),
    ],
)
def test_the_replicas_router_turns_a_weight_into_pods_behind_one_service(intent: TrafficIntent,
                                                                          pods: dict[str, int]) -> None:
    spec = make_spec(replicas=4)
    assert replicas.pods(spec, intent) == pods
    assert replicas.selectors(spec, "fraud", intent) == {"fraud": pins(None)}


@pytest.mark.parametrize(
    ("intent", "pods", "selectors"),
    [
        (TrafficIntent("1", preview=Preview("p", "1")), {"1": 4}, {"fraud": pins("1"), "p": pins("1")}),
        (TrafficIntent("1", "2", 0, Preview("p", "2")), {"1": 4, "2": 4}, {"fraud": pins("1"), "p": pins("2")}),
        (TrafficIntent("1", "2", 100, Preview("p", "2")), {"1": 4, "2": 4}, {"fraud": pins("2"), "p": pins("2")}),
        (TrafficIntent("1", "2", 50), {"1": 4, "2": 4}, {"fraud": pins("1")}),  # cannot split: all or nothing
    ],
)
def test_the_service_router_runs_whole_versions_and_pins_selectors(
        intent: TrafficIntent, pods: dict[str, int], selectors: dict[str, dict[str, str]]) -> None:
    spec = make_spec(replicas=4)
    assert service.pods(spec, intent) == pods
    assert service.selectors(spec, "fraud", intent) == selectors


def test_a_switch_counts_as_routed_only_once_the_main_service_is_observed_pinned() -> None:
    spec, switched = make_spec(), TrafficIntent("1", "2", 100)
    before = Observations("fraud", 1, selectors={"fraud": pins("1")})
    after = Observations("fraud", 1, selectors={"fraud": pins("2")})
    assert not service.is_routed(spec, switched, before) and service.is_routed(spec, switched, after)
    assert not service.is_routed(spec, switched, Observations("fraud", 1))  # no Service yet


def test_every_strategy_has_a_module_and_a_known_router() -> None:
    declared = {getattr(spec_module, name) for name in STRATEGY_TYPES}
    assert set(STRATEGIES) == declared
    assert all(module.ROUTER in ROUTERS for module in STRATEGIES.values())


def test_only_a_strategy_module_asks_which_strategy_it_has() -> None:
    pattern = re.compile(r"isinstance\([^)]*\b(" + "|".join(STRATEGY_TYPES) + r")\b")
    allowed = {"canary.py", "bluegreen.py", "abtest.py"}
    offenders = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                 if p.name not in allowed and pattern.search(p.read_text())]
    assert offenders == []
