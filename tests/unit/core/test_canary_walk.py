"""A canary from start to finish, tick by tick, checking what a user and the Service would see."""

from __future__ import annotations

import pytest

from modelrollout.analysis.types import Verdict
from modelrollout.core import needs_analysis, replicas_for_weight
from modelrollout.core.canary import POLL
from modelrollout.core.phases import Phase

from .builders import Run, make_spec, run_from_healthy

pytestmark = pytest.mark.unit


def replicas(run: Run) -> dict[str, int]:
    return {v: d.replicas for v, d in run.world.deployments.items()}


def test_good_canary_walks_every_step_and_promotes_without_restarting_pods() -> None:
    run = run_from_healthy(make_spec(version="2"))
    run.tick()
    assert (run.phase, run.status.canary_version, run.status.desired_weight) == (Phase.PROGRESSING, "2", 25)
    assert replicas(run) == {"1": 4, "2": 1}  # surge: canary first, stable untouched
    run.tick(after=1)
    assert replicas(run) == {"1": 3, "2": 1}  # canary Ready: now stable gives up its pod
    assert run.status.analysis.next_tick_at is not None
    run.tick_analysis(Verdict.PASS, share=0.24)
    assert (run.status.current_step_index, run.status.effective_weight) == (1, 24.0)
    assert run.status.reason == "StepPause" and run.phase == Phase.PROGRESSING
    run.tick(after=119)
    assert run.status.current_step_index == 1  # 2m pause not over yet
    run.tick(after=1)
    assert (run.status.current_step_index, run.status.desired_weight) == (2, 50)
    assert replicas(run) == {"1": 3, "2": 2}
    run.tick(after=1)
    assert replicas(run) == {"1": 2, "2": 2}
    run.tick_analysis(Verdict.PASS, share=0.5)
    assert (run.phase, run.status.reason, run.status.current_step_index) == (Phase.PAUSED, "StepPause", 3)
    run.world.command("promote", "p1")
    run.tick(after=5)
    assert (run.phase, run.status.reason) == (Phase.PROMOTING, "AnalysisPassed")
    assert replicas(run) == {"1": 2, "2": 4}
    run.tick(after=1)
    assert run.phase == Phase.HEALTHY
    assert (run.status.stable_version, run.status.canary_version) == ("2", None)
    assert replicas(run) == {"1": 0, "2": 4}
    run.tick(after=1)
    assert replicas(run) == {"2": 4}  # the old version's empty Deployment is deleted
    assert [h.outcome for h in run.status.history][-1] == "Promoted"
    # Version 2's Deployment keeps one template from first pod to stable: promotion restarts nothing.
    templates = [d.deployments["2"].model for d in run.decisions if d.deployments and "2" in d.deployments]
    assert len(templates) > 5 and all(t == run.status.stable_model for t in templates)


def test_stable_capacity_is_never_reduced_before_canary_pods_are_ready() -> None:
    run = run_from_healthy(make_spec(version="2"))
    for _ in range(5):
        run.tick(after=30, pods_ready=False)
    assert replicas(run) == {"1": 4, "2": 1}
    assert run.status.reason == "WaitingForPods"
    assert "0 ready" in run.status.message


@pytest.mark.parametrize("total", [1, 2, 3, 4, 5, 10])
def test_served_capacity_never_drops_below_total_during_a_slow_canary(total: int) -> None:
    run = run_from_healthy(make_spec(version="2", replicas=total, analysis=None,
                                     steps=[{"setWeight": 10}, {"setWeight": 60}, {"setWeight": 90}]))
    for tick in range(30):
        run.tick(after=5, pods_ready=tick % 3 == 2)  # pods become Ready only on every third tick
        ready_pods = sum(d.ready_replicas for d in run.world.deployments.values())
        assert ready_pods >= total, (tick, run.world.deployments)
    assert run.phase == Phase.HEALTHY and run.status.stable_version == "2"


def test_new_version_during_a_canary_abandons_it_and_starts_again_against_stable() -> None:
    run = run_from_healthy(make_spec(version="2"))
    run.tick()
    run.tick(after=1)
    run.spec = make_spec(version="3")
    run.world.generation = 2
    decision = run.tick(after=1)
    assert (run.phase, run.status.canary_version) == (Phase.PROGRESSING, "3")
    assert [e.reason for e in decision.events if e.reason == "Superseded"] == ["Superseded"]
    assert run.status.current_step_index == 0 and run.status.analysis.ticks == 0
    assert run.status.history[-1].version == "2" and run.status.history[-1].outcome == "Superseded"
    assert replicas(run)["2"] == 1  # held until the stable side is back: no capacity dip
    run.tick(after=1)
    assert replicas(run) == {"1": 3, "2": 0, "3": 1}
    assert run.status.observed_generation == 2


def test_failures_roll_back_naming_the_metric_and_its_numbers() -> None:
    run = run_from_healthy(make_spec(version="2"))
    run.tick()
    run.tick(after=1)
    run.tick_analysis(Verdict.FAIL)
    assert run.phase == Phase.PROGRESSING and run.status.analysis.consecutive_failures == 1
    decision = run.tick_analysis(Verdict.FAIL)
    assert (run.phase, run.status.reason) == (Phase.ROLLED_BACK, "AnalysisFailed")
    assert "error-rate: canary error rate 5.0% (40/800) above max 1.0%" in run.status.message
    assert "failureLimit 2" in run.status.message and "retry" in run.status.message
    assert replicas(run) == {"1": 4, "2": 0}  # rolled back at once
    assert any(e.type == "Warning" and e.reason == "AnalysisFailed" for e in decision.events)
    assert run.status.rejected_version == "2" and run.status.canary_version is None
    assert run.status.analysis.results[0].canary_value == 0.05


