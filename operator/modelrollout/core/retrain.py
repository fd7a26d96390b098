"""The retraining trigger (spec.monitoring.retrain): a Job from the user's template once drift has lasted.

When the drift watch's `Drifted` condition has been True without a break for `for` (status.drift.driftedSince),
the Decision asks for a Job made from `jobTemplate`, named <rollout>-retrain-<n>. At most one runs at a time: while
status.retrain is Running the adapter reads the Job back each tick and its end (Succeeded, or Failed with the
Job's reason) is recorded with the time; the next Job waits for `cooldown` after that end and for drift to still
(or again) have lasted `for`. What the Job does - train, validate, publish a new version, open a pull request or
apply the ModelRollout - is the user's; the operator never changes the rollout's spec itself. Pure, like the core.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from modelrollout.core.change import Change
from modelrollout.core.monitoring import RetrainTrigger
from modelrollout.core.observations import RetrainJobIntent, ValidationJobObservation
from modelrollout.core.spec import RolloutSpec
from modelrollout.core.status import RetrainStatus
from modelrollout.core.steps import POLL
from modelrollout.durations import format_duration

RUNNING, SUCCEEDED, FAILED = "Running", "Succeeded", "Failed"
NAME_LIMIT = 63  # a Job's name is a label value (job-name) on its pods


def retrain_trigger(spec: RolloutSpec) -> RetrainTrigger | None:
    monitoring = spec.monitoring
    return None if monitoring is None or monitoring.drift_watch is None else monitoring.retrain


def job_name(rollout: str, run: int) -> str:
    """<rollout>-retrain-<run>, the rollout's part shortened to fit.

    >>> job_name("fraud", 3), len(job_name("x" * 63, 12))
    ('fraud-retrain-3', 63)
    """
    suffix = f"-retrain-{run}"
    return rollout[:NAME_LIMIT - len(suffix)].rstrip("-") + suffix


def plan_retrain(change: Change, spec: RolloutSpec, rollout: str,
                 job: ValidationJobObservation | None) -> RetrainJobIntent | None:
    """Follow the running Job, or start one when drift has lasted `for` and the cooldown is over."""
    st = change.status
    if st.retrain is not None and st.retrain.state == RUNNING:
        _follow(change, st.retrain, job)
        return None
    trigger = retrain_trigger(spec)
    if trigger is None or st.drift is None or st.drift.drifted_since is None:
        return None
    due = st.drift.drifted_since + timedelta(seconds=trigger.for_seconds)
    if st.retrain is not None and st.retrain.finished_at is not None:
        due = max(due, st.retrain.finished_at + timedelta(seconds=trigger.cooldown_seconds))
    if change.now < due:
        change.wake_at.append(due)
        return None
    if not accuracy_too_low(trigger, st.drift.versions):
        return None  # looked at again with the next drift look (whose wake-up is already set)
    run = 1 if st.retrain is None else st.retrain.runs + 1
    name = job_name(rollout, run)
    drifted = "; ".join(f"version {v['version']} {v.get('message', '')}" for v in st.drift.versions
                        if v.get("state") == "Drifted")
    why = f"drifted for {format_duration(trigger.for_seconds)} or more: {drifted}"
    st.retrain = RetrainStatus(job=name, state=RUNNING, started_at=change.now, message=why, runs=run)
    change.note("RetrainStarted", f"created retraining Job {name}: {why}")
    change.wake_at.append(change.now + POLL)
    return RetrainJobIntent(name)


def accuracy_too_low(trigger: RetrainTrigger, versions: list[dict[str, Any]]) -> bool:
    """Whether minAccuracy lets a Job start: unset, or no drifted version has labels in the window (drift alone
    then decides), or a drifted version's accuracy on its labels is below it.

    >>> t = RetrainTrigger(job_template={}, min_accuracy=0.8)
    >>> [accuracy_too_low(t, [{"state": "Drifted", **labels}]) for labels in ({}, {"labels": 90, "accuracy": 0.9},
    ...                                                                        {"labels": 90, "accuracy": 0.7})]
    [True, False, True]
    """
    drifted = [v for v in versions if v.get("state") == "Drifted" and v.get("labels")]
    if trigger.min_accuracy is None or not drifted:
        return True
    return any(float(v["accuracy"]) < trigger.min_accuracy for v in drifted)


def _follow(change: Change, run: RetrainStatus, job: ValidationJobObservation | None) -> None:
    change.wake_at.append(change.now + POLL)
    if job is None:  # not read this tick (the adapter reads it whenever status.retrain is Running)
        return
    if not job.exists:
        run.state, run.finished_at = FAILED, change.now
        run.message = f"Job {run.job} is gone before it finished (deleted by someone, or its TTL)"
    elif job.finished:
        run.state, run.finished_at = (FAILED if job.failure else SUCCEEDED), change.now
        run.message = f"Job {run.job} failed: {job.failure}" if job.failure else f"Job {run.job} succeeded"
    else:
        return
    change.note("RetrainFailed" if run.state == FAILED else "RetrainSucceeded", run.message,
                warning=run.state == FAILED)
