"""`spec.serving.metrics`: which model server's metrics the analysis reads, as a preset or explicit names.

The operator judges a version by per-tick counts: requests, errors, latency bucket counts. This project's
model server (`preset: modelserver`, the default) writes them under the names of modelserver.contract,
and more (feedback, predicted classes) that only it has. Other servers count the same things under their
own names; a preset names them, explicit fields override a preset's, group by group:

* requests: ``requestCounter`` (all requests) with ``errorCodeLabel`` (the label with the HTTP status;
  5xx are errors), or ``successCounter`` + ``failureCounter`` (requests = both, errors = failures), or
  ``requestCounter`` alone (no error count: errorRate is refused);
* latency: ``latencyHistogram`` (a histogram's base name) with ``latencyMatch`` (label -> regular
  expression the series must match, e.g. only the inference paths); none: latency is refused;
* ``modelLabel``: the label naming the model on the request counters (checked against spec.model.name);
* ``versionLabel``: the label a Prometheus query selects a version by. The foreign presets use the target
  label ``rollout_version``, attached by the scrape job from the pod label ``modelrollout.dev/version``,
  because their own version labels do not name the served version (MLServer's ``version`` is the
  request URL's, "None" without one; Triton's is its repository's numbered directory).
  Pod scraping needs no version label: every pod serves one version.

Counter names are the sample names as exposed and queried (``..._total`` where the server writes it).

>>> ServerMetrics.from_spec({"preset": "mlserver"}).failure_counter
'model_infer_request_failure_total'
>>> ServerMetrics.from_spec({"preset": "kserve"}).has_errors
False
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from modelrollout.analysis.config import AnalysisConfig, MetricType

LABEL_NAME = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
METRIC_NAME = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"
ROLLOUT_VERSION_LABEL = "rollout_version"  # the target label foreign presets select versions by
# modelserver.contract's names, spelled out because the pure core imports no server package; a unit test
# checks they are the contract's.
OWN_REQUESTS, OWN_CODE, OWN_LATENCY = "modelserver_requests_total", "code", "modelserver_request_duration_seconds"
OWN_MODEL, OWN_VERSION = "model", "version"


class Preset(enum.StrEnum):
    MODELSERVER = "modelserver"  # this project's server: every metric type, feedback included
    MLSERVER = "mlserver"  # Seldon MLServer 1.7 (tested live: tests/e2e/test_mlserver.py)
    KSERVE = "kserve"  # KServe's Python model server, kserve 0.21 (tested live: tests/e2e/test_kserve.py): no errors
    TRITON = "triton"  # NVIDIA Triton: no latency histogram by default


REQUEST_FIELDS = ("requestCounter", "errorCodeLabel", "successCounter", "failureCounter")
LATENCY_FIELDS = ("latencyHistogram", "latencyMatch")
NAME_FIELDS = (*REQUEST_FIELDS, *LATENCY_FIELDS, "modelLabel", "versionLabel")


@dataclass(frozen=True)
class ServerMetrics:
    """Where and under which names a serving pod exposes the counts. port None: spec.serving.port."""

    preset: Preset = Preset.MODELSERVER
    port: int | None = None
    path: str = "/metrics"
    request_counter: str | None = OWN_REQUESTS
    error_code_label: str | None = OWN_CODE
    success_counter: str | None = None
    failure_counter: str | None = None
    latency_histogram: str | None = OWN_LATENCY
    latency_match: Mapping[str, str] = field(default_factory=dict)
    model_label: str | None = OWN_MODEL
    version_label: str = OWN_VERSION
    overridden: bool = False  # an explicit name was given: the server is not (known to be) ours

    @property
    def is_own_server(self) -> bool:
        """This project's model server, whose contract the pod scrape and built-in queries read."""
        return self.preset is Preset.MODELSERVER and not self.overridden

    @property
    def has_errors(self) -> bool:
        return self.error_code_label is not None or self.failure_counter is not None

    @property
    def has_latency(self) -> bool:
        return self.latency_histogram is not None

    @staticmethod
    def from_spec(raw: Any, where: str = "spec.serving.metrics") -> ServerMetrics:
        d = _object(raw, where)
        try:
            preset = Preset(d.get("preset", Preset.MODELSERVER.value))
        except ValueError:
            raise ValueError(f"{where}.preset: must be one of {', '.join(p.value for p in Preset)}, "
                             f"got {d.get('preset')!r}") from None
        base = PRESETS[preset]
        for name in ("requestCounter", "successCounter", "failureCounter", "latencyHistogram"):
            if name in d:
                _name(d[name], f"{where}.{name}", METRIC_NAME)
        for name in ("errorCodeLabel", "modelLabel", "versionLabel"):
            if name in d:
                _name(d[name], f"{where}.{name}", LABEL_NAME)
        changes: dict[str, Any] = {"overridden": any(k in d for k in NAME_FIELDS)}
        if any(k in d for k in REQUEST_FIELDS):
            changes.update(_requests(d, where))
        if any(k in d for k in LATENCY_FIELDS):
            changes.update(_latency(d, where))
        if "modelLabel" in d:
            changes["model_label"] = d["modelLabel"]
        if "versionLabel" in d:
            changes["version_label"] = d["versionLabel"]
        if "port" in d:
            changes["port"] = _port(d["port"], f"{where}.port")
        if "path" in d:
            path = d["path"]
            if not isinstance(path, str) or not re.fullmatch(r"/[^\s?#]*", path):
                raise ValueError(f"{where}.path: an absolute URL path such as /metrics, got {path!r}")
            changes["path"] = path
        return replace(base, **changes)


