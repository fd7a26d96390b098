"""A settled rollout is looked at once a minute, not at the 5-second poll of a rollout in motion
(an int was compared with a DeploymentIntent, always unequal, so every rollout polled forever:
about 12 times the intended API load)."""

from __future__ import annotations

import pytest

from modelrollout.analysis.types import Verdict
from modelrollout.core.decide import IDLE
from modelrollout.core.steps import POLL
from tests.unit.core.builders import make_spec, ready, run_from_healthy

pytestmark = pytest.mark.unit


def test_a_settled_rollout_next_looks_after_the_idle_interval() -> None:
    run = run_from_healthy(make_spec(version="1"))
    for _ in range(3):
        decision = run.tick(after=60)
        assert decision.next_tick_at == run.now + IDLE


def test_a_rollout_whose_replicas_are_changing_polls() -> None:
    run = run_from_healthy(make_spec(version="1", replicas=6))  # the world still runs 4
    run.world.deployments["1"] = ready(4)
    decision = run.tick(after=60)
    assert decision.next_tick_at == run.now + POLL


def test_a_tick_between_analysis_ticks_wakes_for_the_next_analysis() -> None:
    # Hidden while every rollout polled at 5 s: a tick woken by anything else (an event, a restart)
    # forgot the pending analysis and slept until the idle interval or the analysis timeout.
    run = run_from_healthy(make_spec(version="2", steps=[{"setWeight": 50}]))
    run.tick()
    run.tick(after=1)  # the canary pods are Ready: the analysis starts
    run.tick_analysis(Verdict.INCONCLUSIVE)
    due = run.status.analysis.next_tick_at
    decision = run.tick(after=1)
    assert due is not None and decision.next_tick_at == due
