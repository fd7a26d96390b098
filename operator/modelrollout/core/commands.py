"""Manual control through annotations, so a GitOps tool that owns spec is never fought.

    kubectl annotate mro fraud modelrollout.dev/command=promote modelrollout.dev/command-id=7f3a --overwrite

A command is handled once per command id: the core stores the last handled id in
status.lastCommandId, so a repeated tick (or an operator restart) never applies it twice.
A command that does not fit the current phase is recorded as handled with a Warning event.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from modelrollout.core.change import Change, clear_canary, model_record, roll_back, start_canary
from modelrollout.core.phases import Phase
from modelrollout.core.spec import RolloutSpec
from modelrollout.core.status import ModelRecord, RolloutStatus
from modelrollout.core.strategies import strategy_for

COMMAND_ANNOTATION = "modelrollout.dev/command"
COMMAND_ID_ANNOTATION = "modelrollout.dev/command-id"
IN_FLIGHT = (Phase.PROGRESSING, Phase.PAUSED, Phase.PROMOTING)
RESUMABLE = ("ManualPause", "Inconclusive", "AnalysisTimeout")


class Command(enum.StrEnum):
    PROMOTE = "promote"  # what "go on" means is the strategy's: past the step (canary), switch now (blue-green)
    PROMOTE_FULL = "promote-full"  # skip every remaining step and promote
    ABORT = "abort"  # roll back now
    RETRY = "retry"  # start again after a rollback, abort or failure
    PAUSE = "pause"  # hold where it is (analysis keeps running; a Fail still rolls back)
    RESUME = "resume"  # continue after pause, an inconclusive pause or an analysis timeout pause
    UNDO = "undo"  # go back to the previous stable version


@dataclass(frozen=True)
class CommandRequest:
    text: str  # as written in the annotation
    request_id: str

    @property
    def command(self) -> Command | None:
        try:
            return Command(self.text.strip().lower())
        except ValueError:
            return None


def pending_command(annotations: Mapping[str, str], status: RolloutStatus) -> CommandRequest | None:
    """The command not yet handled, if any (a command without an id is never handled).

    >>> from modelrollout.core.status import RolloutStatus
    >>> ann = {COMMAND_ANNOTATION: "abort", COMMAND_ID_ANNOTATION: "1"}
    >>> pending_command(ann, RolloutStatus()).command, pending_command(ann, RolloutStatus(last_command_id="1"))
    (<Command.ABORT: 'abort'>, None)
    """
    text = annotations.get(COMMAND_ANNOTATION)
    request_id = annotations.get(COMMAND_ID_ANNOTATION)
    if not text or not request_id or request_id == status.last_command_id:
        return None
    return CommandRequest(text=text, request_id=request_id)


def apply_command(change: Change, spec: RolloutSpec, request: CommandRequest) -> None:
    """Apply `request` to the working status and record its id."""
    change.status.last_command_id = request.request_id
    command = request.command
    if command is None:
        change.note("UnknownCommand", f"unknown command {request.text!r}; use one of "
                    + ", ".join(c.value for c in Command), warning=True)
        return
    refusal = _HANDLERS[command](change, spec)
    if refusal:
        change.note("CommandIgnored", f"{command.value}: {refusal}", warning=True)
    else:
        change.note("CommandHandled", f"{command.value} (id {request.request_id})")


def _promote(change: Change, spec: RolloutSpec) -> str | None:
    st = change.status
    if st.canary_model is None or st.phase not in (Phase.PROGRESSING, Phase.PAUSED):
        return f"nothing to promote in phase {st.phase.value if st.phase else 'new'}"
    st.analysis.consecutive_inconclusive = 0
    strategy_for(spec).promote(change, spec)
    return None


def _promote_full(change: Change, spec: RolloutSpec) -> str | None:
    st = change.status
    if st.canary_model is None or st.phase not in (Phase.PROGRESSING, Phase.PAUSED):
        return f"nothing to promote in phase {st.phase.value if st.phase else 'new'}"
    change.move(Phase.PROMOTING, "ManualPromoteFull",
                f"promoting version {st.canary_version} at once, skipping the remaining steps, by request")
    return None


def _abort(change: Change, spec: RolloutSpec) -> str | None:
    if change.status.canary_model is None or change.status.phase not in IN_FLIGHT:
        return "no new version is rolling out"
    roll_back(change, "Aborted", "aborted by request", outcome="Aborted")
    return None


def _retry(change: Change, spec: RolloutSpec) -> str | None:
    st = change.status
    held_back = st.rejected_version is not None and st.rejected_version == spec.model.version
    if st.phase not in (Phase.ROLLED_BACK, Phase.FAILED) and not held_back:
        return f"retry applies after a rollback or failure, phase is {st.phase.value if st.phase else 'new'}"
    st.rejected_version = None
    if st.phase == Phase.FAILED and not st.history:  # the first version never became Ready
        st.stable_model, st.step_started_at = model_record(spec.model), change.now
        change.move(Phase.PENDING, "Retry", f"deploying version {spec.model.version} again by request")
    elif spec.model.version != st.stable_version:
        clear_canary(change)
        start_canary(change, spec, "Retry")
    else:
        change.move(Phase.HEALTHY, "Retry", f"version {st.stable_version} serves all traffic")
    return None


def _pause(change: Change, spec: RolloutSpec) -> str | None:
    if change.status.phase != Phase.PROGRESSING:
        return "only a progressing rollout can be paused"
    change.move(Phase.PAUSED, "ManualPause", "paused by request: run `kubectl modelrollout resume` to continue")
    return None


def _resume(change: Change, spec: RolloutSpec) -> str | None:
    st = change.status
    if st.phase != Phase.PAUSED or st.reason not in RESUMABLE:
        return "nothing to resume here; a pause step or blue-green preview continues with `promote`"
    st.analysis.consecutive_inconclusive = 0
    if st.reason == "AnalysisTimeout":
        st.step_started_at = change.now  # wait another analysis.timeout.after for a verdict
    change.move(Phase.PROGRESSING, "Resumed", "resumed by request")
    return None


def _undo(change: Change, spec: RolloutSpec) -> str | None:
    st = change.status
    if st.phase not in (Phase.HEALTHY, Phase.ROLLED_BACK):
        return "undo needs a settled rollout; abort the version in flight first"
    previous = previous_stable(st)
    if previous is None:
        return "no previous stable version in history"
    if spec.model.version != previous.version:
        st.rejected_version = spec.model.version
    st.canary_model = previous
    st.current_step_index, st.step_started_at, st.scale_down_at = None, change.now, None
    change.move(Phase.PROMOTING, "Undo",
                f"undo: going back to version {previous.version} from {st.stable_version}")
    return None


def previous_stable(status: RolloutStatus) -> ModelRecord | None:
    """The newest version in history that was stable before the current stable one."""
    for entry in reversed(status.history):
        if entry.outcome in ("Deployed", "Promoted") and entry.version != status.stable_version:
            return entry.model
    return None


_HANDLERS: dict[Command, Callable[[Change, RolloutSpec], str | None]] = {
    Command.PROMOTE: _promote, Command.PROMOTE_FULL: _promote_full, Command.ABORT: _abort,
    Command.RETRY: _retry, Command.PAUSE: _pause, Command.RESUME: _resume, Command.UNDO: _undo,
}
