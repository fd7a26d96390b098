"""`analysis.source: prometheus` on the local cluster, with a real Prometheus pod scraping the serving pods
through kubernetes_sd: a good canary is promoted and a bad one rolled back on counts from Prometheus;
with Prometheus stopped mid-analysis the rollout holds (Inconclusive, then Paused), never promoting.
`promtool check metrics` accepts the model server's and the operator's /metrics pages."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest

from localcluster.testing import wait_until
from localcluster.traffic import read_metrics
from modelrollout import dashboard
from tests.conftest import ClusterHandle
from tests.e2e.prometheus import PrometheusPod, promtool_check_metrics
from tests.e2e.rollouts import OperatorProcess, Scenario, Traffic, make_rollout

pytestmark = pytest.mark.e2e
MIN_SAMPLES = 60
ERRORS = {"name": "error-rate", "type": "errorRate", "margin": 0.02}
SLOW = {"name": "slow-requests", "type": "latency", "thresholdSeconds": 0.25, "max": 0.05}
FAST_STEPS = [{"setWeight": 50}, {"pause": {"duration": "4s"}}, {"setWeight": 100}]
SLOW_STEPS = [{"setWeight": 25}, {"pause": {"duration": "60s"}}, {"setWeight": 100}]


@pytest.fixture
def prometheus(cluster: ClusterHandle, namespace: str, operator: OperatorProcess) -> Iterator[PrometheusPod]:
    # The operator runs as a process in the cluster's network namespace: scraped as a static target.
    yield PrometheusPod(cluster, namespace, operator_targets=(f"127.0.0.1:{operator.metrics_port}",))


def _analysis(prom: PrometheusPod, *metrics: dict[str, Any], inconclusive_limit: int = 30) -> dict[str, Any]:
    return {"interval": "2s", "minSamples": MIN_SAMPLES, "failureLimit": 2, "inconclusiveLimit": inconclusive_limit,
            "minExposure": "4s", "source": "prometheus", "prometheus": {"address": prom.address, "timeout": "2s"},
            "metrics": list(metrics)}


def _start(s: Scenario, models: dict[str, Any], store: str, analysis: dict[str, Any]) -> None:
    s.apply(make_rollout(s.name, "1", models["models"]["lr"], store, analysis=analysis))
    s.wait_phase("Healthy", 90)


def _results(s: Scenario) -> list[dict[str, Any]]:
    return [r for st in s.seen for r in (st.get("analysis") or {}).get("results") or []]


def test_good_canary_is_promoted_on_counts_from_prometheus(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, prometheus: PrometheusPod,
        models: dict[str, Any], model_store: str) -> None:
    # Given version 1 serving under traffic, judged by Prometheus
    s = Scenario(cluster, namespace, "promgood")
    analysis = _analysis(prometheus, ERRORS, SLOW)
    _start(s, models, model_store, analysis)
    with Traffic(s.service_url(), s.name, models["holdout"]) as traffic:
        # When an equally good version 2 is rolled out
        s.apply(make_rollout(s.name, "2", models["models"]["lr"], model_store, steps=FAST_STEPS, analysis=analysis))
        final = s.wait_phase("Healthy", 180)
    # Then it is promoted, every metric passed on counts Prometheus scraped from the pods
    assert final["stableVersion"] == "2" and "canaryVersion" not in final, final
    passed = {r["name"] for r in _results(s) if r.get("verdict") == "Pass" and r.get("canarySamples", 0) >= MIN_SAMPLES}
    assert passed == {"error-rate", "slow-requests"}, _results(s)[-4:]
    assert traffic.stats.by_version["2"].ok > MIN_SAMPLES and traffic.stats.failures == 0
    series = prometheus.query(f'modelserver_requests_total{{namespace="{namespace}",model="{s.name}",version="2"}}')
    assert series and all(x["metric"]["pod"].startswith(f"{s.name}-") for x in series), series


def _panel_query(expr: str, namespace: str, name: str) -> str:
    """A dashboard expression as Grafana sends it with this rollout chosen."""
    for variable, value in (("$namespace", namespace), ("$rollout", name), ("$model", name),
                            ("$__rate_interval", "30s")):
        expr = expr.replace(variable, value)
    return expr


def test_promtool_accepts_the_metrics_and_no_dashboard_panel_is_empty_during_a_rollout(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, prometheus: PrometheusPod,
        models: dict[str, Any], model_store: str) -> None:
    # Given a rollout that served traffic with feedback, so every family of both pages has samples
    s = Scenario(cluster, namespace, "promtool")
    _start(s, models, model_store, _analysis(prometheus, ERRORS))
    with Traffic(s.service_url(), s.name, models["holdout"]) as traffic:
        s.apply(make_rollout(s.name, "2", models["models"]["lr"], model_store, steps=FAST_STEPS,
                             analysis=_analysis(prometheus, ERRORS)))
        s.wait_phase("Healthy", 180)
        # Every panel of the chart's Grafana dashboard, evaluated by this Prometheus, has data.
        empty = {expr for expr in dashboard.expressions()
                 if not prometheus.query(_panel_query(expr, namespace, s.name))}
    assert not empty, empty
    assert traffic.stats.by_version["2"].ok > 0
    pod = next(p for p in prometheus.query(f'up{{namespace="{namespace}"}}') if p["value"][1] == "1")
    pages = {"model server": read_metrics(pod["metric"]["instance"].split(":")[0], 8080),
             "operator": read_metrics("127.0.0.1", operator.metrics_port)}
    assert "modelserver_feedback_total{" in pages["model server"]
    assert "modelrollout_analysis_verdicts_total{" in pages["operator"]
    # When promtool checks each page, Then it finds nothing to complain about
    for name, text in pages.items():
        checked = promtool_check_metrics(text)
        assert checked.returncode == 0 and not checked.stdout.strip(), (name, checked.stdout, checked.stderr)


def test_bad_canary_is_rolled_back_on_counts_from_prometheus(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, prometheus: PrometheusPod,
        models: dict[str, Any], model_store: str) -> None:
    s = Scenario(cluster, namespace, "prombad")
    analysis = _analysis(prometheus, ERRORS)
    _start(s, models, model_store, analysis)
    with Traffic(s.service_url(), s.name, models["holdout"]) as traffic:
        s.apply(make_rollout(s.name, "2", models["models"]["lr"], model_store, steps=SLOW_STEPS, analysis=analysis,
                             faults={"MODELSERVER_CHAOS_ERROR_RATE": "0.3"}))
        final = s.wait_phase("RolledBack", 120)
    assert final["stableVersion"] == "1" and final.get("rejectedVersion") == "2", final
    assert "error-rate" in final["message"] and "canary error rate" in final["message"], final["message"]
    assert traffic.stats.by_version["2"].failed > 0  # it really was bad, and it really got traffic
    assert any(reason == "AnalysisFailed" for _, reason, _ in s.events())


def test_with_prometheus_stopped_the_rollout_holds_and_never_promotes(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, prometheus: PrometheusPod,
        models: dict[str, Any], model_store: str) -> None:
    # Given a good canary whose analysis is under way on counts from Prometheus
    s = Scenario(cluster, namespace, "promgone")
    analysis = _analysis(prometheus, ERRORS, inconclusive_limit=5)
    _start(s, models, model_store, analysis)
    with Traffic(s.service_url(), s.name, models["holdout"]):
        s.apply(make_rollout(s.name, "2", models["models"]["lr"], model_store, steps=FAST_STEPS, analysis=analysis))
        s.wait_phase("Progressing", 60)
        wait_until(lambda: any(r.get("canarySamples", 0) > 0 for r in (s.status().get("analysis") or {}).get(
            "results") or []), 60, "an analysis tick with canary counts from Prometheus", describe=s.describe)
        # When Prometheus stops
        prometheus.stop()
        # Then every tick is Inconclusive, saying the query failed, and the rollout pauses instead of promoting
        final = s.wait_phase("Paused", 90)
    # No look saw version 2 become stable or its promotion begin
    assert [st for st in s.seen if st.get("stableVersion") == "2" or st.get("phase") == "Promoting"] == [], final
    assert final["stableVersion"] == "1", final
    assert final["canaryVersion"] == "2", final
    reasons = [r["message"] for r in _results(s) if r.get("verdict") == "Inconclusive" and "query" in r["message"]]
    assert reasons and "requests query" in reasons[-1], _results(s)[-3:]
    assert "inconclusive" in final["message"] and "query" in final["message"], final["message"]


def test_a_missing_token_secret_holds_the_rollout_until_it_exists(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, prometheus: PrometheusPod,
        models: dict[str, Any], model_store: str) -> None:
    # Given a rollout whose Prometheus settings name a bearer token Secret that does not exist yet
    s = Scenario(cluster, namespace, "promtoken")
    analysis = _analysis(prometheus, ERRORS, inconclusive_limit=3)
    analysis["prometheus"]["bearerTokenSecret"] = {"name": "prom-token", "key": "token"}
    _start(s, models, model_store, analysis)
    with Traffic(s.service_url(), s.name, models["holdout"]):
        s.apply(make_rollout(s.name, "2", models["models"]["lr"], model_store, steps=FAST_STEPS, analysis=analysis))
        # Then the analysis cannot query, says why, and the rollout pauses
        paused = s.wait_phase("Paused", 90)
        assert "cannot read a Secret of spec.analysis.prometheus (HTTP 404" in paused["message"], paused["message"]
        assert not any(r.get("canarySamples", 0) > 0 for r in _results(s)), "counted without the Secret"
        # When the Secret is created and the rollout resumed, Then the token is read and counts arrive
        # (whether the canary then passes within inconclusiveLimit 3 depends on traffic, not on the Secret)
        kubernetes.client.CoreV1Api(cluster.api).create_namespaced_secret(namespace, {
            "metadata": {"name": "prom-token"}, "stringData": {"token": "not-checked-by-the-test-prometheus"}})
        s.command("resume")
        wait_until(lambda: any(r.get("canarySamples", 0) > 0 for r in (s.status().get("analysis") or {}).get(
            "results") or []), 90, "an analysis tick with canary counts once the Secret exists", describe=s.describe)
