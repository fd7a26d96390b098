"""Replay ticks through the engine as the operator would, restarting (a JSON round trip of the
state) after every tick."""

from __future__ import annotations

import json

from modelrollout.analysis.config import AnalysisConfig
from modelrollout.analysis.engine import assess_tick
from modelrollout.analysis.state import AnalysisState
from modelrollout.analysis.types import AnalysisOutcome, Tick


def run(config: AnalysisConfig, ticks: list[Tick]) -> tuple[AnalysisOutcome, AnalysisState]:
    state = AnalysisState.initial(config)
    outcome = None
    for tick in ticks:
        outcome, state = assess_tick(config, state, tick)
        state = AnalysisState.from_dict(json.loads(json.dumps(state.to_dict())), config)  # as after a restart
    assert outcome is not None
    return outcome, state
