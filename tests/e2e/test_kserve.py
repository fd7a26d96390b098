"""Rollouts of scikit-learn models served by KServe's Python model server (`kserve` 0.21.0 running the custom
predictor examples/kserve/predictor.py; `serving.metrics.preset: kserve`), judged on kserve's own predict
histogram under continuous traffic: a good version is promoted on counts scraped from its pods, a version
whose model takes 0.3 s per call is rolled back on latency as a real Prometheus counts it; and
examples/kserve-canary.yaml, applied as written, is promoted. kserve counts no errors, so errorRate with this
preset is refused at admission unless the user's PromQL gives the counts."""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

import joblib
import kubernetes
import pytest
import yaml
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from localcluster.binaries import kserve_python
from tests.conftest import ROOT, ClusterHandle
from tests.e2e.prometheus import PrometheusPod
from tests.e2e.rollouts import GROUP, PLURAL, VERSION, OperatorProcess, Scenario, Traffic
from tests.e2e.test_examples import PublishedExamples, examples  # noqa: F401 - a fixture used below

pytestmark = pytest.mark.e2e

KSERVE_IMAGE = "modelrollout/kserve-sklearn-predictor:0.21.0"
EXAMPLE = ROOT / "examples" / "kserve-canary.yaml"
SLOW_STEP_DIR = ROOT / "tests" / "e2e" / "kserve_slow"
SLOW_SECONDS = 0.3
# kserve's histogram has a bucket bound at 0.25 s: a good version's predict is a few milliseconds, the slow
# one's is never under 0.3 s. errorRate cannot be asked of kserve's metrics (see the admission test).
ANALYSIS = {"interval": "3s", "minSamples": 30, "failureLimit": 2, "inconclusiveLimit": 30, "minExposure": "4s",
            "metrics": [{"name": "slow-requests", "type": "latency", "thresholdSeconds": 0.25, "max": 0.05}]}


def digest(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def slow_model(models: dict[str, Any]) -> Path:
    """The good model behind a preprocessing step that waits SLOW_SECONDS per call (tests/e2e/kserve_slow)."""
    spec = importlib.util.spec_from_file_location("slowstep", SLOW_STEP_DIR / "slowstep.py")
    assert spec is not None and spec.loader is not None
    slowstep = importlib.util.module_from_spec(spec)
    sys.modules["slowstep"] = slowstep  # pickle stores the function as slowstep.pause, as the pods import it
    spec.loader.exec_module(slowstep)
    model = Pipeline([("pause", FunctionTransformer(slowstep.pause, kw_args={"seconds": SLOW_SECONDS})),
                      ("model", joblib.load(Path(models["dir"]) / "lr.joblib"))])
    path = Path(models["dir"]) / "lr-slow.joblib"
    joblib.dump(model, path)
    return path


def kserve_rollout(name: str, version: str, model_path: Path, analysis: dict[str, Any] = ANALYSIS,
                   env: dict[str, str] | None = None) -> dict[str, Any]:
    """As examples/kserve-canary.yaml: the predictor reads the operator's MODEL_NAME / MODEL_URI / PORT and
    checks MODEL_DIGEST (allowPickle + digest) before it unpickles the file."""
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelRollout", "metadata": {"name": name}, "spec": {
        "replicas": 2,
        "model": {"name": name, "version": version, "uri": str(model_path), "digest": digest(model_path),
                  "allowPickle": True},
        "serving": {"image": KSERVE_IMAGE, "port": 8080, "metrics": {"preset": "kserve"},
                    "env": [{"name": k, "value": v} for k, v in (env or {}).items()]},
        "service": {"name": name, "port": 80},
        "strategy": {"canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": "6s"}}, {"setWeight": 100}]}},
        "analysis": analysis,
    }}


def verdicts(s: Scenario, name: str) -> set[str]:
    return {r.get("verdict") for st in s.seen for r in (st.get("analysis") or {}).get("results") or []
            if r.get("name") == name}


