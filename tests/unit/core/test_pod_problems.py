"""Why pods are not Ready reaches the status at once; a model that cannot load ends the rollout at once.

A load failure the model server does not retry (a wrong digest, a pickle not allowed, a wrong feature
count) can never heal, so waiting out progressDeadlineSeconds only hides it for ten minutes. A problem that
may heal (a fetch failing, a container crash-looping) is named in the message and waits for the deadline.
"""

from __future__ import annotations

import pytest

from modelrollout.core.observations import PodProblem
from modelrollout.core.phases import Phase

from .builders import Run, make_spec, run_from_healthy

pytestmark = pytest.mark.unit

DIGEST = PodProblem("fraud-v2-abc", "digest_mismatch", "the model file's sha256 differs from spec.model.digest",
                    permanent=True)
FETCH = PodProblem("fraud-v2-abc", "fetch_failed", "the model file cannot be fetched; retrying")
CRASHING = PodProblem("fraud-v2-abc", "CrashLoopBackOff", "last exit: OOMKilled", restarts=3)
CANARY = {"version": "2"}
BLUE_GREEN = {"version": "2", "blue_green": {"previewService": "fraud-preview", "autoPromotionSeconds": 60}}


def canary_waiting(problem: PodProblem, **spec: object) -> Run:
    """A rollout of version 2 whose pods exist but are not Ready, with `problem` reported."""
    run = run_from_healthy(make_spec(**spec))  # type: ignore[arg-type]
    run.tick(pods_ready=False)
    assert run.phase == Phase.PROGRESSING and run.status.reason == "WaitingForPods"
    run.world.pod_problems = {"2": (problem,)}
    return run


@pytest.mark.parametrize("strategy", [CANARY, BLUE_GREEN], ids=["canary", "blue-green"])
@pytest.mark.parametrize("problem", [DIGEST, PodProblem("fraud-v2-abc", "pickle_not_allowed", permanent=True),
                                     PodProblem("fraud-v2-abc", "validation_failed", permanent=True)],
                         ids=lambda p: p.reason)
def test_a_model_that_cannot_load_is_rolled_back_on_the_next_tick(strategy: dict[str, object],
                                                                  problem: PodProblem) -> None:
    run = canary_waiting(problem, **strategy)
    decision = run.tick(after=5, pods_ready=False)
    assert (run.phase, run.status.reason) == (Phase.ROLLED_BACK, "ModelLoadFailed")
    assert f"pod fraud-v2-abc: {problem.reason}" in run.status.message
    assert run.status.rejected_version == "2"
    assert [(e.type, e.reason) for e in decision.events] == [("Warning", "ModelLoadFailed")]
    assert problem.reason in decision.events[0].message
    assert decision.deployments is not None and decision.deployments["2"].replicas == 0
    assert decision.deployments["1"].replicas == 4  # stable keeps serving everything


@pytest.mark.parametrize("strategy", [CANARY, BLUE_GREEN], ids=["canary", "blue-green"])
@pytest.mark.parametrize("problem", [FETCH, CRASHING], ids=lambda p: p.reason)
def test_a_problem_that_may_heal_is_named_with_one_warning_and_waits_for_the_deadline(
        strategy: dict[str, object], problem: PodProblem) -> None:
    run = canary_waiting(problem, **strategy)
    first = run.tick(after=5, pods_ready=False)
    assert (run.phase, run.status.reason) == (Phase.PROGRESSING, "PodsNotReady")
    assert problem.describe() in run.status.message
    assert [(e.type, e.reason) for e in first.events] == [("Warning", "PodsNotReady")]
    again = run.tick(after=5, pods_ready=False)
    assert again.events == ()  # reported once, not every poll
    run.tick(after=600, pods_ready=False)  # past progressDeadlineSeconds
    assert (run.phase, run.status.reason) == (Phase.ROLLED_BACK, "ProgressDeadlineExceeded")
    assert problem.reason in run.status.message


def test_the_problem_clears_from_the_message_once_pods_start_normally() -> None:
    run = canary_waiting(FETCH)
    run.tick(after=5, pods_ready=False)
    run.world.pod_problems = {}
    run.tick(after=5, pods_ready=False)
    assert run.status.reason == "WaitingForPods" and "fetch_failed" not in run.status.message
    run.tick(after=1)
    assert run.phase == Phase.PROGRESSING and run.status.current_step_index == 0
    assert run.status.desired_weight == 25 and "fetch_failed" not in run.status.message


def test_a_problem_of_the_stable_version_does_not_reject_the_canary() -> None:
    run = canary_waiting(DIGEST)
    run.world.pod_problems = {"1": (DIGEST,)}
    run.tick(after=5, pods_ready=False)
    assert (run.phase, run.status.reason) == (Phase.PROGRESSING, "WaitingForPods")


def test_a_first_version_that_cannot_load_fails_at_once_and_one_that_may_heal_keeps_deploying() -> None:
    run = Run(spec=make_spec(version="1"))
    run.tick(pods_ready=False)
    assert run.phase == Phase.PENDING
    run.world.pod_problems = {"1": (FETCH,)}
    decision = run.tick(after=5, pods_ready=False)
    assert (run.phase, run.status.reason) == (Phase.PENDING, "PodsNotReady")
    assert "fetch_failed" in run.status.message and decision.events[0].type == "Warning"
    run.world.pod_problems = {"1": (DIGEST,)}
    decision = run.tick(after=5, pods_ready=False)
    assert (run.phase, run.status.reason) == (Phase.FAILED, "ModelLoadFailed")
    assert "digest_mismatch" in run.status.message
    assert [(e.type, e.reason) for e in decision.events] == [("Warning", "ModelLoadFailed")]
    # A fixed spec starts over.
    run.spec = make_spec(version="1b")
    run.world.pod_problems = {}
    run.tick(after=5)
    assert run.status.stable_version == "1b"

