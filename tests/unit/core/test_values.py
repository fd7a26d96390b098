"""Spec parsing, status round trips, durations, and the replica rounding rule."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from modelrollout.analysis.config import TimeoutAction
from modelrollout.core import RolloutSpec, RolloutStatus, merge_patch, replicas_for_weight
from modelrollout.core.phases import Phase
from modelrollout.core.spec import BlueGreenStrategy, CanaryStrategy
from modelrollout.core.status import AnalysisStatus, Condition, HistoryEntry, MetricStatus, ModelRecord
from modelrollout.durations import parse_duration

from .builders import spec_dict

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("total", "weight", "expected"),
    [
        (4, 0, (0, 4)), (4, 10, (1, 3)), (4, 25, (1, 3)), (4, 50, (2, 2)), (4, 60, (2, 2)), (4, 75, (3, 1)),
        (4, 99, (3, 1)), (4, 100, (4, 0)), (10, 25, (3, 7)), (10, 5, (1, 9)), (10, 95, (9, 1)),
        (1, 50, (1, 1)), (1, 100, (1, 0)), (2, 50, (1, 1)), (3, 50, (2, 1)), (5, 30, (2, 3)),
    ],
)
def test_replicas_for_weight(total: int, weight: int, expected: tuple[int, int]) -> None:
    assert replicas_for_weight(total, weight) == expected


@pytest.mark.parametrize("total", range(1, 21))
def test_rounding_guards_hold_for_every_weight(total: int) -> None:
    for weight in range(101):
        canary, stable = replicas_for_weight(total, weight)
        assert (canary > 0) == (weight > 0) and (stable > 0) == (weight < 100)
        assert canary + stable == max(total, 2 if 0 < weight < 100 else total)
        if total >= 2:  # nearest pod, unless a guard moved it to the one pod it must keep
            assert abs(canary - total * weight / 100) <= 0.5 or canary in (1, total - 1)


@pytest.mark.parametrize(("text", "seconds"), [("500ms", 0.5), ("15s", 15), ("2m", 120), ("1h30m", 5400),
                                               ("1.5s", 1.5), ("1m0.5s", 60.5)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text, "f") == seconds


@pytest.mark.parametrize("text", ["", "15", "15 s", "1d", "-1s", "s", 15])
def test_bad_durations_name_the_field(text: Any) -> None:
    with pytest.raises(ValueError, match=r"^spec\.analysis\.interval: "):
        parse_duration(text, "spec.analysis.interval")


def test_the_agreed_example_parses() -> None:
    spec = RolloutSpec.from_dict(spec_dict(version="2"))
    assert isinstance(spec.strategy, CanaryStrategy)
    assert [(s.set_weight, s.is_pause, s.pause_seconds) for s in spec.strategy.steps] == [
        (25, False, None), (None, True, 120.0), (50, False, None), (None, True, None), (100, False, None)]
    assert spec.analysis is not None and spec.analysis.interval_seconds == 15
    assert [m.name for m in spec.analysis.metrics] == ["error-rate", "error-vs-stable"]
    assert (spec.analysis.timeout.after_seconds, spec.analysis.timeout.action) == (600.0, TimeoutAction.PAUSE)
    assert (spec.analysis.min_samples, spec.analysis.failure_limit, spec.analysis.inconclusive_limit) == (200, 2, 3)
    bg = RolloutSpec.from_dict(spec_dict(blue_green={"previewService": "p", "autoPromotionSeconds": 60}))
    assert bg.strategy == BlueGreenStrategy(preview_service="p", auto_promotion_seconds=60.0,
                                            scale_down_delay_seconds=30.0)


def _with(path: str, value: Any) -> dict[str, Any]:
    spec = spec_dict()
    *parents, last = path.split(".")
    target = spec
    for key in parents:
        target = target[key]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return spec


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (_with("model", KeyError), "spec.model"),
        (_with("model.version", "v 2"), "spec.model.version"),
        (_with("model.digest", "sha256:abc"), "spec.model.digest"),
        (_with("replicas", 0), "spec.replicas"),
        (_with("strategy", {}), "spec.strategy"),
        (_with("strategy", {"canary": {"steps": [{"setWeight": 50}, {"setWeight": 20}]}}),
         "spec.strategy.canary.steps"),
        (_with("strategy", {"canary": {"steps": [{"setWeight": 100}, {"pause": {}}]}}), "spec.strategy.canary.steps"),
        (_with("strategy", {"canary": {"steps": [{"setWeight": 101}]}}), r"spec.strategy.canary.steps\[0\].setWeight"),
        (_with("strategy", {"canary": {"steps": [{"pause": {"duration": "soon"}}]}}),
         r"spec.strategy.canary.steps\[0\].pause.duration"),
        (_with("analysis.interval", "15"), "spec.analysis.interval"),
        (_with("analysis.interval", 20), "spec.analysis.interval"),
        (_with("analysis.minExposure", 20), "spec.analysis.minExposure"),
        (_with("analysis.timeout", {"after": 20}), "spec.analysis.timeout.after"),
        (_with("analysis.minSamples", 2.5), "spec.analysis.minSamples"),
        (_with("analysis.metrics", [{"name": "a", "type": "errorRate", "min": 0.5}]),
         r"spec.analysis.metrics\[0\].min"),
        (_with("analysis.minSamples", 0), "spec.analysis.minSamples"),
        (_with("analysis.failureLimit", 0), "spec.analysis.failureLimit"),
        (_with("analysis.timeout", {"after": "1m", "action": "Shrug"}), "spec.analysis.timeout.action"),
        (_with("analysis.metrics", [{"name": "a", "type": "errorRate", "max": 0.1},
                                     {"name": "a", "type": "errorRate", "max": 0.2}]), "spec.analysis.metrics"),
        (_with("strategy", {"blueGreen": {"previewService": "fraud"}}), "spec.strategy.blueGreen.previewService"),
    ],
)
def test_invalid_specs_name_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}: "):
        RolloutSpec.from_dict(spec)


def full_status() -> RolloutStatus:
    moment = datetime(2026, 1, 1, 12, 0, 0, 250000, tzinfo=UTC)
    return RolloutStatus(
        phase=Phase.PROGRESSING, reason="Measuring", message="m", stable_model=ModelRecord("1", "u1"),
        canary_model=ModelRecord("2", "u2", "sha256:" + "0" * 64, "skops"), current_step_index=2,
        step_started_at=moment, desired_weight=50, effective_weight=48.7, rejected_version="0",
        last_command_id="c", scale_down_at=moment, observed_generation=3,
        conditions=[Condition("Ready", "False", "Measuring", "m", "2026-01-01T12:00:00Z", 3)],
        analysis=AnalysisStatus(ticks=4, consecutive_failures=1, consecutive_inconclusive=2, last_verdict="Fail",
                                last_tick_at=moment, next_tick_at=moment, started_at=moment,
                                sample_ratio_warning="share 10% vs 25%",
                                results=[MetricStatus("e", "Fail", "m", 0.05, 0.01, 0.04, [0.01, 0.07], 0.01,
                                                      50.0, 800, 2400)],
                                engine_state={"e": {"s": [1, 2]}}),
        history=[HistoryEntry("1", "Deployed", "FirstVersion", "2026-01-01T00:00:00Z", ModelRecord("1", "u1"))],
    )


def test_status_round_trips_through_json() -> None:
    status = full_status()
    stored = json.loads(json.dumps(status.to_dict()))
    assert RolloutStatus.from_dict(stored) == status
    assert (stored["stableVersion"], stored["canaryVersion"]) == ("1", "2")
    assert stored["stepStartedAt"] == "2026-01-01T12:00:00.250000Z"


def test_status_keys_are_exactly_what_the_crd_declares() -> None:
    from .test_docs import crd_schema

    declared = crd_schema()["properties"]["status"]["properties"]
    written = full_status().to_dict()
    assert set(written) <= set(declared)
    assert set(written["analysis"]) <= set(declared["analysis"]["properties"])
    assert set(written["analysis"]["results"][0]) <= set(declared["analysis"]["properties"]["results"]["items"]
                                                         ["properties"])
    assert set(written["history"][0]) <= set(declared["history"]["items"]["properties"])
    assert set(written["conditions"][0]) <= set(declared["conditions"]["items"]["properties"])


def test_merge_patch_clears_what_the_new_status_dropped() -> None:
    before = full_status().to_dict()
    after = RolloutStatus(phase=Phase.HEALTHY, stable_model=ModelRecord("2", "u2")).to_dict()
    patch = merge_patch(before, after)
    assert patch["canaryVersion"] is None and patch["canaryModel"] is None and patch["phase"] == "Healthy"
    assert patch["analysis"]["engineState"] == {"e": None}
