"""The drift watch in the decision core: a look's evidence becomes status.drift, the Drifted condition and an
Event when the condition changes; missing data is never "no drift"."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from modelrollout.core import decide
from modelrollout.core.driftwatch import needs_drift_look
from modelrollout.core.observations import DriftObservation, VersionDrift
from modelrollout.core.phases import Phase
from modelrollout.core.status import RolloutStatus

from .builders import at, healthy_status, make_obs, make_spec, ready, record

pytestmark = pytest.mark.unit
BINS = 10
REFERENCE = (("f0", (100,) * BINS), ("f1", (100,) * BINS), ("f2", (100,) * BINS))
WATCH = {"drift": {"window": "10s", "interval": "2s"}}


def spec(**drift: Any) -> Any:
    return make_spec(version="1", monitoring={"drift": {"window": "10s", "interval": "2s", **drift}})


def live(n: int, shifted: str | None = None, seed: int = 1) -> dict[str, tuple[float, ...]]:
    """n inputs per feature, drawn uniformly over the reference's equal bins; `shifted` piles into the top bins."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, _ in REFERENCE:
        p = np.full(BINS, 1 / BINS) if name != shifted else np.r_[np.full(5, 0.02), np.full(5, 0.18)]
        out[name] = tuple(float(c) for c in rng.multinomial(n, p))
    return out


def look(*versions: VersionDrift) -> DriftObservation:
    return DriftObservation(versions)


def loaded(version: str, counts: dict[str, tuple[float, ...]], seconds: float = 10.0) -> VersionDrift:
    return VersionDrift(version, state="loaded", reference=REFERENCE, live=counts, window_seconds=seconds)


def step(status: RolloutStatus, observation: DriftObservation | None, now: float, **drift: Any) -> Any:
    obs = replace(make_obs({"1": ready(4)}), drift=observation)
    return decide(spec(**drift), status, obs, at(now))


def condition(status: RolloutStatus) -> tuple[str, str, str]:
    found = next(c for c in status.conditions if c.type == "Drifted")
    return found.status, found.reason, found.message


def test_inputs_like_the_reference_give_no_drift_and_the_next_look_in_one_interval() -> None:
    decision = step(healthy_status("1"), look(loaded("1", live(3000))), 0)
    st = decision.status
    assert condition(st)[0] == "False" and st.drift is not None
    assert st.drift.versions[0]["state"] == "NoDrift" and st.drift.drifted_since is None
    assert st.drift.next_look_at == at(2) and decision.next_tick_at <= at(2)
    assert [c.type for c in st.conditions] == ["Ready", "Progressing", "Paused", "Drifted"]
    assert not needs_drift_look(spec(), st, at(1)) and needs_drift_look(spec(), st, at(2))


def test_a_shifted_feature_sets_drifted_naming_it_with_its_score_and_a_warning_event() -> None:
    first = step(healthy_status("1"), look(loaded("1", live(3000))), 0).status
    decision = step(first, look(loaded("1", live(3000, shifted="f1"))), 2)
    status, reason, message = condition(decision.status)
    assert (status, reason) == ("True", "InputDrift")
    assert "f1: PSI" in message and "f0" not in message and "f2" not in message
    assert [(e.type, e.reason) for e in decision.events] == [("Warning", "DriftDetected")]
    assert decision.status.drift is not None and decision.status.drift.drifted_since == at(2)
    drifted = [f["name"] for f in decision.status.drift.versions[0]["features"] if f["drifted"]]
    assert drifted == ["f1"]
    # Still drifted: no new Event, the same transition time and drifted_since.
    again = step(decision.status, look(loaded("1", live(3000, shifted="f1", seed=2))), 4)
    assert again.events == () and again.status.drift is not None and again.status.drift.drifted_since == at(2)
    cleared = step(again.status, look(loaded("1", live(3000, seed=3))), 6)
    assert condition(cleared.status)[0] == "False"
    assert [(e.type, e.reason) for e in cleared.events] == [("Normal", "DriftCleared")]
    assert cleared.status.drift is not None and cleared.status.drift.drifted_since is None


@pytest.mark.parametrize(("seen", "state", "words"), [
    (loaded("1", live(50)), "NotJudged", "not judged: 50 live inputs"),
    (VersionDrift("1", problem="pod fraud-1 could not be read (TimeoutError)"), "NotJudged", "could not be read"),
    (VersionDrift("1", state="missing"), "NotAvailable", "reference missing"),
    (VersionDrift("1", state="digest_mismatch"), "NotAvailable", "reference digest_mismatch"),
])
def test_missing_or_thin_data_is_unknown_never_no_drift(seen: VersionDrift, state: str, words: str) -> None:
    decision = step(healthy_status("1"), look(seen), 0)
    status, reason, message = condition(decision.status)
    assert (status, reason) == ("Unknown", state) and words in message
    assert decision.status.drift is not None and decision.status.drift.versions[0]["state"] == state


def test_the_versions_accuracy_on_the_windows_labels_is_recorded() -> None:
    seen = replace(loaded("1", live(3000)), labels_correct=270.0, labels_incorrect=30.0)
    entry = step(healthy_status("1"), look(seen), 0).status.drift.versions[0]  # type: ignore[union-attr]
    assert (entry["labels"], entry["accuracy"]) == (300, 0.9)
    plain = step(healthy_status("1"), look(loaded("1", live(3000))), 0).status.drift.versions[0]  # type: ignore[union-attr]
    assert "labels" not in plain and "accuracy" not in plain


def test_only_the_listed_features_are_judged() -> None:
    decision = step(healthy_status("1"), look(loaded("1", live(3000, shifted="f1"))), 0, features=["f0", "f2"])
    assert condition(decision.status)[0] == "False"
    assert decision.status.drift is not None
    assert [f["name"] for f in decision.status.drift.versions[0]["features"]] == ["f0", "f2"]


def test_during_a_rollout_both_versions_are_watched_and_either_drifting_sets_the_condition() -> None:
    st = replace(healthy_status("1"), phase=Phase.PROGRESSING, canary_model=record("2"), current_step_index=0,
                 step_started_at=at(-1))
    spec2 = make_spec(version="2", monitoring=WATCH)
    obs = replace(make_obs({"1": ready(3), "2": ready(1)}),
                  drift=look(loaded("1", live(3000)), loaded("2", live(3000, shifted="f2"))))
    decision = decide(spec2, st, obs, at(0))
    status, _, message = condition(decision.status)
    assert status == "True" and message.startswith("version 2 drifted: f2: PSI")
    assert decision.status.drift is not None
    assert [v["version"] for v in decision.status.drift.versions] == ["1", "2"]


def test_turning_the_watch_off_removes_the_condition_and_status() -> None:
    st = step(healthy_status("1"), look(loaded("1", live(3000, shifted="f1"))), 0).status
    off = decide(make_spec(version="1", monitoring={"drift": {"enabled": False}}), st, make_obs({"1": ready(4)}),
                 at(2))
    assert off.status.drift is None and all(c.type != "Drifted" for c in off.status.conditions)
    assert not needs_drift_look(make_spec(version="1", monitoring={"drift": {"enabled": False}}), off.status, at(9))


def test_no_look_keeps_the_last_verdict_and_wakes_for_the_next() -> None:
    st = step(healthy_status("1"), look(loaded("1", live(3000, shifted="f1"))), 0).status
    decision = step(st, None, 1)
    assert condition(decision.status)[0] == "True" and decision.events == ()
    assert decision.next_tick_at == at(2)
