"""Step helpers every strategy shares (a neutral home, so no strategy borrows another's internals)."""

from __future__ import annotations

from datetime import timedelta

from modelrollout.core.change import Change
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
