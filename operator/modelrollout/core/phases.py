"""The rollout's phases and the one place where the phase changes.

Every phase change goes through `transition`, which checks it against `ALLOWED` and returns the
Kubernetes Event that announces it, so `kubectl describe` tells the whole story.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Phase(enum.StrEnum):
    """What `kubectl get modelrollouts` shows in the PHASE column."""

    PENDING = "Pending"  # first version of the model: its pods are starting, no traffic yet
    PROGRESSING = "Progressing"  # a new version takes traffic step by step and is being measured
    PAUSED = "Paused"  # waiting for a person: `kubectl modelrollout promote` or `resume` continues
    PROMOTING = "Promoting"  # the new version passed: it is taking over all traffic, the old one goes
    HEALTHY = "Healthy"  # one version serves all traffic; nothing is in flight
    ROLLED_BACK = "RolledBack"  # the new version was rejected; the stable one serves everything
    FAILED = "Failed"  # cannot continue without a spec change or `retry` (see message)


P = Phase
# Who may follow whom. A phase "following itself" is not a transition (no event), except
# where listed: Progressing -> Progressing is a new version superseding the one in flight.
ALLOWED: dict[Phase, frozenset[Phase]] = {
    P.PENDING: frozenset({P.PENDING, P.HEALTHY, P.FAILED}),
    P.PROGRESSING: frozenset({P.PROGRESSING, P.PAUSED, P.PROMOTING, P.HEALTHY, P.ROLLED_BACK, P.FAILED}),
    P.PAUSED: frozenset({P.PROGRESSING, P.PROMOTING, P.HEALTHY, P.ROLLED_BACK, P.FAILED}),
    P.PROMOTING: frozenset({P.PROGRESSING, P.HEALTHY, P.ROLLED_BACK, P.FAILED}),
    P.HEALTHY: frozenset({P.PROGRESSING, P.PROMOTING, P.FAILED}),
    P.ROLLED_BACK: frozenset({P.PROGRESSING, P.PROMOTING, P.HEALTHY, P.FAILED}),
    P.FAILED: frozenset({P.PENDING, P.PROGRESSING, P.HEALTHY, P.FAILED}),
}

NEW_RESOURCE = frozenset({P.PENDING, P.FAILED})  # a resource without status starts here

# Phases that end in a bad place get a Warning event; the rest are Normal.
WARNING_PHASES = frozenset({P.ROLLED_BACK, P.FAILED, P.PAUSED})


class TransitionError(ValueError):
    """A phase change that the state machine does not allow: a bug in the core, never user input."""


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to emit on the ModelRollout (type is Normal or Warning)."""

    type: str
    reason: str
    message: str


def is_allowed(current: Phase | None, target: Phase) -> bool:
    """Whether the state machine allows `current -> target` (None: a brand-new resource).

    >>> is_allowed(Phase.HEALTHY, Phase.PROGRESSING), is_allowed(Phase.HEALTHY, Phase.ROLLED_BACK)
    (True, False)
    """
    if current is None:
        return target in NEW_RESOURCE
    return target in ALLOWED[current]


def transition(current: Phase | None, target: Phase, reason: str, message: str) -> Event:
    """Check `current -> target` and return the Event that announces it.

    >>> transition(Phase.PROGRESSING, Phase.ROLLED_BACK, "AnalysisFailed", "error-rate 5%").type
    'Warning'
    """
    if not is_allowed(current, target):
        raise TransitionError(f"phase {current} cannot go to {target.value} ({reason})")
    event_type = "Warning" if target in WARNING_PHASES else "Normal"
    return Event(type=event_type, reason=reason, message=message)
