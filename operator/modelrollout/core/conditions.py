"""Kubernetes-style conditions derived from the phase (Ready, Progressing, Paused), and those other modules set
(Drifted, core/driftwatch.py), which the phase's rewrite keeps.

lastTransitionTime moves only when a condition's status flips, as kubectl users expect.
"""

from __future__ import annotations

from datetime import datetime

from modelrollout.core.phases import Phase
from modelrollout.core.status import Condition, RolloutStatus, format_time

_TRUE_IN: dict[str, frozenset[Phase]] = {
    "Ready": frozenset({Phase.HEALTHY}),
    "Progressing": frozenset({Phase.PENDING, Phase.PROGRESSING, Phase.PROMOTING}),
    "Paused": frozenset({Phase.PAUSED}),
}


def update_conditions(status: RolloutStatus, now: datetime) -> None:
    """Rewrite the phase's conditions from status.phase/reason/message; other conditions stay as they are."""
    previous = {c.type: c for c in status.conditions}
    others = [c for c in status.conditions if c.type not in _TRUE_IN]
    conditions = []
    for kind, phases in _TRUE_IN.items():
        value = "True" if status.phase in phases else "False"
        before = previous.get(kind)
        since = before.last_transition_time if before and before.status == value else format_time(now)
        conditions.append(Condition(type=kind, status=value, reason=status.reason or "None",
                                    message=status.message, last_transition_time=since,
                                    observed_generation=status.observed_generation))
    status.conditions = conditions + others


def set_condition(status: RolloutStatus, kind: str, value: str, reason: str, message: str, now: datetime) -> None:
    """Set one condition that is not the phase's; its lastTransitionTime moves only when `value` changes.

    >>> st = RolloutStatus()
    >>> set_condition(st, "Drifted", "True", "InputDrift", "f1", datetime(2026, 1, 1))
    >>> set_condition(st, "Drifted", "True", "InputDrift", "f1, f2", datetime(2026, 1, 2))
    >>> [(c.type, c.message, c.last_transition_time) for c in st.conditions]
    [('Drifted', 'f1, f2', '2026-01-01T00:00:00Z')]
    """
    before = next((c for c in status.conditions if c.type == kind), None)
    since = before.last_transition_time if before and before.status == value else format_time(now)
    new = Condition(type=kind, status=value, reason=reason, message=message, last_transition_time=since,
                    observed_generation=status.observed_generation)
    status.conditions = [c for c in status.conditions if c.type != kind] + [new]


def drop_condition(status: RolloutStatus, kind: str) -> None:
    status.conditions = [c for c in status.conditions if c.type != kind]
