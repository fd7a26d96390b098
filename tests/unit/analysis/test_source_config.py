"""`spec.analysis.source` / `spec.analysis.prometheus`: parsed once, bad input refused naming the field,
and the accepted PromQL shapes are the same regular expressions in Python and in the CRD's CEL rules."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelrollout.analysis.config import AnalysisConfig
from modelrollout.analysis.sourceconfig import (
    BUCKETS_SHAPE,
    COUNT_SHAPE,
    PrometheusConfig,
    SecretKeyRef,
    SourceName,
    check_query,
)

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[3]
METRICS = [{"name": "errors", "type": "errorRate", "max": 0.01}]
PROM = {"address": "http://prometheus.monitoring:9090"}
SEL = 'http_requests_total{job="api",version="{{version}}",namespace="{{namespace}}"}'


def parse(**analysis: Any) -> AnalysisConfig:
    return AnalysisConfig.from_spec({"metrics": METRICS, **analysis})


def test_default_source_is_the_pod_scrape_without_prometheus_settings() -> None:
    config = parse()
    assert config.source is SourceName.PODS and config.prometheus is None


def test_prometheus_settings_are_parsed_into_one_typed_value() -> None:
    config = parse(source="prometheus", prometheus={
        "address": "https://prom.example:9090/", "timeout": "2500ms",
        "tls": {"caSecret": {"name": "prom-ca", "key": "ca.crt"}},
        "bearerTokenSecret": {"name": "prom-token", "key": "token"},
        "queries": {"requests": f"sum(increase({SEL}[{{{{interval}}}}]))",
                    "errors": f"sum(increase({SEL[:-1]},code=~\"5..\"}}[{{{{interval}}}}])) or vector(0)"}})
    assert config.source is SourceName.PROMETHEUS and config.prometheus is not None
    assert set(config.prometheus.queries) == {"requests", "errors"}
    assert config.prometheus == PrometheusConfig(
        address="https://prom.example:9090", timeout_seconds=2.5, insecure_skip_verify=False,
        ca_secret=SecretKeyRef("prom-ca", "ca.crt"), bearer_token_secret=SecretKeyRef("prom-token", "token"),
        queries=config.prometheus.queries)


@pytest.mark.parametrize(("analysis", "complaint"), [
    ({"source": "graphite"}, "spec.analysis.source: must be pods or prometheus"),
    ({"source": "prometheus"}, "spec.analysis.prometheus: required with source prometheus"),
    ({"prometheus": PROM}, "spec.analysis.prometheus: only used with source: prometheus"),
    ({"source": "prometheus", "prometheus": {"address": "prometheus:9090"}}, "spec.analysis.prometheus.address"),
    ({"source": "prometheus", "prometheus": {**PROM, "timeout": "0s"}}, "spec.analysis.prometheus.timeout"),
    ({"source": "prometheus", "prometheus": {**PROM, "timeout": "2m"}}, "spec.analysis.prometheus.timeout"),
    ({"source": "prometheus", "prometheus": {"address": "https://p:9090", "tls": {
        "insecureSkipVerify": True, "caSecret": {"name": "ca", "key": "ca.crt"}}}},
     "spec.analysis.prometheus.tls: set caSecret or insecureSkipVerify, not both"),
    ({"source": "prometheus", "prometheus": {**PROM, "tls": {"caSecret": {"name": "ca", "key": "ca.crt"}}}},
     "spec.analysis.prometheus.tls.caSecret: only used with an https:// address"),
    ({"source": "prometheus", "prometheus": {**PROM, "bearerTokenSecret": {"name": "Bad_Name", "key": "t"}}},
     "spec.analysis.prometheus.bearerTokenSecret.name"),
    ({"source": "prometheus", "prometheus": {**PROM, "queries": {"latency": "x"}}},
     "spec.analysis.prometheus.queries.latency: not a count the analysis reads"),
    ({"source": "prometheus", "prometheus": {**PROM, "queries": {
        "requests": f"sum(increase({SEL}[{{{{interval}}}}]))"}}},
     "spec.analysis.prometheus.queries.errors: required with queries.requests"),
    ({"source": "prometheus", "prometheus": {**PROM, "queries": {
        "feedbackIncorrect": f"sum(increase({SEL}[{{{{interval}}}}]))"}}},
     "spec.analysis.prometheus.queries.feedbackCorrect: required with queries.feedbackIncorrect"),
])
def test_bad_settings_are_refused_naming_the_field(analysis: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValueError, match=re.escape(complaint)):
        parse(**analysis)


ACCEPTED = [
    ("requests", f"sum(increase({SEL}[{{{{interval}}}}]))"),
    ("errors", f"sum(increase({SEL}[{{{{interval}}}}])) or vector(0)"),
    ("requests", 'sum(increase({__name__="x",version="{{version}}"}[{{interval}}]))'),
    ("requests", ' sum (\n  increase(x{version="{{version}}", path="/a}b"}[{{interval}}])\n) '),
    ("latencyBuckets", 'sum by (le) (increase(lat_bucket{version="{{version}}"}[{{interval}}]))'),
]
REFUSED = [
    ("requests", 'sum(increase(x{version="2"}[{{interval}}]))', "must select one version with {{version}}"),
    ("requests", 'sum(increase(x{version="{{version}}"}[{{window}}]))', "unknown placeholder {{window}}"),
    ("requests", 'sum(increase(x{version="{{version}}"}[5m]))', "must have the shape"),
    ("errors", 'sum(rate(x{version="{{version}}"}[{{interval}}]))', "must have the shape"),
    # A ratio whose both sides have the accepted shape: the selector cannot swallow the operator.
    ("errors", 'sum(increase(e{version="{{version}}"}[{{interval}}])) / sum(increase(r{version="{{version}}"}'
               '[{{interval}}]))', "must have the shape"),
    ("errors", 'sum(increase(x{version="{{version}}"}[{{interval}}])) or vector(1)', "must have the shape"),
    ("requests", 'sum by (pod) (increase(x{version="{{version}}"}[{{interval}}]))', "must have the shape"),
    ("requests", 'sum(increase(x{version="{{version}}"}[{{interval}}:1s]))', "must have the shape"),
    ("latencyBuckets", 'histogram_quantile(0.99, sum by (le) (rate(x_bucket{version="{{version}}"}'
                       '[{{interval}}])))', "must have the shape sum by (le)"),
    ("latencyBuckets", 'sum(increase(x_bucket{version="{{version}}"}[{{interval}}]))', "must have the shape sum by"),
]


@pytest.mark.parametrize(("name", "query"), ACCEPTED)
def test_count_shapes_are_accepted(name: str, query: str) -> None:
    check_query(name, query, "q")


@pytest.mark.parametrize(("name", "query", "complaint"), REFUSED)
def test_other_shapes_are_refused_saying_which_shape_is_accepted(name: str, query: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=re.escape(complaint)):
        check_query(name, query, "spec.analysis.prometheus.queries." + name)


def _cel_regexes(crd: Path) -> dict[str, set[str]]:
    analysis = yaml.safe_load(crd.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"][
        "properties"]["spec"]["properties"]["analysis"]
    queries = analysis["properties"]["prometheus"]["properties"]["queries"]["properties"]
    found: dict[str, set[str]] = {}
    for name, schema in queries.items():
        for rule in schema["x-kubernetes-validations"]:
            match = re.fullmatch(r"self\.matches\(r'\(\?s\)(.*)'\)", rule["rule"].strip(), flags=re.DOTALL)
            if match:
                found.setdefault(name, set()).add(match.group(1))
    return found


@pytest.mark.parametrize("crd", [ROOT / "crds" / "modelrollout.dev_modelrollouts.yaml",
                                 ROOT / "charts" / "modelrollout" / "crds" / "modelrollout.dev_modelrollouts.yaml"])
def test_the_crd_refuses_the_same_shapes_with_the_same_regular_expressions(crd: Path) -> None:
    regexes = _cel_regexes(crd)
    assert regexes == {"requests": {COUNT_SHAPE}, "errors": {COUNT_SHAPE}, "feedbackCorrect": {COUNT_SHAPE},
                       "feedbackIncorrect": {COUNT_SHAPE}, "latencyBuckets": {BUCKETS_SHAPE}}