def test_inconclusive_never_counts_as_pass_or_fail() -> None:
    run = run_from_healthy(make_spec(version="2"))
    run.tick()
    run.tick(after=1)
    run.tick_analysis(Verdict.FAIL)
    run.tick_analysis(Verdict.INCONCLUSIVE)
    run.tick_analysis(Verdict.INCONCLUSIVE)
    assert run.status.analysis.consecutive_failures == 1  # not reset by Inconclusive
    assert run.phase == Phase.PROGRESSING
    run.tick_analysis(Verdict.FAIL)
    assert run.phase == Phase.ROLLED_BACK


def test_inconclusive_limit_pauses_with_a_clear_message() -> None:
    run = run_from_healthy(make_spec(version="2"))
    run.tick()
    run.tick(after=1)
    for _ in range(3):
        run.tick_analysis(Verdict.INCONCLUSIVE)
    assert (run.phase, run.status.reason) == (Phase.PAUSED, "Inconclusive")
    assert "3 analysis ticks in a row were inconclusive" in run.status.message
    assert "only 50 canary requests" in run.status.message
    assert run.status.current_step_index == 1  # Inconclusive let step 1 end, the 2m pause holds
    for _ in range(5):
        run.tick_analysis(Verdict.INCONCLUSIVE)
    assert run.phase == Phase.PAUSED and run.status.stable_version == "1"


def test_promotion_gate_waits_for_pass_then_applies_timeout_policy() -> None:
    spec = make_spec(version="2", steps=[{"setWeight": 50}])
    run = run_from_healthy(spec)
    run.tick()
    run.tick(after=1)
    run.tick_analysis(Verdict.INCONCLUSIVE)
    assert run.status.current_step_index == 1  # at the gate: not a fail, step done
    run.tick_analysis(Verdict.FAIL)
    run.tick_analysis(Verdict.INCONCLUSIVE)
    assert (run.phase, run.status.reason) == (Phase.PROGRESSING, "AwaitingAnalysis")
    run.tick(after=600)
    assert (run.phase, run.status.reason) == (Phase.PAUSED, "AnalysisTimeout")
    assert "did not pass within 10m" in run.status.message
    assert replicas(run) == {"1": 2, "2": 2}


@pytest.mark.parametrize(("action", "phase"), [("Promote", Phase.PROMOTING), ("Rollback", Phase.ROLLED_BACK)])
def test_timeout_action(action: str, phase: Phase) -> None:
    analysis = {"interval": "15s", "timeout": {"after": "1m", "action": action},
                "metrics": [{"name": "e", "type": "errorRate", "margin": 0.01}]}
    run = run_from_healthy(make_spec(version="2", steps=[{"setWeight": 50}], analysis=analysis))
    run.tick()
    run.tick(after=1)
    run.tick_analysis(Verdict.INCONCLUSIVE)
    run.tick(after=61, pods_ready=False)
    assert (run.phase, run.status.reason) == (phase, "AnalysisTimeout")


def test_without_analysis_steps_only_wait_for_pods() -> None:
    run = run_from_healthy(make_spec(version="2", analysis=None, steps=[{"setWeight": 25}, {"setWeight": 100}]))
    run.tick()
    run.tick(after=1)
    assert replicas(run) == {"1": 3, "2": 1}
    run.tick(after=1)
    assert run.phase == Phase.PROMOTING
    run.tick(after=1)
    assert run.phase == Phase.HEALTHY and run.status.stable_version == "2"


def test_canary_pods_never_ready_roll_back_at_the_progress_deadline() -> None:
    run = run_from_healthy(make_spec(version="2", progressDeadlineSeconds=60))
    run.tick(pods_ready=False)
    run.tick(after=61, pods_ready=False)
    assert (run.phase, run.status.reason) == (Phase.ROLLED_BACK, "ProgressDeadlineExceeded")
    assert "0/1 ready" in run.status.message


def test_desired_weight_matches_replica_share() -> None:
    for weight in (10, 25, 50):
        canary, stable = replicas_for_weight(4, weight)
        run = run_from_healthy(make_spec(version="2", steps=[{"setWeight": weight}, {"pause": {}}]))
        run.tick()
        run.tick(after=1)
        assert run.status.desired_weight == weight
        assert replicas(run) == {"1": stable, "2": canary}


def test_analysis_is_asked_for_up_front_and_a_spec_that_moved_on_is_not_judged() -> None:
    run = run_from_healthy(make_spec(version="2"))
    run.tick()
    run.tick(after=1)
    due_at = run.status.analysis.next_tick_at
    assert due_at is not None and not needs_analysis(run.spec, run.status, run.now)
    assert needs_analysis(run.spec, run.status, due_at)
    assert not needs_analysis(make_spec(version="3"), run.status, due_at)  # superseded, not measured


def test_a_due_analysis_without_a_measurement_looks_again_soon() -> None:
    run = run_from_healthy(make_spec(version="2"))
    run.tick()
    run.tick(after=1)
    due_at = run.status.analysis.next_tick_at
    assert due_at is not None
    decision = run.tick(after=(due_at - run.now).total_seconds())  # e.g. the scrape had no baseline yet
    assert decision.status.analysis.ticks == 0 and decision.next_tick_at == run.now + POLL
