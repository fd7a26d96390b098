"""The drift watch (spec.monitoring.drift): are the serving versions' live inputs still like their training inputs?

Every `interval` the adapter gathers, for each watched version, the live inputs its pods counted per bin of the
model's training reference over the last `window` (a DriftObservation: only when `needs_drift_look` says a look
is due). Each version is judged by analysis/drift.assess_drift and the result becomes:

- `status.drift`: per version Drifted / NoDrift / NotJudged (too few inputs, a pod unread) / NotAvailable (no
  usable reference), the message, and per feature its PSI and Holm-adjusted p-value;
- the `Drifted` condition: True naming the versions' drifted features and their scores; False when every watched
  version was judged without drift; Unknown ("not judged: ...") otherwise - missing data is never "no drift";
- an Event when the condition's status changes.

Watched: the stable version always, and the candidate while one is rolled out (an input difference between the
two is a routing problem worth seeing). Pure: no I/O, time comes in as `now`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from modelrollout.analysis.drift import DriftReport, assess_drift
from modelrollout.core.change import Change
from modelrollout.core.conditions import drop_condition, set_condition
from modelrollout.core.monitoring import DriftWatch
from modelrollout.core.observations import DriftObservation, VersionDrift
from modelrollout.core.phases import Phase
from modelrollout.core.spec import RolloutSpec
from modelrollout.core.status import DriftStatus, RolloutStatus
from modelrollout.durations import format_duration

CONDITION = "Drifted"
DRIFTED, NO_DRIFT, NOT_JUDGED, NOT_AVAILABLE = "Drifted", "NoDrift", "NotJudged", "NotAvailable"
IN_FLIGHT = (Phase.PROGRESSING, Phase.PAUSED, Phase.PROMOTING)


@dataclass(frozen=True)
class _Feature:
    """A reference feature by the shape analysis.drift.BinnedFeature asks for."""

    name: str
    counts: tuple[int, ...]


def drift_watch(spec: RolloutSpec) -> DriftWatch | None:
    return None if spec.monitoring is None else spec.monitoring.drift_watch


def watched_versions(st: RolloutStatus) -> tuple[str, ...]:
    """The stable version, and the candidate while it is rolled out.

    >>> from modelrollout.core.status import ModelRecord
    >>> v1, v2 = ModelRecord("1", "u"), ModelRecord("2", "u")
    >>> st = RolloutStatus(phase=Phase.PROGRESSING, stable_model=v1, canary_model=v2)
    >>> watched_versions(st), watched_versions(RolloutStatus(phase=Phase.HEALTHY, stable_model=v1))
    (('1', '2'), ('1',))
    """
    versions = [] if st.stable_version is None else [st.stable_version]
    if st.canary_version is not None and st.phase in IN_FLIGHT and st.canary_version not in versions:
        versions.append(st.canary_version)
    return tuple(versions)


def needs_drift_look(spec: RolloutSpec, st: RolloutStatus, now: datetime) -> bool:
    """Whether this tick should gather a DriftObservation (a look is due, or none was made yet)."""
    if drift_watch(spec) is None or not watched_versions(st):
        return False
    return st.drift is None or st.drift.next_look_at is None or now >= st.drift.next_look_at


def watch_drift(change: Change, spec: RolloutSpec, obs: DriftObservation | None) -> None:
    """Record a look's verdicts (status, condition, Event) and schedule the next one."""
    st, watch = change.status, drift_watch(spec)
    if watch is None or not watched_versions(st):
        st.drift = None
        drop_condition(st, CONDITION)
        return
    if obs is None:
        if st.drift is not None and st.drift.next_look_at is not None:
            change.wake_at.append(st.drift.next_look_at)
        return
    entries = [_judge(v, watch) for v in obs.versions]
    previous = st.drift or DriftStatus()
    drifted = [e for e in entries if e["state"] == DRIFTED]
    next_look = change.now + timedelta(seconds=watch.interval_seconds)
    st.drift = DriftStatus(next_look_at=next_look, last_look_at=change.now, versions=entries,
                           drifted_since=(previous.drifted_since or change.now) if drifted else None)
    change.wake_at.append(next_look)
    _condition(change, entries)


def _judge(seen: VersionDrift, watch: DriftWatch) -> dict[str, Any]:
    """One version's entry of status.drift.versions."""
    base: dict[str, Any] = {"version": seen.version}
    labelled = seen.labels_correct + seen.labels_incorrect
    if labelled > 0:  # feedback labels in the window: the version's accuracy on them (retrain.minAccuracy)
        base.update(labels=int(labelled), accuracy=round(seen.labels_correct / labelled, 6))
    if seen.problem:
        return {**base, "state": NOT_JUDGED, "message": f"not judged: {seen.problem}"}
    features = [_Feature(name, counts) for name, counts in seen.reference
                if not watch.features or name in watch.features]
    if seen.state != "loaded" or not features:
        why = seen.state if seen.state != "loaded" else "none of spec.monitoring.drift.features is in the reference"
        return {**base, "state": NOT_AVAILABLE, "message": f"drift watch not available: reference {why}"}
    report = assess_drift(features, seen.live, watch.config)
    state = DRIFTED if report.drifted else NO_DRIFT if report.judged else NOT_JUDGED
    message = report.describe()
    if state == NOT_JUDGED:
        message += f" over {format_duration(seen.window_seconds)}, minSamples {watch.min_samples}"
    return {**base, "state": state, "message": message, "windowSeconds": round(seen.window_seconds, 3),
            "features": _features(report)}


def _features(report: DriftReport) -> list[dict[str, Any]]:
    return [{"name": f.feature, "samples": f.samples, "psi": round(f.psi, 6), "pValue": float(f"{f.adjusted_p:.6g}"),
             "drifted": f.drifted} for f in report.features]


def _condition(change: Change, entries: Sequence[dict[str, Any]]) -> None:
    st = change.status
    before = next((c for c in st.conditions if c.type == CONDITION), None)
    drifted = [e for e in entries if e["state"] == DRIFTED]
    unjudged = [e for e in entries if e["state"] in (NOT_JUDGED, NOT_AVAILABLE)]
    if drifted:
        status, reason = "True", "InputDrift"
        message = "; ".join(f"version {e['version']} {e['message']}" for e in drifted)
    elif unjudged:
        status, reason = "Unknown", unjudged[0]["state"]
        message = "; ".join(f"version {e['version']}: {e['message']}" for e in unjudged)
    else:
        status, reason = "False", "NoDrift"
        message = "; ".join(f"version {e['version']}: {e['message']}" for e in entries)
    set_condition(st, CONDITION, status, reason, message, change.now)
    if before is None or before.status != status:
        event = {"True": "DriftDetected", "False": "DriftCleared" if before and before.status == "True" else "NoDrift",
                 "Unknown": "DriftNotJudged"}[status]
        change.note(event, message, warning=status == "True")
