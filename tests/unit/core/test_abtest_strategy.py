"""The A/B experiment strategy (core/abtest.py): B serves beside A at the experiment's split, each analysis tick's
feedback is added to the arms in status.abTest, and the always-valid interval decides: B wins -> promoted, A wins
or the limits pass without a winner -> rolled back keeping A, the guard-rails Fail -> rolled back early."""

from __future__ import annotations

import doctest
from dataclasses import replace
from typing import Any

import pytest

from modelrollout import cli
from modelrollout.analysis.types import Tick, Verdict, VersionCounts
from modelrollout.core import abspec, abtest
from modelrollout.core.phases import Phase
from modelrollout.core.spec import RolloutSpec
from modelrollout.core.status import RolloutStatus

from .builders import Run, outcome, run_from_healthy, spec_dict

pytestmark = pytest.mark.unit


def ab_spec(ab: dict[str, Any] | None = None, **extra: Any) -> RolloutSpec:
    spec = spec_dict(**extra)
    spec["strategy"] = {"abTest": ab if ab is not None else {"weight": 50, "minSamplesPerArm": 200,
                                                           "maxSamples": 20_000, "maxDuration": "1h"}}
    return RolloutSpec.from_dict(spec)


def judged(correct: float, judged_rows: float) -> VersionCounts:
    return VersionCounts(requests=judged_rows, feedback_correct=correct, feedback_incorrect=judged_rows - correct)


def look(run: Run, a: VersionCounts | None, b: VersionCounts | None, verdict: Verdict = Verdict.PASS) -> None:
    """One analysis tick when due: the guard-rails' verdict, with the arms' increments it was judged on."""
    due = run.status.analysis.next_tick_at
    assert due is not None, run.status.message
    seen = replace(outcome(verdict, share=0.5), tick=Tick(canary=b, stable=a, expected_canary_share=0.5))
    run.tick(after=max(0.0, (due - run.now).total_seconds()), analysis=seen)


def experimenting(spec: RolloutSpec) -> Run:
    run = run_from_healthy(spec)
    run.tick()  # B's pods are asked for
    run.tick(after=1)  # and Ready: A goes to its share
    run.tick(after=1)  # the experiment starts
    return run


def test_b_serves_beside_a_at_the_weight_and_the_experiment_starts_once_its_pods_are_ready() -> None:
    run = run_from_healthy(ab_spec({"weight": 25}))
    decision = run.tick()
    assert decision.deployments is not None
    assert {v: i.replicas for v, i in decision.deployments.items()} == {"1": 4, "2": 1}, "A waits for B"
    run.tick(after=1)
    assert run.world.deployments["1"].replicas == 3
    assert run.status.analysis.next_tick_at is None, "no measuring before A runs at its share"
    run.tick(after=1)
    assert run.phase == Phase.PROGRESSING and run.status.analysis.next_tick_at is not None
    assert run.status.ab_test is not None and run.status.ab_test.split == 0.25
    assert run.status.desired_weight == 25
    assert any(e.reason == "ABTestStarted" for e in run.decisions[-1].events)


def test_b_with_better_accuracy_is_promoted_as_the_winner() -> None:
    run = experimenting(ab_spec())
    for _ in range(30):
        look(run, a=judged(150, 200), b=judged(185, 200))
        if run.phase != Phase.PROGRESSING:
            break
    assert run.phase in (Phase.PROMOTING, Phase.HEALTHY), run.status.message
    run.tick(after=1)
    assert run.phase == Phase.HEALTHY and run.status.stable_version == "2"
    assert run.status.history[-1].reason == "ABTestWinner"
    assert run.status.ab_test is not None and run.status.ab_test.winner == "B"
    interval = run.status.ab_test.interval
    assert interval is not None and 0 < interval[0] < 0.175 < interval[1]


def test_equal_arms_end_at_max_samples_keeping_a_with_no_significant_difference() -> None:
    run = experimenting(ab_spec({"maxSamples": 4_000, "maxDuration": "10h"}))
    for _ in range(10):
        look(run, a=judged(180, 200), b=judged(180, 200))
        if run.phase != Phase.PROGRESSING:
            break
    assert run.phase == Phase.ROLLED_BACK and run.status.reason == "ABTestNoWinner"
    assert run.status.stable_version == "1" and run.status.rejected_version == "2"
    assert "no significant difference: B - A = +0" in run.status.message
    assert "always-valid interval [-" in run.status.message and "maxSamples 4000 reached" in run.status.message
    assert run.status.ab_test is not None and run.status.ab_test.a.n + run.status.ab_test.b.n == 4_000
    assert run.status.ab_test.message.startswith("no significant difference: "), run.status.ab_test.message


