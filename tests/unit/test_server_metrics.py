"""`spec.serving.metrics`: presets and explicit names parsed once, what a foreign server may be judged on,
its pods' metrics read by those names (from real MLServer 1.7.1 and kserve 0.21.0 scrapes), and the PromQL built
from them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelrollout.analysis.config import AnalysisConfig
from modelrollout.core import servermetrics as sm
from modelrollout.core.servermetrics import Preset, ServerMetrics
from modelrollout.core.spec import RolloutSpec
from modelrollout.sources.foreignmetrics import pod_metrics
from modelrollout.sources.promql import Shape, counts_of, queries_for, render
from modelserver import contract as c

pytestmark = pytest.mark.unit
MLSERVER_SCRAPE = (Path(__file__).parent / "data" / "mlserver-1.7.1-metrics.txt").read_text()
# examples/kserve/predictor.py on kserve 0.21.0 (the HTTP port's /metrics): 3 V2 + 1 V1 answered, 1 failed
# with HTTP 500 (a row of 3 features for a 4-feature model), 1 readiness probe.
KSERVE_SCRAPE = (Path(__file__).parent / "data" / "kserve-0.21.0-metrics.txt").read_text()
ERRORS = {"name": "errors", "type": "errorRate", "max": 0.01}
LATENCY = {"name": "p99", "type": "latency", "quantile": 0.99, "maxRatioToStable": 2.0}
ACCURACY = {"name": "acc", "type": "accuracy", "minRatioToStable": 0.98}


def spec(metrics: dict[str, Any] | None, *analysis: dict[str, Any], **extra: Any) -> dict[str, Any]:
    serving: dict[str, Any] = {} if metrics is None else {"metrics": metrics}
    body: dict[str, Any] = {"model": {"name": "iris", "version": "2", "uri": "/models/lr.joblib"},
                            "service": {"name": "iris"}, "serving": serving,
                            "strategy": {"canary": {"steps": [{"setWeight": 50}]}}}
    if analysis:
        body["analysis"] = {"metrics": list(analysis), **extra}
    return body


def test_the_own_server_names_are_the_contracts() -> None:
    own = ServerMetrics()
    assert (own.request_counter, own.error_code_label, own.latency_histogram, own.model_label, own.version_label) == (
        c.REQUESTS.sample, c.CODE, c.REQUEST_DURATION.name, c.MODEL, c.VERSION)
    assert own.is_own_server and ServerMetrics.from_spec(None) == own


@pytest.mark.parametrize(("raw", "own", "errors", "latency", "port"), [
    ({}, True, True, True, None),
    ({"preset": "modelserver", "port": 8080}, True, True, True, 8080),
    ({"preset": "mlserver"}, False, True, True, 8082),
    ({"preset": "kserve"}, False, False, True, None),
    ({"preset": "triton"}, False, True, False, 8002),
    ({"preset": "triton", "latencyHistogram": "my_seconds"}, False, True, True, 8002),
    ({"preset": "kserve", "requestCounter": "http_total", "errorCodeLabel": "status"}, False, True, True, None),
    ({"requestCounter": "modelserver_requests_total", "errorCodeLabel": "code"}, False, True, True, None),
])
def test_presets_and_overrides(raw: dict[str, Any], own: bool, errors: bool, latency: bool, port: int | None) -> None:
    m = ServerMetrics.from_spec(raw)
    assert (m.is_own_server, m.has_errors, m.has_latency, m.port) == (own, errors, latency, port)


def test_an_explicit_requests_group_replaces_the_presets_whole_group() -> None:
    m = ServerMetrics.from_spec({"preset": "mlserver", "requestCounter": "rest_server_requests_total",
                                 "errorCodeLabel": "status_code"})
    assert (m.success_counter, m.failure_counter, m.request_counter) == (None, None, "rest_server_requests_total")
    assert m.latency_histogram == sm.PRESETS[Preset.MLSERVER].latency_histogram  # the other group is kept


@pytest.mark.parametrize(("raw", "message"), [
    ({"preset": "torchserve"}, "spec.serving.metrics.preset"),
    ({"successCounter": "ok_total"}, "spec.serving.metrics.failureCounter"),
    ({"failureCounter": "bad_total", "requestCounter": "r_total"}, "spec.serving.metrics.failureCounter"),
    ({"errorCodeLabel": "code"}, "spec.serving.metrics: set requestCounter or successCounter"),
    ({"requestCounter": "bad-name"}, "spec.serving.metrics.requestCounter"),
    ({"modelLabel": "1model"}, "spec.serving.metrics.modelLabel"),
    ({"latencyMatch": {"path": ".*"}}, "spec.serving.metrics.latencyHistogram"),
    ({"latencyHistogram": "h", "latencyMatch": {"path": "("}}, "spec.serving.metrics.latencyMatch.path"),
    ({"port": 0}, "spec.serving.metrics.port"),
    ({"path": "metrics"}, "spec.serving.metrics.path"),
])
def test_bad_mappings_are_refused_naming_the_field(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        ServerMetrics.from_spec(raw)


@pytest.mark.parametrize(("metrics", "analysis", "extra", "refusal"), [
    (None, [ERRORS, LATENCY, ACCURACY], {}, None),
    ({"preset": "mlserver"}, [ERRORS, LATENCY], {}, None),
    ({"preset": "mlserver"}, [ERRORS, ACCURACY], {}, "accuracy needs this project's model server"),
    ({"preset": "mlserver"}, [{"name": "mae", "type": "meanAbsoluteError", "max": 3.0}], {}, "meanAbsoluteError"),
    ({"preset": "kserve"}, [ERRORS], {}, "errorRate needs errors"),
    ({"preset": "kserve"}, [LATENCY], {}, None),
    ({"preset": "triton"}, [ERRORS, LATENCY], {}, "latency needs spec.serving.metrics.latencyHistogram"),
    ({"requestCounter": "modelserver_requests_total", "errorCodeLabel": "code"}, [ACCURACY], {},
     "accuracy needs this project's model server"),
])
def test_what_a_server_can_be_judged_on(metrics: dict[str, Any] | None, analysis: list[dict[str, Any]],
                                        extra: dict[str, Any], refusal: str | None) -> None:
    body = spec(metrics, *analysis, **extra)
    if refusal is None:
        RolloutSpec.from_dict(body)
        return
    with pytest.raises(ValueError, match=r"spec\.analysis\.metrics\[\d\]\.type") as raised:
        RolloutSpec.from_dict(body)
    assert refusal in str(raised.value)


def test_user_promql_stands_in_for_counts_the_server_lacks() -> None:
    count = 'sum(increase(x_total{version="{{version}}"}[{{interval}}]))'
    prometheus = {"address": "http://p:9090", "queries": {
        "requests": count, "errors": count, "feedbackCorrect": count, "feedbackIncorrect": count,
        "latencyBuckets": 'sum by (le) (increase(h_bucket{version="{{version}}"}[{{interval}}]))'}}
    for preset in ("kserve", "triton", "mlserver"):
        RolloutSpec.from_dict(spec({"preset": preset}, ERRORS, LATENCY, ACCURACY, source="prometheus",
                                   prometheus=prometheus))


def test_mlserver_scrape_gives_requests_errors_and_inference_latency() -> None:
    # A real MLServer 1.7.1 (mlserver-sklearn): 4 answered, 1 failed with HTTP 500, plus health probes.
    m = pod_metrics(MLSERVER_SCRAPE, ServerMetrics.from_spec({"preset": "mlserver"}), "iris", "2")
    assert m is not None
    assert (m.requests, m.errors) == (5.0, 1.0)
    assert m.latency_count == 5.0 and m.latency_buckets[-1] == (float("inf"), 5.0)
    assert [le for le, _ in m.latency_buckets] == sorted(le for le, _ in m.latency_buckets)


def test_kserve_scrape_counts_every_predict_failed_or_not_and_its_latency() -> None:
    kserve = ServerMetrics.from_spec({"preset": "kserve"})
    m = pod_metrics(KSERVE_SCRAPE, kserve, "iris", "2")
    assert m is not None
    # kserve times the predict step whatever its outcome: the failed one is a request, and no error count
    # exists (the probe is not a predict), which is why errorRate is refused with this preset.
    assert (m.requests, m.errors) == (5.0, 0.0) and not kserve.has_errors
    assert m.latency_count == 5.0 and m.latency_buckets[0] == (0.005, 3.0) and m.latency_buckets[-1] == (
        float("inf"), 5.0)
    assert pod_metrics(KSERVE_SCRAPE, kserve, "other-model", "2") is None  # selected by model_name


def test_kserve_promql_reads_the_predict_histogram_by_the_rollout_version_target_label() -> None:
    kserve = ServerMetrics.from_spec({"preset": "kserve"})
    queries = {q.name: q for q in queries_for(_analysis(LATENCY), "iris", kserve)}
    assert render(queries["requests"].template, version="2", namespace="ml", window_seconds=3) == (
        'sum(increase(request_predict_seconds_count{namespace="ml",rollout_version="2",model_name="iris"}[3000ms]))')
    assert render(queries["latencyBuckets"].template, version="2", namespace="ml", window_seconds=3) == (
        'sum by (le) (increase(request_predict_seconds_bucket{namespace="ml",rollout_version="2"}[3000ms]))')


def test_a_scrape_without_the_models_series_is_missing_data() -> None:
    mlserver = ServerMetrics.from_spec({"preset": "mlserver"})
    assert pod_metrics(MLSERVER_SCRAPE, mlserver, "other-model", "2") is None
    only_success = "\n".join(line for line in MLSERVER_SCRAPE.splitlines() if "request_failure" not in line)
    assert pod_metrics(only_success, mlserver, "iris", "2") is None  # never "no errors"


def test_a_status_code_counter_counts_5xx_as_errors() -> None:
    text = ('rest_server_requests_total{path="/v2/models/{model_name}/infer",status_code="200"} 8.0\n'
            'rest_server_requests_total{path="/v2/models/{model_name}/infer",status_code="500"} 2.0\n'
            'rest_server_requests_total{path="/v2/models/{model_name}/infer",status_code="400"} 1.0\n')
    m = pod_metrics(text, ServerMetrics.from_spec({"requestCounter": "rest_server_requests_total",
                                                   "errorCodeLabel": "status_code", "modelLabel": "app"}),
                    "iris", "2")
    assert m is None  # the model label is required on the counter
    m = pod_metrics(text, ServerMetrics(request_counter="rest_server_requests_total", error_code_label="status_code",
                                        model_label=None, overridden=True), "iris", "2")
    assert m is not None and (m.requests, m.errors) == (11.0, 2.0)


def _analysis(*metrics: dict[str, Any]) -> AnalysisConfig:
    return AnalysisConfig.from_spec({"metrics": list(metrics), "source": "prometheus",
                                     "prometheus": {"address": "http://p:9090"}})


def test_mlserver_promql_selects_the_version_by_the_rollout_version_target_label() -> None:
    queries = {q.name: q for q in queries_for(_analysis(ERRORS, LATENCY), "iris",
                                              ServerMetrics.from_spec({"preset": "mlserver"}))}
    assert list(queries) == ["requests", "errors", "latencyBuckets"]
    rendered = render(queries["requests"].template, version="2", namespace="ml", window_seconds=3)
    selector = '{namespace="ml",rollout_version="2",model="iris"}[3000ms]'
    assert rendered == (f"sum(increase(model_infer_request_success_total{selector})) + "
                        f"sum(increase(model_infer_request_failure_total{selector}))")
    assert render(queries["latencyBuckets"].template, version="2", namespace="ml", window_seconds=3) == (
        'sum by (le) (increase(rest_server_request_duration_seconds_bucket{namespace="ml",rollout_version="2",'
        'path=~".*/infer"}[3000ms]))')


def test_a_status_code_label_of_another_name_is_grouped_by() -> None:
    server = ServerMetrics.from_spec({"requestCounter": "http_requests_total", "errorCodeLabel": "status"})
    [requests] = queries_for(_analysis(ERRORS), "iris", server)
    assert requests.shape is Shape.BY_CODE and "sum by (status)" in requests.template
    samples = [{"metric": {"status": "200"}, "value": [0, "90"]}, {"metric": {"status": "503"}, "value": [0, "10"]}]
    assert counts_of(requests, samples) == {"requests": 100.0, "errors": 10.0}


def test_the_own_server_queries_are_unchanged() -> None:
    own = queries_for(_analysis(ERRORS, LATENCY), "iris", ServerMetrics())
    assert [q.template for q in own] == [q.template for q in queries_for(_analysis(ERRORS, LATENCY), "iris")]
    assert "modelserver_requests_total" in own[0].template
