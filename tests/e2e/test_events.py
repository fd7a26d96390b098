"""Events on a ModelRollout through the events.k8s.io/v1 API of a real apiserver: a tick replayed
after a restart shows its events once, a repeated event is one object with a series, and both read
back through the core/v1 view that `kubectl describe` uses."""

from __future__ import annotations

from typing import Any

import kubernetes
import pytest

from modelrollout.core.phases import Event
from modelrollout.kubeevents import EventRecorder, tick_event_names
from tests.e2e.test_crd_validation import GROUP, PLURAL, VERSION, make_rollout

pytestmark = pytest.mark.e2e


@pytest.fixture
def rollout(cluster: Any, apply_crds: None, namespace: str) -> dict[str, Any]:
    custom = kubernetes.client.CustomObjectsApi(cluster.api)
    created: dict[str, Any] = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                                     make_rollout("events"))
    return created


def core_events(cluster: Any, namespace: str) -> list[Any]:
    core = kubernetes.client.CoreV1Api(cluster.api)
    return list(core.list_namespaced_event(namespace, field_selector="involvedObject.name=events").items)


def test_a_replayed_tick_shows_its_events_once(cluster: Any, rollout: dict[str, Any], namespace: str) -> None:
    events = [Event("Normal", "StepCompleted", "step 2/5 completed"), Event("Normal", "StepStarted", "weight 50")]
    stored = {"phase": "Progressing", "currentStepIndex": 1}
    names = tick_event_names(rollout, stored, events)
    for recorder in (EventRecorder(cluster.api), EventRecorder(cluster.api)):  # before and after a restart
        for event, name in zip(events, names, strict=True):
            recorder.post(rollout, event, name)
    posted = {(e.reason, e.message) for e in events}
    # Only ours: when an earlier test started the session's operator, it reconciles this rollout too.
    seen = [e for e in core_events(cluster, namespace) if (e.reason, e.message) in posted]
    assert sorted((e.reason, e.message) for e in seen) == [("StepCompleted", "step 2/5 completed"),
                                                           ("StepStarted", "weight 50")]
    assert {e.involved_object.uid for e in seen} == {rollout["metadata"]["uid"]}
    described = cluster.kubectl("describe", "modelrollout", "events", "-n", namespace)
    assert "StepCompleted" in described and "step 2/5 completed" in described, described


def test_a_repeated_event_is_one_object_with_a_series(cluster: Any, rollout: dict[str, Any], namespace: str) -> None:
    recorder = EventRecorder(cluster.api)
    for _ in range(3):
        recorder.post(rollout, Event("Warning", "ApiError", "services is forbidden"))
    recorder.post(rollout, Event("Warning", "ApiError", "deployments is forbidden"))
    ours = {"services is forbidden", "deployments is forbidden"}  # an operator may post its own too
    seen = {e.message: e for e in core_events(cluster, namespace) if e.message in ours}
    assert set(seen) == {"services is forbidden", "deployments is forbidden"}
    assert seen["services is forbidden"].series.count == 3
    assert seen["deployments is forbidden"].series is None
    described = cluster.kubectl("describe", "modelrollout", "events", "-n", namespace)
    assert "(x3 over" in described, described
