"""The shadow step (core/shadowstep.py): the users' Service is narrowed to the stable version before the candidate
has a pod, the candidate runs behind its own Service, mirroring is a ConfigMap change, and the paired analysis of
the candidate's pairs passes it on, or rolls it back with the discordant counts in the message."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from modelrollout.analysis.paired import PairedCounts
from modelrollout.core.observations import LABEL_ROLLOUT, LABEL_VERSION, DeploymentObservation, ShadowObservation
from modelrollout.core.phases import Phase
from modelrollout.core.spec import RolloutSpec
from modelrollout.core.status import RolloutStatus

from .builders import Run, make_spec, run_from_healthy, spec_dict

pytestmark = pytest.mark.unit
SHADOW = {"shadow": {"percent": 50, "replicas": 2, "interval": "10s", "timeout": "5m",
                     "analysis": {"minAgreement": 0.8, "margin": 0.02, "minSamples": 100}}}
STABLE_ONLY = {LABEL_ROLLOUT: "fraud", LABEL_VERSION: "1"}
CANDIDATE_ONLY = {LABEL_ROLLOUT: "fraud", LABEL_VERSION: "2"}
EVERY_VERSION = {LABEL_ROLLOUT: "fraud"}
GOOD = PairedCounts(agree=4_800, disagree=200, both_right=2_700, stable_only=40, candidate_only=45, both_wrong=115)
WORSE = PairedCounts(agree=4_400, disagree=600, both_right=2_500, stable_only=330, candidate_only=30, both_wrong=140)


def shadow_spec(*later: dict[str, Any], **extra: Any) -> RolloutSpec:
    return make_spec(steps=[SHADOW, *later], analysis=None, **extra)


def candidate_pods(run: Run) -> int:
    seen = run.world.deployments.get("2")
    return 0 if seen is None else seen.replicas


def mirroring(run: Run) -> Run:
    """Ticks until the stable pods copy requests to a Ready candidate (Pinning, Starting, Mirroring)."""
    run.tick()
    assert run.status.shadow is not None and run.status.shadow.stage == "Pinning"
    run.tick(after=1)
    assert run.status.shadow.stage == "Starting"
    run.tick(after=1)
    assert run.status.shadow.stage == "Mirroring", run.status.message
    return run


def look(run: Run, counts: dict[str, PairedCounts], errors: tuple[str, ...] = ()) -> None:
    status: RolloutStatus = run.status
    assert status.shadow is not None and status.shadow.next_look_at is not None
    wait = max(0.0, (status.shadow.next_look_at - run.now).total_seconds())
    run.tick(after=wait, shadow=ShadowObservation("2", counts, errors))


def test_the_users_service_selects_the_stable_version_before_the_candidate_gets_a_pod() -> None:
    run = run_from_healthy(shadow_spec({"setWeight": 50}))
    run.world.selectors["fraud"] = dict(EVERY_VERSION)
    decision = run.tick()
    assert candidate_pods(run) == 0 and run.world.selectors["fraud"] == STABLE_ONLY
    assert run.world.selectors["fraud-shadow"] == CANDIDATE_ONLY
    assert decision.mirror is not None and decision.mirror.data == {"mirror.yaml": "percent: 0\n"}
    assert (run.phase, run.status.reason) == (Phase.PROGRESSING, "Shadowing")
    run.tick(after=1)  # the narrowed selector observed: the candidate starts, behind its own Service only
    assert candidate_pods(run) == 2 and run.world.deployments["1"].replicas == 4
    assert run.world.selectors["fraud"] == STABLE_ONLY and run.world.mirror == {"mirror.yaml": "percent: 0\n"}


def test_mirroring_starts_once_the_candidate_is_ready_and_is_only_a_configmap_change() -> None:
    run = mirroring(run_from_healthy(shadow_spec({"setWeight": 50})))
    assert run.world.mirror == {"mirror.yaml": 'target: http://fraud-shadow.ml.svc.cluster.local:80\n'
                                               'percent: 50\nversion: "2"\n'}
    assert any(e.reason == "ShadowStarted" for e in run.decisions[-1].events)
    decision = run.tick(after=1)  # nothing changed: the ConfigMap is not written again
    assert decision.mirror is None


def test_a_pass_ends_mirroring_and_the_next_step_points_the_users_service_at_both_versions() -> None:
    run = mirroring(run_from_healthy(shadow_spec({"setWeight": 50})))
    look(run, {"a": PairedCounts(agree=2_400, disagree=100, both_right=1_350, stable_only=20, candidate_only=22,
                                 both_wrong=58),
               "b": PairedCounts(agree=2_400, disagree=100, both_right=1_350, stable_only=20, candidate_only=23,
                                 both_wrong=57)})
    assert run.status.shadow is not None and run.status.shadow.stage == "Passed", run.status.shadow.message
    assert run.status.current_step_index == 1 and run.world.mirror == {"mirror.yaml": "percent: 0\n"}
    assert any(e.reason == "ShadowPassed" for e in run.decisions[-1].events)
    assert run.world.selectors["fraud"] == EVERY_VERSION and candidate_pods(run) == 2  # weight 50 of 4 pods
    assert run.status.shadow.total.agree == 4_800


def test_a_worse_candidate_is_rolled_back_with_the_discordant_counts_and_never_joins_the_users_service() -> None:
    run = mirroring(run_from_healthy(shadow_spec({"setWeight": 50})))
    look(run, {"a": WORSE})
    assert (run.phase, run.status.reason) == (Phase.ROLLED_BACK, "ShadowFailed")
    assert "discordant 330 stable-only vs 30 candidate-only" in run.status.message
    assert "paired difference -10.0 pts" in run.status.message and "always-valid interval" in run.status.message
    assert candidate_pods(run) == 0 and run.world.mirror == {"mirror.yaml": "percent: 0\n"}
    # Its pods are on their way out: the users' Service stays narrowed to the stable version until they are gone.
    run.world.deployments["2"] = DeploymentObservation(replicas=0, ready_replicas=1)
    run.tick(after=1)
    assert run.world.selectors["fraud"] == STABLE_ONLY
    del run.world.deployments["2"]
    run.tick(after=1)
    assert run.world.selectors["fraud"] == EVERY_VERSION


def test_missing_or_partial_data_never_passes_and_the_timeout_rolls_back() -> None:
    run = mirroring(run_from_healthy(shadow_spec()))
    look(run, {"a": GOOD}, errors=("pod fraud-v2-b: scrape failed (TimeoutError: timeout)",))
    assert run.status.shadow is not None and run.status.shadow.verdict == "Inconclusive"
    assert "scrape failed" in run.status.message and run.phase == Phase.PROGRESSING
    look(run, {})
    assert run.status.shadow.verdict == "Inconclusive"
    run.tick(after=timedelta(minutes=5).total_seconds())
    assert (run.phase, run.status.reason) == (Phase.ROLLED_BACK, "ShadowTimeout")


def test_a_restarted_candidate_pod_keeps_what_it_counted_before() -> None:
    run = mirroring(run_from_healthy(shadow_spec()))
    look(run, {"a": PairedCounts(agree=60, disagree=5)})
    look(run, {"a": PairedCounts(agree=10, disagree=1)})  # the pod's server started again at zero
    assert run.status.shadow is not None
    assert (run.status.shadow.total.agree, run.status.shadow.total.disagree) == (70, 6)
    restored = RolloutStatus.from_dict(run.status.to_dict())
    assert restored.shadow == run.status.shadow


def test_a_shadow_step_alone_promotes_after_a_pass() -> None:
    run = mirroring(run_from_healthy(shadow_spec()))
    look(run, {"a": GOOD})
    assert run.phase == Phase.PROMOTING and run.world.selectors["fraud"] == EVERY_VERSION
    run.tick(after=1)
    assert (run.phase, run.status.stable_version) == (Phase.HEALTHY, "2")


@pytest.mark.parametrize(("steps", "extra", "message"), [
    ([{"setWeight": 10}, SHADOW], {}, "a shadow step must be the first step"),
    ([SHADOW, SHADOW], {}, "a shadow step must be the first step"),
    ([{"shadow": {"analysis": {}}}], {}, "needs at least one of minAgreement, margin, minImprovement"),
    ([{"shadow": {"percent": 0, "analysis": {"margin": 0.01}}}], {}, "percent: 0 is outside [1, 100]"),
    ([SHADOW, {"setWeight": 50}], {"trafficRouting": {"gatewayAPI": {"httpRoute": "web"}}}, "needs the replicas"),
    ([SHADOW], {"serving": {"metrics": {"preset": "mlserver"}}}, "needs this project's model server"),
    ([{"setWeight": 10, "shadow": SHADOW["shadow"]}], {}, "exactly one of setWeight, pause or shadow"),
])
def test_bad_shadow_specs_are_refused_naming_the_field(steps: list[dict[str, Any]], extra: dict[str, Any],
                                                       message: str) -> None:
    with pytest.raises(ValueError, match=r"spec\.strategy\.canary\.steps") as refused:
        RolloutSpec.from_dict(spec_dict(steps=steps, analysis=None, **extra))
    assert message in str(refused.value)
