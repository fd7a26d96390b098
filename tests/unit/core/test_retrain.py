"""The retraining trigger in the decision core: a Job once drift has lasted `for`, one at a time, its end recorded,
none again before the cooldown."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from modelrollout.core import decide
from modelrollout.core.observations import Decision, ValidationJobObservation
from modelrollout.core.status import DriftStatus, RetrainStatus, RolloutStatus

from .builders import at, healthy_status, make_obs, make_spec, ready

pytestmark = pytest.mark.unit
TEMPLATE = {"spec": {"template": {"spec": {"containers": [{"name": "t", "image": "trainer:1"}]}}}}
DRIFTED = [{"version": "1", "state": "Drifted", "message": "drifted: f3: PSI 0.900"}]


def spec(**retrain: Any) -> Any:
    return make_spec(version="1", monitoring={"drift": {"window": "10s", "interval": "2s"},
                                              "retrain": {"jobTemplate": TEMPLATE, "for": "30s", "cooldown": "5m",
                                                          **retrain}})


def drifting_since(seconds: float | None, retrain: RetrainStatus | None = None) -> RolloutStatus:
    since = None if seconds is None else at(seconds)
    drift = DriftStatus(next_look_at=at(10_000), last_look_at=at(0), drifted_since=since,
                        versions=DRIFTED if since else [])
    return replace(healthy_status("1"), drift=drift, retrain=retrain)


def tick(status: RolloutStatus, now: float, job: ValidationJobObservation | None = None, **kw: Any) -> Decision:
    return decide(spec(**kw), status, replace(make_obs({"1": ready(4)}), retrain=job), at(now))


def finished(seconds: float, state: str = "Succeeded") -> RetrainStatus:
    return RetrainStatus("fraud-retrain-1", state, started_at=at(seconds - 60), finished_at=at(seconds))


def test_no_job_before_drift_has_lasted_for_and_a_wake_up_when_it_will() -> None:
    decision = tick(drifting_since(0), 29)
    assert decision.retrain_job is None and decision.status.retrain is None
    assert decision.next_tick_at <= at(30)
    assert tick(drifting_since(None), 1000).retrain_job is None  # no drift: nothing


def test_one_job_once_drift_lasted_for_named_after_the_run() -> None:
    decision = tick(drifting_since(0), 30)
    assert decision.retrain_job is not None and decision.retrain_job.name == "fraud-retrain-1"
    run = decision.status.retrain
    assert run is not None and (run.state, run.runs, run.started_at) == ("Running", 1, at(30))
    assert "f3: PSI 0.900" in run.message
    assert [e.reason for e in decision.events] == ["RetrainStarted"]
    # While it runs, no second Job, however long drift lasts
    again = tick(decision.status, 90, ValidationJobObservation("fraud-retrain-1"))
    assert again.retrain_job is None and again.status.retrain == run and again.events == ()


@pytest.mark.parametrize(("job", "state", "words", "event"), [
    (ValidationJobObservation("fraud-retrain-1", finished=True), "Succeeded", "succeeded", "RetrainSucceeded"),
    (ValidationJobObservation("fraud-retrain-1", finished=True, failure="BackoffLimitExceeded"), "Failed",
     "failed: BackoffLimitExceeded", "RetrainFailed"),
    (ValidationJobObservation("fraud-retrain-1", exists=False), "Failed", "gone before it finished", "RetrainFailed"),
])
def test_the_jobs_end_is_recorded(job: ValidationJobObservation, state: str, words: str, event: str) -> None:
    started = tick(drifting_since(0), 30).status
    decision = tick(started, 95, job)
    run = decision.status.retrain
    assert run is not None and (run.state, run.finished_at) == (state, at(95)) and words in run.message
    assert [e.reason for e in decision.events] == [event]


def test_the_next_job_waits_for_the_cooldown_after_the_last_one_ended() -> None:
    status = drifting_since(0, retrain=finished(100))
    assert tick(status, 399).retrain_job is None  # cooldown 5 m from 100 s
    decision = tick(status, 400)
    assert decision.retrain_job is not None and decision.retrain_job.name == "fraud-retrain-2"
    assert decision.status.retrain is not None and decision.status.retrain.runs == 2


def test_drift_that_started_again_after_the_cooldown_waits_for_again() -> None:
    status = drifting_since(1000, retrain=finished(100))
    assert tick(status, 1029).retrain_job is None
    assert tick(status, 1030).retrain_job is not None


def test_without_retrain_in_spec_nothing_starts() -> None:
    status = drifting_since(0)
    plain = make_spec(version="1", monitoring={"drift": {}})
    decision = decide(plain, status, make_obs({"1": ready(4)}), at(10_000))
    assert decision.retrain_job is None and decision.status.retrain is None


def test_the_retrain_status_round_trips() -> None:
    status = replace(healthy_status("1"), retrain=finished(100, "Failed"))
    assert RolloutStatus.from_dict(status.to_dict()) == status
    assert isinstance(status.to_dict()["retrain"]["startedAt"], str)


def with_accuracy(accuracy: float | None, labels: int = 400) -> RolloutStatus:
    status = drifting_since(0)
    assert status.drift is not None
    extra = {} if accuracy is None else {"labels": labels, "accuracy": accuracy}
    status.drift.versions = [{**DRIFTED[0], **extra}]
    return status


@pytest.mark.parametrize(("accuracy", "starts"), [(None, True), (0.79, True), (0.8, False), (0.95, False)])
def test_min_accuracy_holds_a_job_back_while_the_labels_show_the_model_still_does_well(
        accuracy: float | None, starts: bool) -> None:
    decision = tick(with_accuracy(accuracy), 30, minAccuracy=0.8)
    assert (decision.retrain_job is not None) == starts
