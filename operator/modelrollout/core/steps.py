"""Step helpers every strategy shares (a neutral home, so no strategy borrows another's internals)."""

from __future__ import annotations

from datetime import timedelta

from modelrollout.core.change import Change, finish_promotion, roll_back
from modelrollout.core.observations import Observations
from modelrollout.core.phases import Phase
from modelrollout.core.spec import RolloutSpec

POLL = timedelta(seconds=5)  # how soon to look again while pods start or a change is being applied


def start_analysis(change: Change, spec: RolloutSpec) -> None:
    """Schedule the first analysis tick once the new version serves traffic (idempotent)."""
    a = change.status.analysis
    if spec.analysis is None or a.next_tick_at is not None:
        return
    a.started_at = change.now
    a.next_tick_at = change.now + timedelta(seconds=spec.analysis.interval_seconds)
    change.wake_at.append(a.next_tick_at)


def deadline_passed(change: Change, spec: RolloutSpec) -> bool:
    """Whether the current step has waited longer than spec.progressDeadlineSeconds for its pods."""
    started = change.status.step_started_at
    return started is not None and change.now - started > timedelta(seconds=spec.progress_deadline_seconds)


def roll_back_if_unloadable(change: Change, obs: Observations, version: str, what: str) -> bool:
    """Roll back at once when a pod of `version` cannot load its model (a wrong digest, a pickle not
    allowed, a wrong feature count): waiting out the progress deadline cannot fix it. True if it did."""
    problem = obs.unhealable_problem(version)
    if problem is None:
        return False
    roll_back(change, "ModelLoadFailed", f"{what} cannot load the model: {problem.describe()}")
    return True


def wait_for_pods(change: Change, obs: Observations, version: str, message: str) -> None:
    """Still Progressing while pods start; a reported problem (CrashLoopBackOff, a fetch failing) is
    named in the message and announced by one Warning Event, then waits for the progress deadline."""
    why = obs.why_not_ready(version)
    change.move(Phase.PROGRESSING, "PodsNotReady" if why else "WaitingForPods", message + why, warning=bool(why))
    change.wake_at.append(change.now + POLL)


def promote_if_ready(change: Change, spec: RolloutSpec, obs: Observations) -> None:
    """Promoting: once every pod of the new version is Ready it becomes the stable one."""
    st = change.status
    if st.canary_model is None:
        return
    if obs.is_version_ready(st.canary_model.version, spec.replicas):
        finish_promotion(change)
    else:
        change.wake_at.append(change.now + POLL)
