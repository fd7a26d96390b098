"""Prometheus collectors built from the contract, bound to the one model this server serves.

Children are bound once per label set so the hot path is a dict lookup and an increment. Each server
has its own registry, so several servers can live in one test process.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary, generate_latest

from modelserver import contract as c
from modelserver.drift import DriftCollector, DriftCounter

# `_created` series double the scrape size and the operator never reads them.
prometheus_client.disable_created_metrics()

_TYPES: dict[c.Kind, Any] = {
    c.Kind.COUNTER: Counter, c.Kind.GAUGE: Gauge, c.Kind.HISTOGRAM: Histogram, c.Kind.SUMMARY: Summary,
}


def _build(spec: c.MetricSpec, registry: CollectorRegistry) -> Any:
    kwargs: dict[str, Any] = {"registry": registry, "labelnames": spec.labels}
    if spec.kind is c.Kind.HISTOGRAM:
        kwargs["buckets"] = spec.buckets
    # prometheus_client appends "_total" to counters itself.
    return _TYPES[spec.kind](spec.name, spec.help, **kwargs)


class ServerMetrics:
    """The series of one (model, version). Nothing here takes a label value from a request."""

    def __init__(self, model: str, version: str) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        m = {spec.name: _build(spec, self.registry) for spec in c.ALL_METRICS}
        self._model, self._version = model, version
        self._requests = m[c.REQUESTS.name]
        self._latency = m[c.REQUEST_DURATION.name].labels(model, version)
        self._predictions = m[c.PREDICTIONS.name]
        self._values = m[c.PREDICTION_VALUE.name]
        self._confidence = m[c.PREDICTION_CONFIDENCE.name]
        self._rows = m[c.ROWS_PREDICTED.name].labels(model, version)
        self._feedback = m[c.FEEDBACK.name]
        self._abs_error = m[c.FEEDBACK_ABSOLUTE_ERROR.name]
        self._refused = m[c.FEEDBACK_REFUSED.name]
        self._outcome_values = m[c.OUTCOME_VALUES.name]
        self._outcome_squares = m[c.OUTCOME_SQUARES.name]
        self._info = m[c.MODEL_INFO.name]
        self._ready = m[c.MODEL_READY.name].labels(model, version)
        self._load_failures = m[c.LOAD_FAILURES.name]
        self._unknown = m[c.UNKNOWN_MODEL_REQUESTS.name]
        self._request_children: dict[tuple[str, int], Any] = {}
        self._class_children: dict[str, Any] = {}
        self._ready.set(0)
        self._mirror_config = m[c.MIRROR_CONFIG_LOADS.name]
        self._mirror_percent = m[c.MIRROR_PERCENT.name]
        self._shadow_refused = m[c.SHADOW_REFUSED.name]
        self._shadow_pairs = m[c.SHADOW_PAIRS.name]
        self._shadow_labelled = m[c.SHADOW_LABELLED_PAIRS.name]
        self._pair_children: dict[tuple[str, str], Any] = {}
        # Every outcome from the start: a version that never mirrored shows 0 copies, not missing data.
        self._mirror_children = {outcome: m[c.MIRROR_REQUESTS.name].labels(model, version, outcome.value)
                                 for outcome in c.MirrorOutcome}
        self.set_mirror(0.0, "")
        self._mirror_pending = m[c.MIRROR_PENDING.name].labels(model, version)
        self._drift_state = m[c.DRIFT_REFERENCE_STATE.name]
        self.set_drift_state(c.DriftReferenceState.LOADING)
        self._drift = DriftCollector(model, version)
        self.registry.register(self._drift)

    def observe_request(self, protocol: c.Protocol, code: int, seconds: float) -> None:
        self._count_request(protocol, code)
        self._latency.observe(seconds)

    def count_client_disconnect(self, protocol: c.Protocol) -> None:
        """No latency: nothing was answered, and an abandoned upload says nothing about the model."""
        self._count_request(protocol, c.CLIENT_CLOSED_REQUEST)

    def _count_request(self, protocol: c.Protocol, code: int) -> None:
        key = (protocol.value, code)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self._requests.labels(
                self._model, self._version, protocol.value, str(code))
        child.inc()

    def declare_classes(self, class_keys: Sequence[str]) -> None:
        """Create every class series at 0 so a class the model never predicts still shows as 0."""
        for key in class_keys:
            self._class_children[key] = self._predictions.labels(self._model, self._version, key)

    def declare_regressor(self) -> None:
        self._values_child = self._values.labels(self._model, self._version)

    def record_classes(self, class_keys: Sequence[str]) -> None:
        self._rows.inc(len(class_keys))
        if len(class_keys) == 1:
            self._class_children[class_keys[0]].inc()
            return
        keys, counts = np.unique(np.asarray(class_keys), return_counts=True)
        for key, count in zip(keys.tolist(), counts.tolist(), strict=True):
            self._class_children[key].inc(count)

    def record_values(self, values: np.ndarray) -> None:
        self._rows.inc(len(values))
        for value in values.ravel().tolist():
            self._values_child.observe(value)

    def record_confidence(self, proba: np.ndarray) -> None:
        child = self._confidence.labels(self._model, self._version)
        for value in proba.max(axis=1).tolist():
            child.observe(value)

    def record_feedback(self, outcome: c.FeedbackOutcome, count: int = 1, version: str | None = None) -> None:
        """`version`: the one a verified token names (bounded by the caller), else this pod's own."""
        self._feedback.labels(self._model, version or self._version, outcome.value).inc(count)

    def record_absolute_error(self, error: float, version: str | None = None) -> None:
        self._abs_error.labels(self._model, version or self._version).observe(error)

    def declare_outcomes(self, names: Sequence[str]) -> None:
        """This version's series of every declared outcome at 0: no outcome yet reads as 0, not missing data."""
        for name in names:
            self._outcome_values.labels(self._model, self._version, name)
            self._outcome_squares.labels(self._model, self._version, name)

    def record_outcome(self, name: str, value: float, version: str | None = None) -> None:
        """`name`: a declared one (the caller refused others); `version`: as for record_feedback."""
        labels = (self._model, version or self._version, name)
        self._outcome_values.labels(*labels).observe(value)
        self._outcome_squares.labels(*labels).inc(value * value)

    def count_refusal(self, reason: c.FeedbackRefusal, count: int = 1) -> None:
        self._refused.labels(self._model, self._version, reason.value).inc(count)

    def set_model_info(self, digest: str, fmt: str) -> None:
        self._info.labels(self._model, self._version, digest, fmt).set(1)

    def set_ready(self, ready: bool) -> None:
        self._ready.set(1 if ready else 0)

    def count_load_failure(self, reason: c.LoadFailure) -> None:
        self._load_failures.labels(self._model, self._version, reason.value).inc()

    def count_unknown_model(self) -> None:
        self._unknown.inc()

    def count_mirror(self, outcome: c.MirrorOutcome) -> None:
        self._mirror_children[outcome].inc()

    def count_mirror_config(self, outcome: c.MirrorConfigOutcome) -> None:
        self._mirror_config.labels(self._model, self._version, outcome.value).inc()

    def watch_mirror_pending(self, pending: Callable[[], float]) -> None:
        """Read at each scrape: nothing on the request path."""
        self._mirror_pending.set_function(pending)

    def set_mirror(self, percent: float, target_version: str) -> None:
        """The configuration in force, as the one series of the gauge (the previous candidate's is removed)."""
        self._mirror_percent.clear()
        self._mirror_percent.labels(self._model, self._version, target_version).set(percent)

    def record_shadow_pairs(self, pairs: Sequence[tuple[str, str]]) -> None:
        """(primary class, candidate class) per row; the caller checked both against the model's classes."""
        for pair, count in Tally(pairs).items():
            child = self._pair_children.get(pair)
            if child is None:
                child = self._pair_children[pair] = self._shadow_pairs.labels(self._model, self._version, *pair)
            child.inc(count)

    def record_shadow_labelled(self, outcomes: Sequence[c.ShadowLabelOutcome]) -> None:
        for outcome, count in Tally(outcomes).items():
            self._shadow_labelled.labels(self._model, self._version, outcome.value).inc(count)

    def count_shadow_refusal(self, reason: c.ShadowRefusal) -> None:
        self._shadow_refused.labels(self._model, self._version, reason.value).inc()

    def set_drift_state(self, state: c.DriftReferenceState) -> None:
        """The one series of the state gauge: which state the reference is in."""
        self._drift_state.clear()
        self._drift_state.labels(self._model, self._version, state.value).set(1)

    def count_drift(self, counter: DriftCounter) -> None:
        """From now on, export `counter`'s live counts and its reference."""
        self._drift.counter = counter

    def render(self) -> bytes:
        return generate_latest(self.registry)
