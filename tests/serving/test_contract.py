"""The operator's parser reads exactly what the server writes."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from modelserver import contract
from modelserver.contract_parse import parse_pod_metrics
from modelserver_testing import Faults

from .conftest import ONE_ROW, ExampleModels, RunningServer

pytestmark = pytest.mark.unit


def test_contract_module_imports_only_the_standard_library() -> None:
    import ast
    import inspect
    import sys

    tree = ast.parse(inspect.getsource(contract))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported - {"__future__"} <= set(sys.stdlib_module_names)


def test_parser_sums_codes_into_errors_and_client_errors_and_orders_buckets() -> None:
    text = "\n".join([
        'modelserver_requests_total{model="m",version="1",protocol="v2",code="200"} 90',
        'modelserver_requests_total{model="m",version="1",protocol="v1",code="200"} 5',
        'modelserver_requests_total{model="m",version="1",protocol="v2",code="503"} 2',
        'modelserver_requests_total{model="m",version="1",protocol="v2",code="422"} 3',
        'modelserver_request_duration_seconds_bucket{model="m",version="1",le="+Inf"} 100',
        'modelserver_request_duration_seconds_bucket{model="m",version="1",le="0.01"} 60',
        'modelserver_request_duration_seconds_bucket{model="m",version="1",le="0.001"} 10',
        'modelserver_request_duration_seconds_sum{model="m",version="1"} 0.9',
        'modelserver_request_duration_seconds_count{model="m",version="1"} 100',
        'modelserver_model_info{model="m",version="1",digest="sha256:ab",format="skops"} 1',
        'modelserver_model_ready{model="m",version="1"} 0',
        'modelserver_model_load_failures_total{model="m",version="1",reason="digest_mismatch"} 1',
        'modelserver_unknown_model_requests_total 4',
        'other_metric{model="m",version="1"} 7',
    ]) + "\n"
    pod = parse_pod_metrics(text)
    m = pod.model("m", "1")
    assert m is not None
    assert (m.requests, m.errors, m.client_errors) == (100, 2, 3)
    assert m.latency_buckets == ((0.001, 10), (0.01, 60), (math.inf, 100))
    assert (m.latency_sum, m.latency_count) == (0.9, 100)
    assert (m.digest, m.format, m.ready, m.load_failures) == ("sha256:ab", "skops", False, 1)
    assert pod.unknown_model_requests == 4
    assert pod.model("m", "2") is None


def test_parser_rejects_text_that_is_not_prometheus_format() -> None:
    with pytest.raises(ValueError):
        parse_pod_metrics('modelserver_requests_total{model="m" 1\n')


def _metrics(server: RunningServer) -> str:
    response = server.get("/metrics")
    assert response.status_code == 200
    return response.text


def test_parser_reads_what_the_server_writes(models: ExampleModels,
                                             start_server: Callable[..., RunningServer]) -> None:
    server = start_server(models.settings("lr.joblib"))
    x, y = models.holdout()
    sent = x[:30]
    predictions = []
    for i, row in enumerate(sent):
        response = server.infer([row], id=f"p{i}")
        assert response.status_code == 200
        predictions.append(response.json()["outputs"][0]["data"][0])
    multi = server.infer(sent[:4], id="multi")
    v1 = server.post("/v1/models/lr:predict", {"instances": [ONE_ROW]})
    assert multi.status_code == v1.status_code == 200
    assert server.infer([ONE_ROW[:3]]).status_code == 400
    assert server.post("/v2/models/lr/infer", data=b"{oops").status_code == 400
    truth = y[:30]
    feedback = [{"id": f"p{i}", "label": label} for i, label in enumerate(truth)]
    feedback += [{"id": "never-seen", "label": 1}, {"id": "multi", "label": [0, 1]}]
    assert server.post("/v2/models/lr/feedback", {"feedback": feedback}).status_code == 200

    m = parse_pod_metrics(_metrics(server)).model("lr", "1")
    assert m is not None
    assert (m.requests, m.errors, m.client_errors) == (34, 0, 2)
    assert m.requests_by_code == {"200": 32, "400": 2}
    assert m.latency_count == 34 and m.latency_buckets[-1] == (math.inf, 34)
    counts = [count for _, count in m.latency_buckets]
    assert counts == sorted(counts) and len(m.latency_buckets) == len(contract.LATENCY_BUCKETS) + 1
    all_predicted = predictions + multi.json()["outputs"][0]["data"] + v1.json()["predictions"]
    assert m.predicted_classes == {"0": all_predicted.count(0), "1": all_predicted.count(1)}
    assert m.rows_predicted == 35
    correct = sum(p == t for p, t in zip(predictions, truth, strict=True))
    assert (m.feedback_correct, m.feedback_incorrect) == (correct, 30 - correct)
    assert (m.feedback_unknown_ids, m.feedback_invalid) == (1, 1)
    assert m.digest == models.entry("lr.joblib")["digest"] and m.format == "joblib" and m.ready


def test_injected_errors_count_as_model_errors(models: ExampleModels,
                                               start_server: Callable[..., RunningServer]) -> None:
    server = start_server(models.settings("lr.joblib"), faults=Faults(error_rate=1.0))
    responses = [server.infer([ONE_ROW]) for _ in range(5)]
    assert [r.status_code for r in responses] == [500] * 5
    assert "error" in responses[0].json()
    m = parse_pod_metrics(_metrics(server)).model("lr", "1")
    assert m is not None and (m.requests, m.errors, m.client_errors) == (5, 5, 0)


def test_unknown_model_name_creates_no_series(lr_server: RunningServer) -> None:
    for path in ("/v2/models/evil-name/infer", "/v2/models/lr/versions/666/infer", "/v1/models/evil2:predict",
                 "/v2/models/evil3/feedback"):
        assert lr_server.post(path, {"inputs": []}).status_code == 404
    text = _metrics(lr_server)
    assert "evil" not in text and "666" not in text
    pod = parse_pod_metrics(text)
    assert set(pod.models) == {("lr", "1")}
    assert pod.unknown_model_requests == 4