PRESETS: dict[Preset, ServerMetrics] = {
    Preset.MODELSERVER: ServerMetrics(),
    # Read from a running MLServer 1.7.1 (mlserver-sklearn): its own registry on the metrics port 8082.
    # model_infer_request_duration is a summary (no buckets), so latency comes from the REST histogram
    # of starlette_exporter, which has no model label: only the inference paths, not the probes.
    Preset.MLSERVER: ServerMetrics(
        preset=Preset.MLSERVER, port=8082, request_counter=None, error_code_label=None,
        success_counter="model_infer_request_success_total", failure_counter="model_infer_request_failure_total",
        latency_histogram="rest_server_request_duration_seconds", latency_match={"path": ".*/infer"},
        model_label="model", version_label=ROLLOUT_VERSION_LABEL),
    # Read from a running kserve 0.21.0 ModelServer: histograms of each step by model_name on the HTTP port's
    # /metrics, no counter; the predict histogram observes a failed predict like a successful one, so no
    # error count.
    Preset.KSERVE: ServerMetrics(
        preset=Preset.KSERVE, request_counter="request_predict_seconds_count", error_code_label=None,
        latency_histogram="request_predict_seconds", model_label="model_name", version_label=ROLLOUT_VERSION_LABEL),
    # Triton's documented metrics (port 8002): per-request counters without _total; its latencies are
    # cumulative microsecond counters and summaries, no histogram, so latency needs an explicit one.
    Preset.TRITON: ServerMetrics(
        preset=Preset.TRITON, port=8002, request_counter=None, error_code_label=None,
        success_counter="nv_inference_request_success", failure_counter="nv_inference_request_failure",
        latency_histogram=None, model_label="model", version_label=ROLLOUT_VERSION_LABEL),
}


def _object(value: Any, name: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{name}: must be an object")
    return value


def _name(value: Any, where: str, pattern: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(pattern, value):
        kind = "label" if pattern == LABEL_NAME else "metric"
        raise ValueError(f"{where}: {value!r} is not a Prometheus {kind} name")
    return value


def _port(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError(f"{where}: must be an integer in [1, 65535], got {value!r}")
    return value


def _requests(d: Mapping[str, Any], where: str) -> dict[str, Any]:
    if ("requestCounter" in d) == ("successCounter" in d):
        raise ValueError(f"{where}: set requestCounter or successCounter (with failureCounter), exactly one")
    if "successCounter" in d:
        if "failureCounter" not in d or "errorCodeLabel" in d:
            raise ValueError(f"{where}.failureCounter: required with successCounter (and errorCodeLabel is not used)")
        return {"request_counter": None, "error_code_label": None, "success_counter": d["successCounter"],
                "failure_counter": d["failureCounter"]}
    if "failureCounter" in d:
        raise ValueError(f"{where}.failureCounter: only with successCounter (requestCounter takes errorCodeLabel)")
    return {"request_counter": d["requestCounter"], "error_code_label": d.get("errorCodeLabel"),
            "success_counter": None, "failure_counter": None}


def _latency(d: Mapping[str, Any], where: str) -> dict[str, Any]:
    if "latencyHistogram" not in d:
        raise ValueError(f"{where}.latencyHistogram: required with latencyMatch")
    match = _object(d.get("latencyMatch"), f"{where}.latencyMatch")
    for label, pattern in match.items():
        _name(label, f"{where}.latencyMatch", LABEL_NAME)
        try:
            re.compile(pattern)
        except (re.error, TypeError):
            raise ValueError(f"{where}.latencyMatch.{label}: {pattern!r} is not a regular expression") from None
    return {"latency_histogram": d["latencyHistogram"], "latency_match": dict(match)}


# Metric types whose counts only this project's model server writes (feedback joined to predictions,
# predicted classes, absolute errors of regressors).
OWN_SERVER_TYPES = (MetricType.ACCURACY, MetricType.PREDICTION_SHIFT, MetricType.MEAN_ABSOLUTE_ERROR)


def check_analysis_fits(metrics: ServerMetrics, analysis: AnalysisConfig | None) -> None:
    """ValueError naming the field when a configured metric needs counts this server does not expose.

    User PromQL replaces the server's names: accuracy from queries.feedbackCorrect works with any
    server, errorRate from queries.requests, latency from queries.latencyBuckets.
    """
    if analysis is None:
        return
    queries = analysis.prometheus.queries if analysis.prometheus else {}
    for i, metric in enumerate(analysis.metrics):
        where = f"spec.analysis.metrics[{i}].type"
        if metric.type in OWN_SERVER_TYPES and not metrics.is_own_server and not (
                metric.type is MetricType.ACCURACY and "feedbackCorrect" in queries):
            raise ValueError(f"{where}: {metric.type.value} needs this project's model server "
                             "(spec.serving.metrics.preset modelserver, no explicit names)")
        if metric.type is MetricType.ERROR_RATE and not metrics.has_errors and "requests" not in queries:
            raise ValueError(f"{where}: errorRate needs errors: spec.serving.metrics.errorCodeLabel or "
                             f"failureCounter (preset {metrics.preset.value} counts none)")
        if metric.type is MetricType.LATENCY and not metrics.has_latency and "latencyBuckets" not in queries:
            raise ValueError(f"{where}: latency needs spec.serving.metrics.latencyHistogram "
                             f"(preset {metrics.preset.value} exposes none)")
