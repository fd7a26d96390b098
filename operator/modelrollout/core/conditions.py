"""Kubernetes-style conditions derived from the phase (Ready, Progressing, Paused).

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
    """Rewrite status.conditions from status.phase/reason/message."""
    previous = {c.type: c for c in status.conditions}
    conditions = []
    for kind, phases in _TRUE_IN.items():
        value = "True" if status.phase in phases else "False"
        before = previous.get(kind)
        since = before.last_transition_time if before and before.status == value else format_time(now)
        conditions.append(Condition(type=kind, status=value, reason=status.reason or "None",
                                    message=status.message, last_transition_time=since,
                                    observed_generation=status.observed_generation))
    status.conditions = conditions
