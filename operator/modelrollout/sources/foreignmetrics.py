"""Counts of one pod of another model server (MLServer, KServe, Triton, or explicit names), read from
its /metrics text by the names of `spec.serving.metrics` (pure).

The result is the same cumulative ModelMetrics the contract parser gives for this project's server, so
the pod scrape's baselines, resets and increments apply unchanged. Only what the analysis of a foreign
server may read is filled in: requests, errors and the latency histogram.

>>> from modelrollout.core.servermetrics import ServerMetrics
>>> text = '''# TYPE model_infer_request_success counter
... model_infer_request_success_total{model="iris",version="None"} 7.0
... model_infer_request_success_total{model="iris",version="2"} 1.0
... # TYPE model_infer_request_failure counter
... model_infer_request_failure_total{model="iris",version="None"} 2.0
... '''
>>> m = pod_metrics(text, ServerMetrics.from_spec({"preset": "mlserver"}), "iris", "2")
>>> m.requests, m.errors
(10.0, 2.0)
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from modelrollout.core.servermetrics import ServerMetrics
from modelrollout.sources.promql import requests_and_errors
from modelserver.contract_parse import ModelMetrics


def _samples(text: str) -> Iterator[Sample]:
    for family in text_string_to_metric_families(text):
        yield from family.samples


def _total(samples: list[Sample], name: str | None, labels: Mapping[str, str]) -> tuple[float, bool]:
    """Sum of the samples named `name` whose labels equal `labels`; found tells whether any matched."""
    chosen = [s.value for s in samples
              if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    return sum(chosen), bool(chosen)


def _matches(sample: Sample, match: Mapping[str, str]) -> bool:
    return all(re.fullmatch(pattern, sample.labels.get(label, "")) for label, pattern in match.items())


def _latency(samples: list[Sample], m: ServerMetrics) -> tuple[tuple[tuple[float, float], ...], float, float]:
    """The histogram's buckets (summed over its matching series), sum and count."""
    if m.latency_histogram is None:
        return (), 0.0, 0.0
    buckets: dict[float, float] = {}
    total = count = 0.0
    for s in samples:
        if not _matches(s, m.latency_match):
            continue
        if s.name == m.latency_histogram + "_bucket":
            le = s.labels.get("le", "+Inf")
            bound = math.inf if le in ("+Inf", "Inf", "inf") else float(le)
            buckets[bound] = buckets.get(bound, 0.0) + s.value
        elif s.name == m.latency_histogram + "_sum":
            total += s.value
        elif s.name == m.latency_histogram + "_count":
            count += s.value
    return tuple(sorted(buckets.items())), total, count


def pod_metrics(text: str, m: ServerMetrics, model: str, version: str) -> ModelMetrics | None:
    """Cumulative counts of `model` in one pod; None when its request counter has no series yet.

    Raises ValueError on text that is not in the Prometheus text format.
    """
    samples = list(_samples(text))
    own = {m.model_label: model} if m.model_label else {}
    if m.success_counter is not None:
        ok, found = _total(samples, m.success_counter, own)
        failed, found_failed = _total(samples, m.failure_counter, own)
        if not (found and found_failed):
            return None  # the server creates both at once: one alone is a wrong name, not zero errors
        requests, errors = ok + failed, failed
    elif m.error_code_label is not None:
        by_code: dict[str, float] = {}
        for s in samples:
            if s.name == m.request_counter and all(s.labels.get(k) == v for k, v in own.items()):
                code = s.labels.get(m.error_code_label, "")
                by_code[code] = by_code.get(code, 0.0) + s.value
        if not by_code:
            return None
        counted = requests_and_errors(by_code)
        requests, errors = counted["requests"], counted["errors"]
    else:
        requests, found = _total(samples, m.request_counter, own)
        if not found:
            return None
        errors = 0.0  # no error count: check_analysis_fits refuses errorRate with such a mapping
    buckets, latency_sum, latency_count = _latency(samples, m)
    return ModelMetrics(model, version, requests=requests, errors=errors, latency_buckets=buckets,
                        latency_sum=latency_sum, latency_count=latency_count, ready=True)
