"""The PromQL the `prometheus` source runs (pure): built-in templates over the model server's metrics,
the user's queries, placeholder rendering, and the answers turned into per-version counts.

Every query returns counts over the tick's window (increase() of counters and histogram buckets), so the
sequential tests read the same kind of numbers as with the pod scrape. Built-in selectors name the
version by the model server's own labels (`model`, `version`, from modelserver.contract) and the pod's
namespace by the `namespace` target label, which the usual kubernetes_sd relabelling and the Prometheus
Operator's PodMonitor both attach.

>>> q = builtin_queries("fraud")["requests"]
>>> render(q.template, version="2", namespace="ml", window_seconds=15.0)
'sum by (code) (increase(modelserver_requests_total{namespace="ml",model="fraud",version="2"}[15000ms]))'
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelrollout.analysis.config import AnalysisConfig, MetricType
from modelrollout.analysis.sourceconfig import CountQuery
from modelrollout.core.servermetrics import ServerMetrics
from modelserver import contract as c

NAMESPACE_LABEL = "namespace"  # the target label holding the pod's namespace


class Shape(enum.Enum):
    """What one query's instant vector holds."""

    COUNT = "one sample: a count"
    BY_CODE = "one sample per HTTP status code"
    BY_LE = "one sample per bucket bound (le)"
    BY_OUTCOME = "one sample per feedback outcome"
    BY_CLASS = "one sample per predicted class"


@dataclass(frozen=True)
class Query:
    """One PromQL template; `count` names the VersionCounts field a COUNT shape fills, `label` the
    grouping label of a BY_CODE shape when it is not the contract's `code`."""

    name: str
    shape: Shape
    template: str
    count: str = ""
    label: str = ""


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _increase(sample: str, model: str, by: str = "") -> str:
    # No pod or workload label in the selector, on purpose: a version's feedback series are exposed by the
    # pods of both versions (a label counts where it lands, for the version its token names), so the sum
    # must take every series of that `version`. increase() handles each series' counter resets.
    selector = (f'{NAMESPACE_LABEL}="{{{{namespace}}}}",{c.MODEL}={_quote(model)},'
                f'{c.VERSION}="{{{{version}}}}"')
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (increase({sample}{{{selector}}}[{{{{interval}}}}]))"


def builtin_queries(model: str) -> dict[str, Query]:
    """The model server's counts of one model, by the metric names of the shared contract."""
    return {
        "requests": Query("requests", Shape.BY_CODE, _increase(c.REQUESTS.sample, model, c.CODE)),
        "latencyBuckets": Query("latencyBuckets", Shape.BY_LE,
                                _increase(c.REQUEST_DURATION.name + "_bucket", model, "le")),
        "feedback": Query("feedback", Shape.BY_OUTCOME, _increase(c.FEEDBACK.sample, model, c.OUTCOME)),
        "classes": Query("classes", Shape.BY_CLASS, _increase(c.PREDICTIONS.sample, model, c.CLASS)),
        "absErrorSum": Query("absErrorSum", Shape.COUNT,
                             _increase(c.FEEDBACK_ABSOLUTE_ERROR.name + "_sum", model), "abs_error_sum"),
        "absErrorCount": Query("absErrorCount", Shape.COUNT,
                               _increase(c.FEEDBACK_ABSOLUTE_ERROR.name + "_count", model), "abs_error_count"),
    }


_USER_COUNT_FIELDS = {
    CountQuery.REQUESTS: "requests", CountQuery.ERRORS: "errors",
    CountQuery.FEEDBACK_CORRECT: "feedback_correct", CountQuery.FEEDBACK_INCORRECT: "feedback_incorrect",
}


def _user(name: CountQuery, text: str) -> Query:
    if name is CountQuery.LATENCY_BUCKETS:
        return Query(name.value, Shape.BY_LE, text)
    return Query(name.value, Shape.COUNT, text, _USER_COUNT_FIELDS[name])


