"""A working copy of the status for one decision, with the moves that every module shares.

Phase changes go through `Change.move`, which asks `phases.transition` for permission and
records the Event; that keeps every transition in one place however many modules drive it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from datetime import datetime

from modelrollout.core.phases import Event, Phase, transition
from modelrollout.core.spec import ModelSpec, RolloutSpec
from modelrollout.core.status import AnalysisStatus, HistoryEntry, ModelRecord, RolloutStatus, format_time


@dataclass
class Change:
    status: RolloutStatus
    now: datetime
    events: list[Event] = field(default_factory=list)
    wake_at: list[datetime] = field(default_factory=list)  # when this rollout wants its next tick

    @classmethod
    def of(cls, status: RolloutStatus, now: datetime) -> Change:
        """Start from a deep copy so the caller's status is never modified."""
        return cls(status=copy.deepcopy(status), now=now)

    def move(self, target: Phase, reason: str, message: str, warning: bool = False) -> None:
        """Change phase (or only the reason, within a phase) and emit an Event when something changed;
        warning: a Warning Event even where the phase alone would give a Normal one."""
        st = self.status
        if st.phase == target and st.reason == reason:
            st.message = message
            return
        event = transition(st.phase, target, reason, message)
        if warning:
            event = replace(event, type="Warning")
        st.phase, st.reason, st.message = target, reason, message
        self.events.append(event)

    def note(self, reason: str, message: str, warning: bool = False) -> None:
        """An Event that is not a phase change (a step completed, a command ignored)."""
        self.events.append(Event(type="Warning" if warning else "Normal", reason=reason, message=message))

    def record(self, model: ModelRecord, outcome: str, reason: str) -> None:
        self.status.record_history(
            HistoryEntry(version=model.version, outcome=outcome, reason=reason,
                         finished_at=format_time(self.now), model=model)
        )


def model_record(model: ModelSpec) -> ModelRecord:
    return ModelRecord(version=model.version, uri=model.uri, digest=model.digest, format=model.format,
                       allow_pickle=model.allow_pickle, drift_reference_digest=model.drift_reference_digest)


def start_canary(change: Change, spec: RolloutSpec, reason: str) -> None:
    """Begin rolling out spec.model against the stable version, from the first step."""
    st = change.status
    st.canary_model = model_record(spec.model)
    st.current_step_index = 0
    st.step_started_at = change.now
    st.desired_weight = 0
    st.effective_weight = None
    st.rejected_version = None
    st.scale_down_at = None
    st.analysis = AnalysisStatus()
    st.validation = None  # a new attempt is validated anew (spec.validation)
    st.shadow = None  # and runs its shadow stage anew
    change.move(Phase.PROGRESSING, reason,
                f"rolling out version {spec.model.version} beside stable version {st.stable_version}")


def clear_canary(change: Change) -> None:
    st = change.status
    st.canary_model = None
    st.current_step_index = None
    st.step_started_at = None
    st.desired_weight = None
    st.effective_weight = None
    st.scale_down_at = None
    st.analysis.next_tick_at = None


def roll_back(change: Change, reason: str, detail: str, outcome: str = "RolledBack") -> None:
    """Reject the version in flight at once: stable takes all traffic, the new version goes to 0."""
    st = change.status
    canary = st.canary_model
    if canary is None:
        return
    change.record(canary, outcome, reason)
    clear_canary(change)
    st.rejected_version = canary.version
    change.move(
        Phase.ROLLED_BACK, reason,
        f"version {canary.version} rolled back: {detail}. Version {st.stable_version} serves all traffic; "
        f"version {canary.version} stays rolled back until spec changes or `kubectl modelrollout retry`",
    )


def finish_promotion(change: Change) -> None:
    """The new version's pods carry everything: it becomes the stable one (no pod restarts)."""
    st = change.status
    canary = st.canary_model
    if canary is None:
        return
    change.record(canary, "Promoted", st.reason)
    previous = st.stable_version
    st.stable_model = canary
    clear_canary(change)
    change.move(Phase.HEALTHY, "Promoted", f"version {canary.version} promoted; replaced version {previous}")
