"""Event names of a tick are reproducible from what a replay of the tick would see."""

from __future__ import annotations

import pytest

from modelrollout.core.phases import Event
from modelrollout.kubeevents import tick_event_names

pytestmark = pytest.mark.unit
ROLLOUT = {"metadata": {"name": "fraud", "uid": "u-1", "generation": 3}}
STATUS = {"phase": "Progressing", "currentStepIndex": 1}
EVENTS = [Event("Normal", "StepCompleted", "step 2/5 completed"), Event("Normal", "StepStarted", "weight 50")]


def test_the_same_tick_gets_the_same_names_even_when_its_numbers_differ() -> None:
    again = [Event("Normal", "StepCompleted", "step 2/5 completed"), Event("Normal", "StepStarted", "weight 51")]
    assert tick_event_names(ROLLOUT, dict(STATUS), EVENTS) == tick_event_names(ROLLOUT, dict(STATUS), again)


def test_names_differ_by_place_reason_starting_status_and_rollout() -> None:
    names = tick_event_names(ROLLOUT, STATUS, EVENTS)
    assert len(set(names)) == 2 and all(n.startswith("fraud.") and len(n) <= 253 for n in names)
    assert tick_event_names(ROLLOUT, {**STATUS, "currentStepIndex": 2}, EVENTS)[0] != names[0]
    other = {"metadata": {**ROLLOUT["metadata"], "uid": "u-2"}}
    assert tick_event_names(other, STATUS, EVENTS)[0] != names[0]
    assert tick_event_names(ROLLOUT, STATUS, [Event("Normal", "Promoted", "x")])[0] != names[0]