def queries_for(config: AnalysisConfig, model: str, server: ServerMetrics | None = None) -> list[Query]:
    """The queries one version needs each tick: its requests always, the rest by the metrics' types.

    A user query replaces the built-in one for the same counts; predictionShift and meanAbsoluteError
    are read from the model server's metrics only. Another server's names (`server`) give the built-in
    requests and latency queries (foreignpromql.py); the spec parser refused the other types for it.
    """
    user = dict(config.prometheus.queries) if config.prometheus else {}
    builtin = builtin_queries(model)
    if server is not None and not server.is_own_server:
        from modelrollout.sources.foreignpromql import server_queries  # it imports Query from here

        builtin.pop("latencyBuckets")
        builtin.update(server_queries(model, server))
    types = {m.type for m in config.metrics}
    chosen: list[Query] = []
    if CountQuery.REQUESTS in user:
        chosen += [_user(CountQuery.REQUESTS, user["requests"]), _user(CountQuery.ERRORS, user["errors"])]
    else:
        chosen += [builtin[name] for name in ("requests", "errors") if name in builtin]
    if MetricType.LATENCY in types:
        chosen.append(_user(CountQuery.LATENCY_BUCKETS, user["latencyBuckets"]) if "latencyBuckets" in user
                      else builtin["latencyBuckets"])
    if MetricType.ACCURACY in types:
        chosen += ([_user(CountQuery.FEEDBACK_CORRECT, user["feedbackCorrect"]),
                    _user(CountQuery.FEEDBACK_INCORRECT, user["feedbackIncorrect"])]
                   if "feedbackCorrect" in user else [builtin["feedback"]])
    if MetricType.PREDICTION_SHIFT in types:
        chosen.append(builtin["classes"])
    if MetricType.MEAN_ABSOLUTE_ERROR in types:
        chosen += [builtin["absErrorSum"], builtin["absErrorCount"]]
    return chosen


def render(template: str, *, version: str, namespace: str, window_seconds: float) -> str:
    """Fill the placeholders; the window in whole milliseconds, so consecutive ticks' windows meet exactly."""
    interval = f"{max(1, round(window_seconds * 1000))}ms"
    return (template.replace("{{version}}", version).replace("{{namespace}}", namespace)
            .replace("{{interval}}", interval))


def _value(sample: Mapping[str, Any]) -> float:
    value = float(sample["value"][1])
    if not math.isfinite(value):
        raise ValueError(f"the value {sample['value'][1]} is not a count")
    return max(0.0, value)  # increase() never goes below 0; a negative would be a broken query


def samples_of(answer: Any) -> list[Mapping[str, Any]]:
    """The instant vector of a /api/v1/query answer; ValueError says what is wrong with it."""
    if not isinstance(answer, Mapping) or answer.get("status") != "success":
        error = answer.get("error") if isinstance(answer, Mapping) else None
        raise ValueError(f"query failed: {error or 'no success status'}")
    data = answer.get("data") or {}
    if data.get("resultType") != "vector":
        raise ValueError(f"expected an instant vector, got {data.get('resultType')!r}")
    result = data.get("result")
    if not isinstance(result, list) or not result:
        raise ValueError("empty result: no series matched")
    return result


def counts_of(query: Query, samples: list[Mapping[str, Any]]) -> dict[str, Any]:
    """VersionCounts fields from one query's samples, e.g. {"requests": 40.0, "errors": 1.0}."""
    if query.shape is Shape.COUNT:
        if len(samples) != 1:
            raise ValueError(f"{len(samples)} series, expected one count")
        return {query.count: _value(samples[0])}
    label = query.label or {Shape.BY_CODE: c.CODE, Shape.BY_LE: "le", Shape.BY_OUTCOME: c.OUTCOME,
                             Shape.BY_CLASS: c.CLASS}[query.shape]
    by: dict[str, float] = {}
    for sample in samples:
        key = (sample.get("metric") or {}).get(label)
        if key is None:
            raise ValueError(f"a series without the {label} label, expected {query.shape.value}")
        by[key] = by.get(key, 0.0) + _value(sample)
    return _grouped(query.shape, by)


def requests_and_errors(by_code: Mapping[str, float]) -> dict[str, float]:
    """The server's rule (contract): 5xx are the model's errors; 499 (client gone) is no request at all.

    >>> requests_and_errors({"200": 8.0, "500": 1.0, "400": 1.0, "499": 3.0})
    {'requests': 10.0, 'errors': 1.0}
    """
    answered = {code: n for code, n in by_code.items() if code != str(c.CLIENT_CLOSED_REQUEST)}
    errors = sum(n for code, n in answered.items() if code.isdigit() and c.is_model_error(int(code)))
    return {"requests": sum(answered.values()), "errors": errors}


def _grouped(shape: Shape, by: dict[str, float]) -> dict[str, Any]:
    if shape is Shape.BY_CODE:
        return requests_and_errors(by)
    if shape is Shape.BY_LE:
        buckets = sorted((math.inf if le in ("+Inf", "Inf", "inf") else float(le), n) for le, n in by.items())
        return {"latency_buckets": tuple(buckets)}
    if shape is Shape.BY_OUTCOME:
        return {"feedback_correct": by.get(c.FeedbackOutcome.CORRECT.value, 0.0),
                "feedback_incorrect": by.get(c.FeedbackOutcome.INCORRECT.value, 0.0)}
    return {"class_counts": by}