def test_a_with_better_accuracy_wins_and_stays() -> None:
    run = experimenting(ab_spec())
    for _ in range(30):
        look(run, a=judged(185, 200), b=judged(150, 200))
        if run.phase != Phase.PROGRESSING:
            break
    assert run.phase == Phase.ROLLED_BACK and run.status.reason == "ABTestLost"
    assert "A wins: B - A = -0.17" in run.status.message and run.status.stable_version == "1"


def test_no_winner_within_max_duration_keeps_a() -> None:
    run = experimenting(ab_spec({"maxDuration": "1m"}))
    for _ in range(5):
        look(run, a=judged(18, 20), b=judged(18, 20))
        if run.phase != Phase.PROGRESSING:
            break
    assert run.phase == Phase.ROLLED_BACK and run.status.reason == "ABTestNoWinner"
    assert "maxDuration 1m passed" in run.status.message


def test_a_failing_guard_rail_ends_the_experiment_early_keeping_a() -> None:
    run = experimenting(ab_spec())
    look(run, a=judged(150, 200), b=judged(185, 200), verdict=Verdict.FAIL)
    assert run.phase == Phase.PROGRESSING, "failureLimit 2: one Fail is a warning"
    look(run, a=judged(150, 200), b=judged(185, 200), verdict=Verdict.FAIL)
    assert run.phase == Phase.ROLLED_BACK and run.status.reason == "AnalysisFailed"
    assert run.status.stable_version == "1"
    deployments = run.decisions[-1].deployments
    assert deployments is not None and deployments["2"].replicas == 0


def test_a_tick_missing_an_arm_adds_nothing_to_either() -> None:
    run = experimenting(ab_spec())
    look(run, a=judged(150, 200), b=judged(185, 200))
    look(run, a=judged(150, 200), b=None)
    assert run.status.ab_test is not None
    assert (run.status.ab_test.a.n, run.status.ab_test.b.n) == (200, 200)
    assert run.status.ab_test.looks == 2


def test_the_experiment_survives_a_status_round_trip() -> None:
    run = experimenting(ab_spec())
    look(run, a=judged(150, 200), b=judged(160, 200))
    stored = RolloutStatus.from_dict(run.status.to_dict())
    assert stored.ab_test == run.status.ab_test
    assert run.status.to_dict()["abTest"]["arms"]["B"] == {"samples": 200.0, "total": 160.0, "squares": 160.0}


def test_promote_ends_the_experiment_in_b_s_favour() -> None:
    run = experimenting(ab_spec())
    run.world.command("promote", "p1")
    run.tick(after=1)
    assert run.phase in (Phase.PROMOTING, Phase.HEALTHY) and run.status.reason in ("ManualPromote", "Promoted")


@pytest.mark.parametrize(("ab", "extra", "message"), [
    ({"weight": 0}, {}, "spec.strategy.abTest.weight: 0 is outside [1, 99]"),
    ({"weight": 100}, {}, "spec.strategy.abTest.weight: 100 is outside [1, 99]"),
    ({"goal": {"type": "outcome"}}, {}, "spec.strategy.abTest.goal.type: 'outcome' is not supported"),
    ({"goal": {"alpha": 0.5}}, {}, "spec.strategy.abTest.goal.alpha: 0.5 must be in (0, 0.5)"),
    ({"goal": {"minEffect": -0.1}}, {}, "spec.strategy.abTest.goal.minEffect"),
    ({}, {"analysis": None}, "spec.analysis: required with spec.strategy.abTest"),
    ({}, {"trafficRouting": {"gatewayAPI": {"httpRoute": "web"}}},
     "spec.trafficRouting.gatewayAPI: needs spec.strategy.canary"),
    ({}, {"serving": {"metrics": {"preset": "mlserver"}}}, "spec.strategy.abTest.goal: accuracy needs this project's"),
])
def test_invalid_ab_specs_name_the_field(ab: dict[str, Any], extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        ab_spec(ab, **extra)


def test_the_module_examples_hold() -> None:
    """The worked examples in the docstrings: the split, an arm's increment, the parser, `status`'s A/B table."""
    for module in (abtest, abspec, cli):
        assert doctest.testmod(module).failed == 0
