"""Parse one pod's `/metrics` text into the cumulative counters of each (model, version) it serves.

The operator scrapes a pod and calls `parse_pod_metrics`; rates come from subtracting two scrapes.
Only the standard library and prometheus_client's text parser are imported.

>>> text = '''
... modelserver_requests_total{model="iris",version="2",protocol="v2",code="200"} 7
... modelserver_requests_total{model="iris",version="2",protocol="v2",code="500"} 1
... modelserver_requests_total{model="iris",version="2",protocol="v2",code="400"} 2
... modelserver_requests_total{model="iris",version="2",protocol="v2",code="499"} 3
... '''
>>> m = parse_pod_metrics(text).model("iris", "2")
>>> (m.requests, m.errors, m.client_errors, m.client_disconnects)
(10.0, 1.0, 2.0, 3.0)
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from modelserver import contract as c

Buckets = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class OutcomeTotals:
    """Cumulative numeric outcomes of one declared name: how many, their sum and the sum of their squares."""

    count: float = 0.0
    sum: float = 0.0
    squares: float = 0.0


@dataclass(frozen=True)
class ModelMetrics:
    """Cumulative values for one (model, version) in one pod since the server started."""

    model: str
    version: str
    requests: float = 0.0  # every answered request of an infer/predict endpoint (not disconnects)
    errors: float = 0.0  # 5xx responses: the model's failures
    client_errors: float = 0.0  # 4xx responses: clients' mistakes, not counted as errors
    client_disconnects: float = 0.0  # code 499: clients gone before their request was read; no answer
    requests_by_code: MappingProxyType[str, float] = field(default_factory=lambda: MappingProxyType({}))
    latency_buckets: Buckets = ()  # ((le, cumulative count), ...) sorted, +inf last
    latency_sum: float = 0.0
    latency_count: float = 0.0
    predicted_classes: MappingProxyType[str, float] = field(default_factory=lambda: MappingProxyType({}))
    value_buckets: Buckets = ()
    rows_predicted: float = 0.0
    feedback_correct: float = 0.0
    feedback_incorrect: float = 0.0
    feedback_scored: float = 0.0
    feedback_unknown_ids: float = 0.0
    feedback_expired_ids: float = 0.0
    feedback_invalid: float = 0.0
    absolute_error_sum: float = 0.0
    absolute_error_count: float = 0.0
    # Numeric outcomes posted with feedback, by declared name (modelserver_outcome, _squares).
    outcomes: MappingProxyType[str, OutcomeTotals] = field(default_factory=lambda: MappingProxyType({}))
    digest: str | None = None
    format: str | None = None
    ready: bool = False
    load_failures: float = 0.0
    # Mirroring, on a stable pod: copies for the shadow candidate by outcome, and the configuration in force.
    mirror_sent: float = 0.0
    mirror_failed: float = 0.0
    mirror_dropped: float = 0.0
    mirror_percent: float = 0.0
    mirror_pending: float = 0.0  # queued or being sent: not yet in any outcome
    mirror_target_version: str = ""  # "" while off
    # On a shadow candidate: {(primary class, candidate class): rows} and refused copies by reason.
    shadow_pairs: MappingProxyType[tuple[str, str], float] = field(default_factory=lambda: MappingProxyType({}))
    shadow_refused: MappingProxyType[str, float] = field(default_factory=lambda: MappingProxyType({}))
    # On a shadow candidate: labelled rows of mirrored copies by ShadowLabelOutcome value.
    shadow_labelled: MappingProxyType[str, float] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class PodMetrics:
    models: MappingProxyType[tuple[str, str], ModelMetrics]
    unknown_model_requests: float = 0.0

    def model(self, name: str, version: str) -> ModelMetrics | None:
        return self.models.get((name, version))


_MIRROR_FIELDS = {outcome.value: f"mirror_{outcome.value}" for outcome in c.MirrorOutcome}
_FEEDBACK_FIELDS = {
    c.FeedbackOutcome.CORRECT.value: "feedback_correct",
    c.FeedbackOutcome.INCORRECT.value: "feedback_incorrect",
    c.FeedbackOutcome.SCORED.value: "feedback_scored",
    c.FeedbackOutcome.UNKNOWN_ID.value: "feedback_unknown_ids",
    c.FeedbackOutcome.EXPIRED_ID.value: "feedback_expired_ids",
    c.FeedbackOutcome.INVALID.value: "feedback_invalid",
}

_OUTCOME_FIELDS = {c.OUTCOME_VALUES.name + "_count": "count", c.OUTCOME_VALUES.name + "_sum": "sum",
                   c.OUTCOME_SQUARES.sample: "squares"}


def _add_request(acc: dict[str, Any], labels: dict[str, str], value: float) -> None:
    code = labels.get(c.CODE, "")
    acc["requests_by_code"][code] += value
    if code == str(c.CLIENT_CLOSED_REQUEST):
        # Kept out of `requests`, the error rate's denominator, as well: nothing was answered.
        acc["client_disconnects"] += value
        return
    acc["requests"] += value
    if code.isdigit() and c.is_model_error(int(code)):
        acc["errors"] += value
    elif code.isdigit() and c.is_client_error(int(code)):
        acc["client_errors"] += value


def _add_sample(acc: dict[str, Any], name: str, labels: dict[str, str], value: float) -> None:
    if name == c.REQUESTS.sample:
        _add_request(acc, labels, value)
    elif name == c.REQUEST_DURATION.name + "_bucket":
        acc["latency"][_le(labels)] += value
    elif name == c.REQUEST_DURATION.name + "_sum":
        acc["latency_sum"] += value
    elif name == c.REQUEST_DURATION.name + "_count":
        acc["latency_count"] += value
    elif name == c.PREDICTIONS.sample:
        acc["predicted_classes"][labels.get(c.CLASS, "")] += value
    elif name == c.PREDICTION_VALUE.name + "_bucket":
        acc["values"][_le(labels)] += value
    elif name == c.ROWS_PREDICTED.sample:
        acc["rows_predicted"] += value
    elif name == c.FEEDBACK.sample and labels.get(c.OUTCOME) in _FEEDBACK_FIELDS:
        acc[_FEEDBACK_FIELDS[labels[c.OUTCOME]]] += value
    elif name == c.FEEDBACK_ABSOLUTE_ERROR.name + "_sum":
        acc["absolute_error_sum"] += value
    elif name == c.FEEDBACK_ABSOLUTE_ERROR.name + "_count":
        acc["absolute_error_count"] += value
    elif name in _OUTCOME_FIELDS and c.OUTCOME in labels:
        acc["outcomes"][labels[c.OUTCOME]][_OUTCOME_FIELDS[name]] += value
    elif name == c.MODEL_INFO.name and value > 0:
        acc["digest"] = labels.get(c.DIGEST) or None
        acc["format"] = labels.get(c.FORMAT) or None
    elif name == c.MODEL_READY.name:
        acc["ready"] = value > 0
    elif name == c.LOAD_FAILURES.sample:
        acc["load_failures"] += value
    else:
        _add_mirror_sample(acc, name, labels, value)


def _add_mirror_sample(acc: dict[str, Any], name: str, labels: dict[str, str], value: float) -> None:
    if name == c.MIRROR_REQUESTS.sample and labels.get(c.OUTCOME) in _MIRROR_FIELDS:
        acc[_MIRROR_FIELDS[labels[c.OUTCOME]]] += value
    elif name == c.MIRROR_PENDING.name:
        acc["mirror_pending"] = value
    elif name == c.MIRROR_PERCENT.name:
        acc["mirror_percent"] = value
        acc["mirror_target_version"] = labels.get(c.TARGET_VERSION, "")
    elif name == c.SHADOW_PAIRS.sample:
        acc["shadow_pairs"][(labels.get(c.PRIMARY_CLASS, ""), labels.get(c.CANDIDATE_CLASS, ""))] += value
    elif name == c.SHADOW_REFUSED.sample:
        acc["shadow_refused"][labels.get(c.REASON, "")] += value
    elif name == c.SHADOW_LABELLED_PAIRS.sample:
        acc["shadow_labelled"][labels.get(c.OUTCOME, "")] += value


def _le(labels: dict[str, str]) -> float:
    return math.inf if labels.get("le") in ("+Inf", "Inf", "inf") else float(labels.get("le", "nan"))


_MAPPINGS = ("requests_by_code", "latency", "predicted_classes", "values", "shadow_pairs", "shadow_refused",
             "shadow_labelled")


def _new_accumulator() -> dict[str, Any]:
    acc: dict[str, Any] = defaultdict(float)
    for key in _MAPPINGS:
        acc[key] = defaultdict(float)
    acc["outcomes"] = defaultdict(lambda: defaultdict(float))
    acc["digest"] = acc["format"] = None
    acc["mirror_target_version"] = ""
    acc["ready"] = False
    return acc


def _freeze(model: str, version: str, acc: dict[str, Any]) -> ModelMetrics:
    plain = {k: v for k, v in acc.items() if k not in _MAPPINGS and k != "outcomes"}
    return ModelMetrics(
        model=model, version=version,
        requests_by_code=MappingProxyType(dict(acc["requests_by_code"])),
        predicted_classes=MappingProxyType(dict(acc["predicted_classes"])),
        shadow_pairs=MappingProxyType(dict(acc["shadow_pairs"])),
        shadow_refused=MappingProxyType(dict(acc["shadow_refused"])),
        shadow_labelled=MappingProxyType(dict(acc["shadow_labelled"])),
        outcomes=MappingProxyType({name: OutcomeTotals(**totals) for name, totals in acc["outcomes"].items()}),
        latency_buckets=tuple(sorted(acc["latency"].items())),
        value_buckets=tuple(sorted(acc["values"].items())),
        **plain,
    )


def parse_pod_metrics(text: str) -> PodMetrics:
    """Read the contract's series from Prometheus text; other series are ignored.

    Raises ValueError when the text is not Prometheus exposition format (the caller records a failed
    scrape: missing data never counts as success).
    """
    per_model: dict[tuple[str, str], dict[str, Any]] = {}
    unknown = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == c.UNKNOWN_MODEL_REQUESTS.sample:
                unknown += sample.value
                continue
            if not sample.name.startswith("modelserver_") or c.MODEL not in sample.labels:
                continue
            key = (sample.labels[c.MODEL], sample.labels.get(c.VERSION, ""))
            acc = per_model.setdefault(key, _new_accumulator())
            _add_sample(acc, sample.name, sample.labels, float(sample.value))
    models = {key: _freeze(key[0], key[1], acc) for key, acc in per_model.items()}
    return PodMetrics(models=MappingProxyType(models), unknown_model_requests=unknown)


def parse_readiness(body: Any) -> tuple[c.ModelState, str] | None:
    """The load state and failure code of a readiness answer (c.READINESS_FIELDS); None if it has none.

    >>> parse_readiness({"ready": False, "state": "failed", "reason": "digest_mismatch"})
    (<ModelState.FAILED: 'failed'>, 'digest_mismatch')
    >>> parse_readiness({"ready": True}), parse_readiness("not json we know")
    (None, None)
    """
    if not isinstance(body, dict) or body.get("ready") is not False:
        return None
    try:
        state = c.ModelState(str(body.get("state")))
    except ValueError:
        return None
    reason = body.get("reason")
    return state, reason if isinstance(reason, str) else ""


@dataclass(frozen=True)
class DriftMetrics:
    """One (model, version)'s drift series in one pod: the reference's state, and per (feature, bin) the live
    inputs counted since the server started and the training rows of the reference."""

    state: str = ""  # a contract.DriftReferenceState value; "" when the pod exports none (another server)
    live: MappingProxyType[tuple[str, int], float] = field(default_factory=lambda: MappingProxyType({}))
    reference: MappingProxyType[tuple[str, int], float] = field(default_factory=lambda: MappingProxyType({}))


def parse_drift_metrics(text: str) -> dict[tuple[str, str], DriftMetrics]:
    """The drift series of a scrape by (model, version); ValueError on text that is not Prometheus format.

    >>> text = '''
    ... modelserver_drift_reference_state{model="m",version="1",state="loaded"} 1
    ... modelserver_drift_inputs_total{model="m",version="1",feature="f0",bin="0"} 3
    ... modelserver_drift_reference_inputs{model="m",version="1",feature="f0",bin="0"} 50
    ... '''
    >>> d = parse_drift_metrics(text)[("m", "1")]
    >>> d.state, dict(d.live), dict(d.reference)
    ('loaded', {('f0', 0): 3.0}, {('f0', 0): 50.0})
    """
    acc: dict[tuple[str, str], dict[str, Any]] = {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("modelserver_drift_"):
            continue
        for sample in family.samples:
            labels = sample.labels
            entry = acc.setdefault((labels.get(c.MODEL, ""), labels.get(c.VERSION, "")),
                                   {"state": "", "live": {}, "reference": {}})
            if sample.name == c.DRIFT_REFERENCE_STATE.name and sample.value > 0:
                entry["state"] = labels.get(c.STATE, "")
            elif sample.name in (c.DRIFT_INPUTS.sample, c.DRIFT_REFERENCE_INPUTS.name):
                key = "live" if sample.name == c.DRIFT_INPUTS.sample else "reference"
                entry[key][(labels.get(c.FEATURE, ""), int(labels.get(c.BIN, "-1")))] = float(sample.value)
    return {k: DriftMetrics(v["state"], MappingProxyType(v["live"]), MappingProxyType(v["reference"]))
            for k, v in acc.items()}
