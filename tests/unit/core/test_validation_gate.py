"""The validation gate (core/validation.py): the candidate gets no pods and no traffic until its Job's
result says passed; a failed result, a broken Job or a Job that never finishes rolls it back."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from modelrollout.core.observations import LABEL_ROLLOUT, ValidationJobObservation
from modelrollout.core.phases import Phase
from modelrollout.core.spec import RolloutSpec

from .builders import Run, make_spec, run_from_healthy

pytestmark = pytest.mark.unit
HOLDOUT = {"data": {"configMap": {"name": "holdout", "key": "holdout.csv"}}, "timeoutSeconds": 60,
           "checks": {"minAccuracy": 0.9}}
PASSED = {"passed": True, "message": "all 7 checks passed on 500 holdout rows", "rows": 500,
          "checks": [{"name": "minAccuracy", "subject": "overall", "verdict": "Pass", "candidate": 0.93,
                      "stable": 0.9, "threshold": 0.9}]}
FAILED = {"passed": False, "message": "minAccuracy failed: candidate accuracy (overall) 0.4800, minimum 0.9",
          "rows": 500, "checks": [{"name": "minAccuracy", "subject": "overall", "verdict": "Fail",
                                   "candidate": 0.48, "stable": 0.9, "threshold": 0.9}]}


def gated(version: str = "2") -> RolloutSpec:
    return make_spec(version=version, analysis=None, steps=[{"setWeight": 50}], validation=HOLDOUT)


def finish(run: Run, result: dict[str, Any] | str | None, failure: str = "") -> None:
    assert run.status.validation is not None
    text = result if isinstance(result, str) or result is None else json.dumps(result)
    run.world.validation = ValidationJobObservation(run.status.validation.job, finished=True, result=text,
                                                    failure=failure)


def candidate_pods(run: Run) -> int:
    seen = run.world.deployments.get("2")
    return 0 if seen is None else seen.replicas


def test_the_candidate_runs_no_pods_and_the_job_is_asked_for_until_the_gate_passes() -> None:
    run = run_from_healthy(gated())
    decision = run.tick()
    assert (run.phase, run.status.reason) == (Phase.PROGRESSING, "Validating")
    assert decision.validation_job is not None and decision.validation_job.candidate.version == "2"
    assert decision.validation_job.stable.version == "1"
    assert candidate_pods(run) == 0 and run.world.selectors["fraud"] == {LABEL_ROLLOUT: "fraud"}
    job = decision.validation_job.name
    run.world.validation = ValidationJobObservation(job, waiting="pod x waits: CreateContainerConfigError "
                                                    'configmap "holdout" not found')
    decision = run.tick(after=2)
    assert decision.validation_job is not None and decision.validation_job.name == job  # same run, same Job
    assert 'configmap "holdout" not found' in run.status.message and candidate_pods(run) == 0
    finish(run, None, "DeadlineExceeded")
    probe = Run(spec=run.spec, world=copy.deepcopy(run.world), status=run.status, now=run.now)
    probe.tick(after=2)  # a Job killed at its deadline: the message keeps why its pod waited
    assert 'DeadlineExceeded); pod x waits: CreateContainerConfigError configmap "holdout"' in probe.status.message
    finish(run, PASSED)
    decision = run.tick(after=2)
    assert run.status.validation is not None and run.status.validation.state == "Passed"
    assert run.status.validation.checks == PASSED["checks"] and decision.validation_job is None
    assert any(e.reason == "ValidationPassed" for e in decision.events)
    assert candidate_pods(run) == 2  # the canary's first step, in the same tick
    for _ in range(4):
        run.tick(after=5)
    assert (run.phase, run.status.stable_version) == (Phase.HEALTHY, "2")


@pytest.mark.parametrize(("result", "failure", "words"), [
    (FAILED, "", "minAccuracy failed: candidate accuracy (overall) 0.4800"),
    ("spec.validation.checks.minF1: 2 is outside [0, 1]", "BackoffLimitExceeded",
     "the validation Job failed (BackoffLimitExceeded): spec.validation.checks.minF1"),
    (None, "DeadlineExceeded", "the validation Job failed (DeadlineExceeded)"),
    ('{"passed": "yes"}', "", "the validation Job failed (no result)"),
])
def test_anything_but_a_passed_result_rolls_back_with_zero_candidate_pods(
        result: dict[str, Any] | str | None, failure: str, words: str) -> None:
    run = run_from_healthy(gated())
    run.tick()
    finish(run, result, failure)
    decision = run.tick(after=2)
    assert (run.phase, run.status.reason) == (Phase.ROLLED_BACK, "ValidationFailed")
    assert words in run.status.message and run.status.rejected_version == "2"
    assert run.status.validation is not None and run.status.validation.state == "Failed"
    assert candidate_pods(run) == 0 and decision.validation_job is None
    assert run.status.history[-1].outcome == "RolledBack"


def test_a_job_that_never_finishes_fails_the_gate_after_its_timeout() -> None:
    run = run_from_healthy(gated())
    run.tick()
    assert run.status.validation is not None
    run.world.validation = ValidationJobObservation(run.status.validation.job, waiting="pod x waits: ImagePullBackOff")
    run.tick(after=60 + 59)
    assert run.phase == Phase.PROGRESSING
    run.tick(after=2)
    assert (run.phase, run.status.reason) == (Phase.ROLLED_BACK, "ValidationFailed")
    assert "did not finish within 60s; pod x waits: ImagePullBackOff" in run.status.message


def test_retry_validates_again_with_a_new_job() -> None:
    run = run_from_healthy(gated())
    first = run.tick().validation_job
    finish(run, FAILED)
    run.tick(after=2)
    run.world.command("retry", "r1")
    decision = run.tick(after=10)
    assert run.phase == Phase.PROGRESSING and decision.validation_job is not None and first is not None
    assert decision.validation_job.name != first.name


def test_blue_green_preview_waits_for_the_gate_too() -> None:
    spec = make_spec(version="2", analysis=None, blue_green={"previewService": "fraud-preview"}, validation=HOLDOUT)
    run = run_from_healthy(spec)
    run.tick()
    assert candidate_pods(run) == 0 and "fraud-preview" not in run.world.selectors
    finish(run, PASSED)
    run.tick(after=2)
    assert candidate_pods(run) == 4


def test_without_validation_nothing_changes() -> None:
    run = run_from_healthy(make_spec(version="2", analysis=None, steps=[{"setWeight": 50}]))
    decision = run.tick()
    assert decision.validation_job is None and run.status.validation is None and candidate_pods(run) == 2


def test_a_run_nothing_waits_for_is_cancelled_and_its_job_deleted() -> None:
    run = run_from_healthy(gated())
    first = run.tick().validation_job
    assert first is not None
    # Superseded by version 3: a new run, the old Job deleted
    run.spec = gated("3")
    decision = run.tick(after=2)
    assert decision.cancel_validation_job == first.name
    assert decision.validation_job is not None and decision.validation_job.candidate.version == "3"
    # Aborted: the run is marked Cancelled, its Job deleted, and nothing more is asked for
    run.world.command("abort", "a1")
    decision = run.tick(after=2)
    assert run.status.validation is not None and run.status.validation.state == "Cancelled"
    assert run.phase == Phase.ROLLED_BACK and decision.cancel_validation_job == run.status.validation.job
    assert run.tick(after=2).cancel_validation_job is None
