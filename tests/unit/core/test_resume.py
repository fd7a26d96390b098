"""Repeated ticks change nothing; a status that went through JSON continues exactly where it was."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from modelrollout.analysis.types import Verdict
from modelrollout.core import Decision, Observations, RolloutSpec, RolloutStatus, decide, needs_analysis
from modelrollout.core.phases import Phase

from .builders import T0, Run, World, healthy_status, make_spec, outcome, ready

pytestmark = pytest.mark.unit

# (seconds to wait, verdict delivered if an analysis tick is due, pods Ready after applying, command)
SCRIPT: list[tuple[float, Verdict | None, bool, str | None]] = [
    (0, None, False, None), (5, None, True, None), (5, None, True, None), (15, Verdict.INCONCLUSIVE, True, None),
    (15, Verdict.PASS, True, None), (120, None, False, None), (5, None, True, None), (15, Verdict.FAIL, True, None),
    (15, Verdict.PASS, True, None), (5, None, True, "promote"), (5, None, False, None), (5, None, True, None),
    (5, None, True, None), (5, None, True, None),
]
SPECS = {"canary": lambda: make_spec(version="2"),
         "blue-green": lambda: make_spec(version="2", blue_green={"previewService": "p", "scaleDownDelaySeconds": 10})}


def walk(spec: RolloutSpec, through_json: bool) -> Iterator[tuple[datetime, Observations, Decision]]:
    """Play SCRIPT; yields (now, observations, decision) for every tick."""
    world = World(deployments={"1": ready(4)})
    status, now = healthy_status("1"), T0
    for number, (wait, verdict, pods_ready, command) in enumerate(SCRIPT):
        now += timedelta(seconds=wait)
        if command:
            world.command(command, f"cmd-{number}")
        due = needs_analysis(spec, status, now)
        obs = world.observe(outcome(verdict) if verdict and due else None)
        decision = decide(spec, status, obs, now)
        yield now, obs, decision
        world.apply(decision, pods_ready=pods_ready)
        status = decision.status
        if through_json:
            status = RolloutStatus.from_dict(json.loads(json.dumps(decision.status.to_dict())))


def summary(decision: Decision) -> dict[str, Any]:
    return {"status": decision.status.to_dict(), "deployments": decision.deployments,
            "delete": decision.delete_versions, "selectors": decision.selectors, "events": decision.events,
            "next": decision.next_tick_at}


@pytest.mark.parametrize("strategy", list(SPECS))
def test_the_script_reaches_healthy(strategy: str) -> None:
    *_, (_, _, last) = walk(SPECS[strategy](), through_json=False)
    assert (last.status.phase, last.status.stable_version) == (Phase.HEALTHY, "2")


@pytest.mark.parametrize("strategy", list(SPECS))
def test_repeating_a_tick_with_the_same_inputs_changes_nothing(strategy: str) -> None:
    spec = SPECS[strategy]()
    for now, obs, decision in walk(spec, through_json=False):
        again = decide(spec, decision.status, obs, now)
        assert again.events == (), (now, decision.status.phase, again.events)
        assert again.status.to_dict() == decision.status.to_dict()
        assert (again.deployments, again.selectors) == (decision.deployments, decision.selectors)


@pytest.mark.parametrize("strategy", list(SPECS))
def test_a_status_read_back_from_json_continues_exactly(strategy: str) -> None:
    plain = [summary(d) for _, _, d in walk(SPECS[strategy](), through_json=False)]
    restarted = [summary(d) for _, _, d in walk(SPECS[strategy](), through_json=True)]
    assert restarted == plain


def test_an_analysis_outcome_is_counted_once_even_if_the_tick_repeats() -> None:
    run = Run(spec=make_spec(version="2"), world=World(deployments={"1": ready(4)}), status=healthy_status("1"))
    run.tick()
    run.tick(after=1)
    decision = run.tick_analysis(Verdict.FAIL)
    repeat = decide(run.spec, decision.status, run.world.observe(outcome(Verdict.FAIL)), run.now)
    assert repeat.status.analysis.consecutive_failures == 1 and repeat.status.phase == Phase.PROGRESSING
