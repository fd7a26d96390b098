"""The validation gate (spec.validation): before any strategy routes a request to the candidate, a Job
judges it on a holdout dataset; a failed gate rolls the candidate back having served nothing.

The gate runs on every tick of an in-flight candidate (Progressing or Paused) until it has passed:

    no run for this candidate  -> Running: status.validation names a new Job, the Decision asks for it
    Running, Job not finished  -> hold; after timeoutSeconds (+ grace) fail, naming why its pod waits
    Job finished               -> read its result (the JSON of modelserver/validation/report.py, from the
                                  container's termination message): passed -> the strategy starts this
                                  tick; failed -> rolled back with the first failed check in the message

While it holds, traffic goes to the stable version alone and the candidate has no pods at all: the Job
loads both model files itself (the same URIs and digests as the pods), so nothing of the candidate can
be an endpoint of a user-facing Service, and no network path to it is needed. `start_canary` clears
status.validation, so `retry` of a rolled-back version validates it again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from modelrollout.core.change import Change, roll_back
from modelrollout.core.observations import (
    Observations,
    StrategyPlan,
    TrafficIntent,
    ValidationJobIntent,
    ValidationJobObservation,
)
from modelrollout.core.phases import Phase
from modelrollout.core.spec import RolloutSpec
from modelrollout.core.status import RolloutStatus, ValidationStatus, format_time

RUNNING, PASSED, FAILED, CANCELLED = "Running", "Passed", "Failed", "Cancelled"
POLL = timedelta(seconds=2)
# Beyond the Job's own activeDeadlineSeconds: time for the Job controller to create the pod and report.
GRACE = timedelta(seconds=60)
GATED_PHASES = (Phase.PROGRESSING, Phase.PAUSED)


def job_name(rollout: str, version: str, started: str) -> str:
    """A DNS-1123 name of at most 63 characters (it becomes the job-name label), new for each run.

    >>> job_name("fraud", "2", "2026-01-01T00:00:00Z")
    'fraud-validate-2-4c32541a'
    """
    digest = hashlib.sha256(f"{version}\n{started}".encode()).hexdigest()[:8]
    slug = "".join(c if c.isalnum() else "-" for c in version.lower())
    return f"{rollout}-validate-{slug}"[: 63 - 9].rstrip("-") + f"-{digest}"


def run_gate(change: Change, spec: RolloutSpec, obs: Observations) -> bool:
    """Advance the gate of the candidate in flight; True while it keeps the candidate from any traffic."""
    st = change.status
    if spec.validation is None or st.canary_model is None or st.phase not in GATED_PHASES:
        return False
    run = st.validation
    if run is None or run.version != st.canary_model.version:
        _start(change, obs.name)
        return True
    if run.state == PASSED:
        return False
    if run.state == RUNNING:
        _follow(change, spec, run, obs.validation)
    return run.state != PASSED  # passed just now: the strategy starts in this same tick


def _start(change: Change, rollout: str) -> None:
    st = change.status
    assert st.canary_model is not None
    version = st.canary_model.version
    st.validation = ValidationStatus(version=version, state=RUNNING, job=job_name(rollout, version,
                                     format_time(change.now)), started_at=change.now)
    _report(change, f"validating version {version} on the holdout (Job {st.validation.job})")


def _follow(change: Change, spec: RolloutSpec, run: ValidationStatus, job: ValidationJobObservation | None) -> None:
    assert spec.validation is not None
    if job is not None and job.name == run.job and job.finished:
        _finish(change, run, job)
        return
    waiting = f"; {job.waiting}" if job is not None and job.waiting else ""
    limit = timedelta(seconds=spec.validation.timeout_seconds) + GRACE
    if change.now - run.started_at > limit:
        _fail(change, run, f"the validation Job {run.job} did not finish within "
                           f"{spec.validation.timeout_seconds}s{waiting}")
        return
    _report(change, f"validating version {run.version} on the holdout (Job {run.job}){waiting}")


def _report(change: Change, message: str) -> None:
    """The running gate in status (a paused rollout keeps its pause reason) and when to look again."""
    st = change.status
    assert st.validation is not None
    st.validation.message = message
    if st.phase == Phase.PROGRESSING:
        change.move(Phase.PROGRESSING, "Validating", message)
    change.wake_at.append(change.now + POLL)


@dataclass(frozen=True)
class JobResult:
    passed: bool
    message: str
    rows: int | None
    checks: list[dict[str, Any]]


def parse_result(job: ValidationJobObservation) -> JobResult:
    """The Job's verdict. Anything but a well-formed result that says passed is a failure: a crash,
    a usage error (its log tail) or the Job's deadline (DeadlineExceeded) never counts as a pass.

    >>> parse_result(ValidationJobObservation("j", finished=True, result='{"passed": true, "message": "ok"}')).passed
    True
    >>> parse_result(ValidationJobObservation("j", finished=True, failure="DeadlineExceeded")).message
    'the validation Job failed (DeadlineExceeded)'
    """
    try:
        body = json.loads(job.result or "")
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("passed"), bool):
        detail = f"the validation Job failed ({job.failure or 'no result'})"
        last = (job.result or "").strip().splitlines()[-1:] if job.result else []
        return JobResult(False, f"{detail}: {last[0]}" if last else detail, None, [])
    checks = [c for c in body.get("checks", []) if isinstance(c, dict)]
    rows = body.get("rows") if isinstance(body.get("rows"), int) else None
    return JobResult(body["passed"], str(body.get("message", "")), rows, checks)


def _finish(change: Change, run: ValidationStatus, job: ValidationJobObservation) -> None:
    result = parse_result(job)
    run.rows, run.checks = result.rows, result.checks
    if not result.passed:
        # A Job killed at its deadline says only DeadlineExceeded: add why its pod waited, if it did.
        waited = run.message.partition("; ")[2] if result.rows is None else ""
        _fail(change, run, f"{result.message}; {waited}" if waited else result.message)
        return
    run.state, run.message = PASSED, f"version {run.version} passed validation: {result.message}"
    change.note("ValidationPassed", run.message)
    change.status.step_started_at = change.now  # the first step's clock starts when traffic can


def _fail(change: Change, run: ValidationStatus, message: str) -> None:
    run.state, run.message = FAILED, message
    roll_back(change, "ValidationFailed", f"validation on the holdout failed: {message}")


def holding_plan(change: Change) -> StrategyPlan:
    """While the gate holds: the stable version alone takes traffic, the candidate runs no pods."""
    return StrategyPlan(status=change.status, events=(), traffic=TrafficIntent(stable=change.status.stable_version),
                        wake_at=())


def job_intent(spec: RolloutSpec, change: Change) -> ValidationJobIntent | None:
    """The Job a running gate needs (the adapter creates it unless it exists)."""
    st = change.status
    run = st.validation
    if spec.validation is None or run is None or run.state != RUNNING or st.canary_model is None:
        return None
    if st.stable_model is None or run.version != st.canary_model.version:
        return None
    return ValidationJobIntent(name=run.job, stable=st.stable_model, candidate=st.canary_model)


def cancel_stale_run(before: RolloutStatus, change: Change) -> str | None:
    """The Job of a run that was Running when the tick started and that no gate waits for any more (its
    version was superseded, aborted, or promoted by hand): that run is marked Cancelled and its Job is
    returned, for the adapter to delete instead of letting it work on until its deadline."""
    old = before.validation
    if old is None or old.state != RUNNING:
        return None
    st = change.status
    run = st.validation
    if run is not None and run.job == old.job:
        waited_for = st.canary_model is not None and st.canary_model.version == run.version
        if run.state != RUNNING or (waited_for and st.phase in GATED_PHASES):
            return None
        run.state, run.message = CANCELLED, f"cancelled: version {run.version} no longer waits for it ({st.reason})"
    return old.job
