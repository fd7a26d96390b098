"""Blue-green: preview, a pause for a person (or auto-promotion), one atomic switch, delayed scale-down."""

from __future__ import annotations

from typing import Any

import pytest

from modelrollout.analysis.types import Verdict
from modelrollout.core.observations import LABEL_ROLLOUT, LABEL_VERSION
from modelrollout.core.phases import Phase

from .builders import Run, make_spec, run_from_healthy

pytestmark = pytest.mark.unit


def pins(version: str) -> dict[str, str]:
    return {LABEL_ROLLOUT: "fraud", LABEL_VERSION: version}


def bg_run(**blue_green: Any) -> Run:
    return run_from_healthy(make_spec(version="2", analysis=None,
                                      blue_green={"previewService": "fraud-preview", **blue_green}))


def test_without_auto_promotion_waits_paused_then_promote_switches_atomically() -> None:
    run = bg_run(scaleDownDelaySeconds=30)
    run.tick(pods_ready=False)
    assert (run.phase, run.status.reason) == (Phase.PROGRESSING, "WaitingForPods")
    assert run.world.selectors.get("fraud") == pins("1") and run.world.selectors.get("fraud-preview") == pins("2")
    assert {v: d.replicas for v, d in run.world.deployments.items()} == {"1": 4, "2": 4}
    run.tick(after=5)  # pods become Ready after this tick's decision
    run.tick(after=5)
    assert (run.phase, run.status.reason) == (Phase.PAUSED, "AwaitingPromotion")
    assert "kubectl modelrollout promote" in run.status.message
    run.tick(after=3600)
    assert run.phase == Phase.PAUSED and run.world.selectors.get("fraud") == pins("1")
    run.world.command("promote", "p1")
    decision = run.tick(after=1)
    assert run.phase == Phase.PROMOTING and decision.selectors["fraud"] == pins("2")
    assert {v: d.replicas for v, d in run.world.deployments.items()} == {"1": 4, "2": 4}  # old kept for 30s
    run.tick(after=29)
    assert run.phase == Phase.PROMOTING
    run.tick(after=1)
    assert (run.phase, run.status.stable_version) == (Phase.HEALTHY, "2")
    assert {v: d.replicas for v, d in run.world.deployments.items()} == {"1": 0, "2": 4}
    assert run.world.selectors.get("fraud") == pins("2")


def test_switch_waits_until_the_main_service_really_selects_the_new_version() -> None:
    run = bg_run(autoPromotionSeconds=0, scaleDownDelaySeconds=0)
    run.tick()
    run.tick(after=1)
    assert run.phase == Phase.PROMOTING
    run.world.selectors["fraud"] = pins("1")  # the Service patch has not landed yet
    run.tick(after=1)
    run.world.selectors["fraud"] = pins("1")
    decision = run.tick(after=1)
    assert run.phase == Phase.PROMOTING and decision.selectors["fraud"] == pins("2")
    run.tick(after=1)
    assert run.phase == Phase.HEALTHY


def test_auto_promotion_after_the_configured_seconds() -> None:
    run = bg_run(autoPromotionSeconds=60, scaleDownDelaySeconds=0)
    run.tick()
    run.tick(after=1)
    assert (run.phase, run.status.reason) == (Phase.PROGRESSING, "AwaitingAutoPromotion")
    run.tick(after=59)
    assert run.phase == Phase.PROGRESSING
    run.tick(after=1)
    assert (run.phase, run.status.reason) == (Phase.PROMOTING, "AutoPromotion")
    run.tick(after=1)
    assert run.phase == Phase.HEALTHY


def test_switch_never_happens_before_the_new_pods_are_ready() -> None:
    run = bg_run()
    run.tick(pods_ready=False)
    run.world.command("promote", "early")
    decision = run.tick(after=1, pods_ready=False)
    assert run.phase == Phase.PROMOTING and decision.selectors["fraud"] == pins("1")
    decision = run.tick(after=1)
    assert decision.selectors["fraud"] == pins("1")  # applied now, observed Ready on the next tick
    decision = run.tick(after=1)
    assert decision.selectors["fraud"] == pins("2")


def test_abort_after_the_switch_restores_the_old_selector_at_once() -> None:
    run = bg_run(scaleDownDelaySeconds=300)
    run.tick()
    run.tick(after=1)
    run.world.command("promote", "p1")
    run.tick(after=1)
    assert run.world.selectors.get("fraud") == pins("2")
    run.world.command("abort", "a1")
    decision = run.tick(after=1)
    assert (run.phase, run.status.reason) == (Phase.ROLLED_BACK, "Aborted")
    assert decision.selectors["fraud"] == pins("1") and decision.selectors["fraud-preview"] == pins("1")
    assert {v: d.replicas for v, d in run.world.deployments.items()} == {"1": 4, "2": 0}


def test_failing_analysis_on_the_preview_rolls_back() -> None:
    analysis = {"interval": "15s", "failureLimit": 1, "metrics": [{"name": "error-rate", "type": "errorRate",
                                                                   "max": 0.01}]}
    run = run_from_healthy(make_spec(version="2", analysis=analysis,
                                     blue_green={"previewService": "p", "autoPromotionSeconds": 600}))
    run.tick()
    run.tick(after=1)
    run.tick_analysis(Verdict.FAIL)
    assert (run.phase, run.status.reason) == (Phase.ROLLED_BACK, "AnalysisFailed")
    assert run.world.selectors.get("fraud") == pins("1")
