"""The A/B experiment strategy (core/abtest.py): B serves beside A at the experiment's split, each analysis tick's
feedback is added to the arms in status.abTest, and the always-valid interval decides: B wins -> promoted, A wins
or the limits pass without a winner -> rolled back keeping A, the guard-rails Fail -> rolled back early."""

from __future__ import annotations

import doctest
from dataclasses import replace
from typing import Any

import pytest

from modelrollout import cli
from modelrollout.analysis.types import ArmTotals, Tick, Verdict, VersionCounts
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
    look(run, a=judged(900, 1000), b=judged(10, 20))  # the first look marks where the counters stand
    return run


def test_the_first_look_counts_nothing_since_its_increments_reach_back_before_the_experiment() -> None:
    run = experimenting(ab_spec())
    ab = run.status.ab_test
    assert ab is not None and ab.looks == 1 and (ab.a.n, ab.b.n) == (0, 0), ab
    look(run, a=judged(150, 200), b=judged(160, 200))
    ab = run.status.ab_test
    assert ab is not None and (ab.a.n, ab.b.n) == (200, 200), ab


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


def test_the_experiment_waits_while_a_pod_leaving_a_is_still_ready() -> None:
    run = run_from_healthy(ab_spec({"weight": 50}))  # 4 replicas: 2 + 2
    run.tick()
    run.tick(after=1)  # B Ready: A asked down to 2
    run.world.deployments["1"] = replace(run.world.deployments["1"], ready_replicas=3)  # one still terminating
    run.tick(after=1)
    assert run.status.analysis.next_tick_at is None, "started while A still had 3 Ready pods behind the Service"
    run.world.deployments["1"] = replace(run.world.deployments["1"], ready_replicas=2)
    run.tick(after=1)
    assert run.status.analysis.next_tick_at is not None


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
    assert run.status.ab_test.looks == 3  # the first look, a baseline, and these two


REVENUE = {"goal": {"type": "outcome", "outcome": "revenue"}, "maxDuration": "10h"}


def revenue(n: float, mean: float, sd: float) -> VersionCounts:
    """A tick's revenue totals of an arm: n outcomes of this mean and standard deviation."""
    return VersionCounts(requests=n, outcomes={"revenue": ArmTotals(n, n * mean, n * (sd * sd + mean * mean))})


def test_the_outcome_name_pattern_is_the_server_s_and_the_crd_s() -> None:
    from modelserver.contract import OUTCOME_NAME_PATTERN
    from tests.unit.core.test_docs import crd_schema
    goal = crd_schema()["properties"]["spec"]["properties"]["strategy"]["properties"]["abTest"]["properties"]["goal"]
    assert abspec.OUTCOME_NAME_PATTERN == OUTCOME_NAME_PATTERN == goal["properties"]["outcome"]["pattern"]


def test_an_outcome_goal_declares_its_name_to_every_pod_from_the_first_tick() -> None:
    run = run_from_healthy(ab_spec(REVENUE))
    decision = run.tick()
    assert decision.mirror is not None
    assert decision.mirror.data == {"mirror.yaml": "percent: 0\noutcomes: [revenue]\n"}


def test_b_with_more_revenue_per_prediction_wins_reported_as_cohen_s_d() -> None:
    run = experimenting(ab_spec(REVENUE))
    for _ in range(40):
        look(run, a=revenue(200, 10.0, 5.0), b=revenue(200, 11.5, 5.0))
        if run.phase != Phase.PROGRESSING:
            break
    assert run.phase in (Phase.PROMOTING, Phase.HEALTHY), run.status.message
    ab = run.status.ab_test
    assert ab is not None and ab.winner == "B" and ab.estimate is not None and abs(ab.estimate - 1.5) < 1e-9
    assert ab.effect_size is not None and abs(ab.effect_size - 1.5 / 5.0) < 0.01, "Cohen's d: 1.5 / 5"
    assert "Cohen's d +0.3" in ab.message
    run.tick(after=1)
    assert run.phase == Phase.HEALTHY and run.status.history[-1].reason == "ABTestWinner"
    started = [e.message for d in run.decisions for e in d.events if e.reason == "ABTestStarted"]
    assert started and "goal: the mean of outcome 'revenue'" in started[0]


def test_a_binary_outcome_reports_the_difference_in_proportions() -> None:
    run = experimenting(ab_spec({**REVENUE, "goal": {**REVENUE["goal"], "binary": True}}))
    look(run, a=revenue(400, 0.10, 0.3), b=revenue(400, 0.12, 0.3))
    ab = run.status.ab_test
    assert ab is not None and "difference in proportions +0.02" in ab.message, ab.message


def test_arms_whose_pods_do_not_count_the_outcome_add_no_sample_and_say_why() -> None:
    run = experimenting(ab_spec(REVENUE))
    look(run, a=VersionCounts(requests=200), b=revenue(200, 11.5, 5.0))
    ab = run.status.ab_test
    assert ab is not None and (ab.a.n, ab.b.n) == (0, 0) and ab.winner == "none"
    warned = [e for e in run.decisions[-1].events if e.reason == "ABTestOutcomeMissing"]
    assert warned and warned[0].type == "Warning" and "the pods of A expose no 'revenue'" in warned[0].message


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
    ({"goal": {"type": "outcome"}}, {}, "spec.strategy.abTest.goal.outcome: required with type outcome"),
    ({"goal": {"type": "clicks"}}, {}, "spec.strategy.abTest.goal.type: 'clicks' must be accuracy or outcome"),
    ({"goal": {"type": "outcome", "outcome": "Revenue"}}, {}, "spec.strategy.abTest.goal.outcome: 'Revenue' must"),
    ({"goal": {"type": "outcome", "outcome": "revenue", "binary": "yes"}}, {}, "spec.strategy.abTest.goal.binary"),
    ({"goal": {"outcome": "revenue"}}, {}, "spec.strategy.abTest.goal: outcome and binary only go with type outcome"),
    ({"goal": {"minEffect": 1.0}}, {}, "spec.strategy.abTest.goal.minEffect: 1.0 must be in [0, 1)"),
    ({"goal": {"alpha": 0.5}}, {}, "spec.strategy.abTest.goal.alpha: 0.5 must be in (0, 0.5)"),
    ({"goal": {"minEffect": -0.1}}, {}, "spec.strategy.abTest.goal.minEffect"),
    ({}, {"analysis": None}, "spec.analysis: required with spec.strategy.abTest"),
    ({}, {"trafficRouting": {"service": {}}}, "spec.trafficRouting.service: needs spec.strategy.blueGreen"),
    ({}, {"serving": {"metrics": {"preset": "mlserver"}}}, "spec.strategy.abTest.goal: accuracy and outcomes need"),
])
def test_invalid_ab_specs_name_the_field(ab: dict[str, Any], extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        ab_spec(ab, **extra)


def test_the_module_examples_hold() -> None:
    """The worked examples in the docstrings: the split, an arm's increment, the parser, `status`'s A/B table."""
    for module in (abtest, abspec, cli):
        assert doctest.testmod(module).failed == 0
