"""The prometheus source's queries (pure): built-in ones read the model server's metrics by the shared
contract's names, user queries replace them count by count, and answers become per-version counts."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from modelrollout.analysis.config import AnalysisConfig
from modelrollout.sources.promql import Shape, builtin_queries, counts_of, queries_for, render, samples_of
from modelserver import contract as c

pytestmark = pytest.mark.unit
USER_SEL = 'reqs_total{app="x",version="{{version}}"}'


def config(*types: str, queries: dict[str, str] | None = None) -> AnalysisConfig:
    criteria = {"latency": {"thresholdSeconds": 0.1, "max": 0.1}, "predictionShift": {"max": 0.1}}
    metrics = [{"name": t.lower(), "type": t, **criteria.get(t, {"margin": 0.05})} for t in types]
    return AnalysisConfig.from_spec({"metrics": metrics, "source": "prometheus", "prometheus": {
        "address": "http://p:9090", **({"queries": queries} if queries else {})}})


def vector(*samples: tuple[dict[str, str], float]) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": labels, "value": [1700000000.0, str(value)]} for labels, value in samples]}}


def test_builtin_queries_select_model_version_and_namespace_by_the_contract_names() -> None:
    for query in builtin_queries('fr"aud').values():
        rendered = render(query.template, version="2", namespace="ml", window_seconds=15.0)
        assert '{namespace="ml",model="fr\\"aud",version="2"}' in rendered
        assert rendered.endswith("[15000ms]))") and "increase(" in rendered
        assert "{{" not in rendered
    templates = " ".join(q.template for q in builtin_queries("m").values())
    for spec in (c.REQUESTS, c.FEEDBACK, c.PREDICTIONS):
        assert spec.sample + "{" in templates
    assert c.REQUEST_DURATION.name + "_bucket{" in templates


def test_each_metric_type_asks_only_for_the_counts_it_reads() -> None:
    assert [q.name for q in queries_for(config("errorRate"), "m")] == ["requests"]
    assert [q.name for q in queries_for(config("latency", "accuracy"), "m")] == [
        "requests", "latencyBuckets", "feedback"]
    assert [q.name for q in queries_for(config("predictionShift", "meanAbsoluteError"), "m")] == [
        "requests", "classes", "absErrorSum", "absErrorCount"]


def test_user_queries_replace_the_builtin_ones_count_by_count() -> None:
    user = {"requests": f"sum(increase({USER_SEL}[{{{{interval}}}}]))",
            "errors": f"sum(increase({USER_SEL[:-1]},code=~\"5..\"}}[{{{{interval}}}}])) or vector(0)",
            "latencyBuckets": 'sum by (le) (increase(lat_bucket{version="{{version}}"}[{{interval}}]))'}
    chosen = queries_for(config("errorRate", "latency", "accuracy", queries=user), "m")
    assert [(q.name, q.shape) for q in chosen] == [
        ("requests", Shape.COUNT), ("errors", Shape.COUNT), ("latencyBuckets", Shape.BY_LE),
        ("feedback", Shape.BY_OUTCOME)]
    rendered = render(chosen[0].template, version="v7", namespace="ns", window_seconds=2.0004)
    assert rendered == 'sum(increase(reqs_total{app="x",version="v7"}[2000ms]))'


def test_status_codes_become_requests_and_errors_by_the_servers_rule() -> None:
    query = builtin_queries("m")["requests"]
    answer = vector(({"code": "200"}, 90.0), ({"code": "503"}, 4.0), ({"code": "400"}, 5.0), ({"code": "499"}, 7.0))
    # 499 (client gone before its request was read) is not a request; 4xx count as requests, not errors.
    assert counts_of(query, samples_of(answer)) == {"requests": 99.0, "errors": 4.0}


def test_buckets_outcomes_and_classes_are_read_by_their_labels() -> None:
    q = builtin_queries("m")
    buckets = counts_of(q["latencyBuckets"], samples_of(vector(({"le": "+Inf"}, 10), ({"le": "0.005"}, 8))))
    assert buckets == {"latency_buckets": ((0.005, 8.0), (math.inf, 10.0))}
    outcomes = vector(({"outcome": "correct"}, 30), ({"outcome": "unknown_id"}, 2))
    feedback = counts_of(q["feedback"], samples_of(outcomes))
    assert feedback == {"feedback_correct": 30.0, "feedback_incorrect": 0.0}
    classes = counts_of(q["classes"], samples_of(vector(({"class": "0"}, 3), ({"class": "1"}, 1))))
    assert classes == {"class_counts": {"0": 3.0, "1": 1.0}}


@pytest.mark.parametrize(("answer", "complaint"), [
    ({"status": "error", "errorType": "bad_data", "error": "parse error"}, "query failed: parse error"),
    ({"status": "success", "data": {"resultType": "matrix", "result": []}}, "expected an instant vector"),
    (vector(), "empty result: no series matched"),
    ("<html>", "query failed"),
])
def test_a_failed_or_empty_answer_is_an_error_never_zero(answer: Any, complaint: str) -> None:
    with pytest.raises(ValueError, match=re.escape(complaint)):
        samples_of(answer)


def test_a_count_query_must_answer_one_finite_sample() -> None:
    user = config("errorRate", queries={"requests": f"sum(increase({USER_SEL}[{{{{interval}}}}]))",
                                        "errors": f"sum(increase({USER_SEL}[{{{{interval}}}}]))"})
    requests = queries_for(user, "m")[0]
    assert counts_of(requests, samples_of(vector(({}, 12.5)))) == {"requests": 12.5}
    with pytest.raises(ValueError, match="2 series, expected one count"):
        counts_of(requests, samples_of(vector(({"a": "1"}, 1), ({"a": "2"}, 1))))
    with pytest.raises(ValueError, match="is not a count"):
        counts_of(requests, samples_of(vector(({}, math.nan))))
    with pytest.raises(ValueError, match="without the code label"):
        counts_of(builtin_queries("m")["requests"], samples_of(vector(({}, 3))))
