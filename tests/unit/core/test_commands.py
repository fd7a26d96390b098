"""Manual commands through annotations: each one, exactly once, and refusals that explain themselves."""

from __future__ import annotations

import pytest

from modelrollout.analysis.types import Verdict
from modelrollout.core.phases import Phase

from .builders import Run, make_spec, run_from_healthy

pytestmark = pytest.mark.unit
P = Phase


def canary_at_step_pause() -> Run:
    """Canary 25% -> 2m -> 50% -> pause {} -> 100%, parked at the indefinite pause (step 4)."""
    run = run_from_healthy(make_spec(version="2", analysis=None), history=("0",))
    for after in (0, 1, 1, 120, 1, 1):
        run.tick(after=after)
    assert (run.phase, run.status.reason, run.status.current_step_index) == (P.PAUSED, "StepPause", 3)
    return run


def send(run: Run, text: str, request_id: str = "r1", after: float = 1) -> None:
    run.world.command(text, request_id)
    run.tick(after=after)


def test_promote_moves_past_the_pause_once_per_command_id() -> None:
    run = canary_at_step_pause()
    send(run, "promote", "r1")
    assert (run.phase, run.status.last_command_id) == (P.PROMOTING, "r1")  # next step was setWeight 100
    run.tick(after=1)
    run.tick(after=1)
    assert (run.phase, run.status.stable_version) == (P.HEALTHY, "2")
    assert [e.reason for d in run.decisions for e in d.events].count("CommandHandled") == 1


def test_promote_at_a_middle_pause_goes_to_the_next_step_only() -> None:
    run = run_from_healthy(make_spec(version="2", analysis=None,
                                     steps=[{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]))
    for _ in range(3):
        run.tick(after=1)
    assert (run.phase, run.status.current_step_index) == (P.PAUSED, 1)
    send(run, "promote", "a")
    assert (run.phase, run.status.current_step_index, run.status.desired_weight) == (P.PROGRESSING, 2, 50)
    for _ in range(3):
        run.tick(after=1)  # the same command id again: nothing more happens
    assert (run.phase, run.status.current_step_index) == (P.PAUSED, 3)


def test_promote_full_skips_every_remaining_step() -> None:
    run = run_from_healthy(make_spec(version="2"))
    run.tick()
    send(run, "promote-full")
    assert (run.phase, run.status.reason) == (P.PROMOTING, "ManualPromoteFull")


def test_abort_rolls_back_and_the_version_stays_out_until_retry() -> None:
    run = run_from_healthy(make_spec(version="2"))
    run.tick()
    run.tick(after=1)
    send(run, "abort")
    assert (run.phase, run.status.reason, run.status.rejected_version) == (P.ROLLED_BACK, "Aborted", "2")
    assert run.status.history[-1].outcome == "Aborted"
    assert "retry" in run.status.message
    for _ in range(3):
        run.tick(after=60)
    assert run.phase == P.ROLLED_BACK and run.status.canary_version is None
    send(run, "retry", "r2")
    assert (run.phase, run.status.canary_version, run.status.current_step_index) == (P.PROGRESSING, "2", 0)
    assert run.status.rejected_version is None


def test_reapplying_a_rolled_back_version_needs_retry_and_says_so() -> None:
    run = run_from_healthy(make_spec(version="2"))
    run.tick()
    send(run, "abort")
    run.spec = make_spec(version="1")
    run.tick(after=1)
    assert run.phase == P.HEALTHY
    run.spec = make_spec(version="2")
    run.tick(after=1)
    assert (run.phase, run.status.canary_version) == (P.HEALTHY, None)
    assert "`kubectl modelrollout retry`" in run.status.message and "version 2" in run.status.message
    send(run, "retry", "r2")
    assert (run.phase, run.status.canary_version) == (P.PROGRESSING, "2")


def test_a_different_version_after_a_rollback_starts_without_retry() -> None:
    run = run_from_healthy(make_spec(version="2"))
    run.tick()
    send(run, "abort")
    run.spec = make_spec(version="3")
    run.tick(after=1)
    assert (run.phase, run.status.canary_version) == (P.PROGRESSING, "3")


def test_pause_holds_everything_and_resume_continues() -> None:
    run = run_from_healthy(make_spec(version="2", analysis=None))
    run.tick()
    send(run, "pause")
    assert (run.phase, run.status.reason) == (P.PAUSED, "ManualPause")
    for _ in range(3):
        run.tick(after=300)
    assert (run.phase, run.status.current_step_index) == (P.PAUSED, 0)
    send(run, "resume", "r2")
    assert run.phase == P.PROGRESSING
    run.tick(after=1)
    assert run.status.current_step_index == 1


def test_a_failing_canary_is_rolled_back_even_while_paused() -> None:
    run = run_from_healthy(make_spec(version="2"))
    run.tick()
    run.tick(after=1)
    send(run, "pause")
    run.tick_analysis(Verdict.FAIL)
    run.tick_analysis(Verdict.FAIL)
    assert run.phase == P.ROLLED_BACK


def test_undo_returns_to_the_previous_stable_version_without_a_capacity_dip() -> None:
    run = run_from_healthy(make_spec(version="2"), stable="2", history=("1",))
    send(run, "undo")
    assert (run.phase, run.status.reason, run.status.canary_version) == (P.PROMOTING, "Undo", "1")
    assert run.world.deployments["2"].replicas == 4  # kept until version 1 is Ready
    run.tick(after=1)
    assert (run.phase, run.status.stable_version) == (P.HEALTHY, "1")
    assert {v: d.replicas for v, d in run.world.deployments.items()} == {"1": 4, "2": 0}
    assert run.status.rejected_version == "2"
    run.tick(after=60)
    assert run.phase == P.HEALTHY and "retry" in run.status.message  # spec still names 2: not re-rolled
    assert run.world.deployments["1"].replicas == 4
    send(run, "undo", "u2")
    assert run.status.canary_version == "2"  # undo again flips back


@pytest.mark.parametrize(
    ("given", "text", "why"),
    [
        ("healthy", "promote", "nothing to promote"),
        ("healthy", "abort", "no new version is rolling out"),
        ("healthy", "retry", "retry applies after a rollback"),
        ("healthy", "pause", "only a progressing rollout can be paused"),
        ("healthy", "resume", "nothing to resume"),
        ("step-pause", "resume", "continues with `promote`"),
        ("no-history", "undo", "no previous stable version"),
        ("healthy", "explode", "unknown command 'explode'"),
    ],
)
def test_commands_that_do_not_fit_are_refused_with_a_warning(given: str, text: str, why: str) -> None:
    if given == "step-pause":
        run = canary_at_step_pause()
    else:
        run = run_from_healthy(make_spec(version="1"), history=() if given == "no-history" else ("0",))
    phase = run.phase
    send(run, text, "x1")
    warnings = [e for e in run.decisions[-1].events if e.type == "Warning"]
    assert len(warnings) == 1 and why in warnings[0].message
    assert run.phase == phase and run.status.last_command_id == "x1"


def test_a_command_without_an_id_is_not_handled() -> None:
    run = run_from_healthy(make_spec(version="2"))
    run.tick()
    run.world.annotations["modelrollout.dev/command"] = "abort"
    run.tick(after=1)
    assert run.phase == P.PROGRESSING and run.status.last_command_id is None
