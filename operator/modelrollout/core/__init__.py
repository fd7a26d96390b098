"""The decision core: pure functions from (spec, status, observations, now) to a Decision.

No kopf, no Kubernetes client, no HTTP, no clock: time comes in as `now`.
"""

from modelrollout.core.decide import decide, decide_from_dicts, hold_capacity
from modelrollout.core.observations import (
    AnalysisObservation,
    Decision,
    DeploymentIntent,
    DeploymentObservation,
    Observations,
    selector,
)
from modelrollout.core.phases import Event, Phase
from modelrollout.core.routers.replicas import replicas_for_weight
from modelrollout.core.spec import RolloutSpec
from modelrollout.core.status import RolloutStatus, merge_patch, status_patch
from modelrollout.core.verdicts import needs_analysis

__all__ = [
    "AnalysisObservation", "Decision", "DeploymentIntent", "DeploymentObservation", "Event", "Observations",
    "Phase", "RolloutSpec", "RolloutStatus", "decide", "decide_from_dicts",
    "hold_capacity", "merge_patch", "needs_analysis", "replicas_for_weight", "selector", "status_patch",
]