def test_kserve_versions_good_promoted_slow_rolled_back_on_latency(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any]) -> None:
    kserve_python()  # missing: fails here saying `make kserve-bins`, never a skip
    good, slow = Path(models["dir"]) / "lr.joblib", slow_model(models)
    prometheus = PrometheusPod(cluster, namespace)  # scrapes the pods' http port, attaching rollout_version
    by_prometheus = {**ANALYSIS, "source": "prometheus", "prometheus": {"address": prometheus.address, "timeout": "2s"}}
    s = Scenario(cluster, namespace, "iris")
    s.apply(kserve_rollout(s.name, "1", good))
    s.wait_phase("Healthy", 120)
    with Traffic(s.service_url(), s.name, models["holdout"], burst=1, rate=20) as traffic:
        # Given kserve serving version 1, when version 2 (the same good model) rolls out, then it is promoted
        # with the latency check passed on kserve's predict histogram scraped from the pods.
        s.apply(kserve_rollout(s.name, "2", good))
        promoted = s.wait_phase("Healthy", 240)
        good_stats = traffic.stats
    assert promoted["stableVersion"] == "2", promoted.get("message")
    assert "Pass" in verdicts(s, "slow-requests"), s.seen[-1]
    # kserve names no version in its answers (model_version null): all answers count under "None".
    answered = good_stats.by_version["None"]
    assert answered.ok > 60 and not [c for c in good_stats.statuses if c >= 500], good_stats.explain()
    # A slow version blocks kserve's event loop for 0.3 s per request (a synchronous predict, as
    # sklearnserver's), so its pod can take about 3 requests a second: a light load keeps it answering.
    with Traffic(s.service_url(), s.name, models["holdout"], burst=1, rate=4) as traffic:
        # When version 3 takes 0.3 s per prediction, judged this time on kserve's histogram in Prometheus
        # (selected by the rollout_version target label), then it is rolled back on latency.
        s.apply(kserve_rollout(s.name, "3", slow, by_prometheus, env={"PYTHONPATH": str(SLOW_STEP_DIR)}))
        rolled_back = s.wait_phase("RolledBack", 240)
        slow_stats = traffic.stats
    assert rolled_back["stableVersion"] == "2" and rolled_back.get("rejectedVersion") == "3", rolled_back
    assert "slow-requests" in (rolled_back.get("message") or ""), rolled_back.get("message")
    print("rolled back:", rolled_back.get("message"), slow_stats.explain())
    # The users saw it too: some answers took the slow model's time.
    assert max(slow_stats.by_version["None"].latencies) >= SLOW_SECONDS, slow_stats.explain()
    # Prometheus saw version 3's slow predicts in kserve's histogram above 0.25 s (its pods are gone by now).
    slow_predicts = prometheus.query(
        f'max_over_time(request_predict_seconds_count{{namespace="{namespace}",rollout_version="3"}}[10m])'
        f' - on(pod) max_over_time(request_predict_seconds_bucket{{namespace="{namespace}",rollout_version="3",'
        f'le="0.25"}}[10m])')
    assert slow_predicts and sum(float(x["value"][1]) for x in slow_predicts) > 0, slow_predicts


def test_kserve_example_is_promoted_as_written(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any],
        examples: PublishedExamples) -> None:  # noqa: F811
    kserve_python()
    example = yaml.safe_load(EXAMPLE.read_text())
    assert examples.served["rf.joblib"] == example["spec"]["model"]["digest"]  # the committed digest is real
    # Given the example model store and version 1 served by the same predictor (the example with version 1
    # and lr.joblib: the preset reads both versions' pods)
    first = copy.deepcopy(example)
    first["spec"]["model"].update(version="1", uri="http://model-store/lr.joblib", digest=examples.served["lr.joblib"])
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(first))
    s = Scenario(cluster, namespace, example["metadata"]["name"])
    s.wait_phase("Healthy", 120)
    with Traffic(s.service_url(), example["spec"]["model"]["name"], models["holdout"], burst=1, rate=20) as traffic:
        # When the example is applied as written (its model URI resolved by the cluster DNS)
        examples.apply(EXAMPLE.name)
        promoted = s.wait_phase("Healthy", 240)
        stats = traffic.stats
    # Then version 2 is promoted, its latency check having passed on kserve's histogram
    assert promoted["stableVersion"] == "2", promoted.get("message")
    assert "Pass" in verdicts(s, "slow-requests"), s.seen[-1]
    assert stats.by_version["None"].ok > 50 and not [code for code in stats.statuses if code >= 500], stats.explain()


def test_error_rate_with_the_kserve_preset_needs_the_users_promql(
        cluster: ClusterHandle, namespace: str, apply_crds: None, models: dict[str, Any]) -> None:
    api = kubernetes.client.CustomObjectsApi(cluster.api)
    good = Path(models["dir"]) / "lr.joblib"
    error_rate = {"name": "error-rate", "type": "errorRate", "max": 0.01}
    # Given a kserve-served model, when errorRate is asked of the pods' metrics, then the apiserver refuses it
    # naming the field: kserve times failed predicts like good ones and counts no errors.
    with pytest.raises(kubernetes.client.ApiException) as refused:
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, kserve_rollout(
            "scraped", "1", good, {**ANALYSIS, "metrics": [error_rate]}))
    assert refused.value.status == 422 and "spec.analysis.metrics[].type: errorRate needs errors" in \
        refused.value.body, refused.value.body
    # When the user's Prometheus queries give requests and errors (e.g. from an ingress's status codes),
    # then the same rollout is admitted.
    count = 'sum(increase(http_requests_total{{code=~"{codes}",version="{{{{version}}}}"}}[{{{{interval}}}}]))'
    with_queries = {**ANALYSIS, "metrics": [error_rate], "source": "prometheus", "prometheus": {
        "address": "http://prometheus.monitoring:9090",
        "queries": {"requests": count.format(codes=".*"), "errors": count.format(codes="5..")}}}
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                        kserve_rollout("queried", "1", good, with_queries))
