"""The examples as a user runs them: every manifest passes the apiserver's validation, the model store
from publish.py trains and serves the models with the digests the examples carry, and the canary
example is promoted under traffic from traffic.py.

Model URIs are used as written (`http://model-store/...`): the local cluster's DNS resolves Service
names as kind's does.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from localcluster.testing import wait_until
from tests.conftest import ROOT, ClusterHandle
from tests.e2e.gateway import Gateway
from tests.e2e.prometheus import PrometheusPod
from tests.e2e.rollouts import OperatorProcess, Scenario
from tests.e2e.test_chart import Release, local_operator_paused  # noqa: F401 - a fixture used below

pytestmark = pytest.mark.e2e

EXAMPLES = ROOT / "examples"
PUBLISH = EXAMPLES / "models" / "publish.py"
ROLLOUTS = ("baseline.yaml", "canary.yaml", "bad-model.yaml", "blue-green.yaml", "prometheus-canary.yaml",
            "validation-gate.yaml", "shadow.yaml", "ab-test.yaml", "ab-test-revenue.yaml", "drift-watch.yaml",
            "drift-retrain.yaml")
# Other servers: their version 1 must be served the same way, so tests/e2e/test_mlserver.py and
# test_kserve.py roll these out as written after such a version 1.
OTHER_SERVERS = ("mlserver-canary.yaml", "kserve-canary.yaml")


def publish(*args: str) -> str:
    return subprocess.run([sys.executable, str(PUBLISH), *args], check=True, capture_output=True, text=True).stdout


def dry_run(cluster: ClusterHandle, namespace: str, manifest: str) -> str:
    out = cluster.cluster.kubectl("apply", "--server-side", "--dry-run=server", "-n", namespace, "-f", "-",
                                  input=manifest, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout


def start_store(cluster: ClusterHandle, namespace: str) -> str:
    """Apply publish.py's model store and wait until it serves; return its base URL (cluster IP)."""
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=publish("store"))
    ip = kubernetes.client.CoreV1Api(cluster.api).read_namespaced_service("model-store", namespace).spec.cluster_ip
    url = f"http://{ip}"

    def manifest_served() -> bool:
        with urllib.request.urlopen(f"{url}/manifest.json", timeout=2) as response:
            return response.status == 200

    wait_until(manifest_served, 60, "the model store to train and serve the models", interval=1)
    return url


def test_every_example_manifest_passes_server_side_dry_run(cluster: ClusterHandle, namespace: str,
                                                           apply_crds: None) -> None:
    for name in ROLLOUTS + OTHER_SERVERS:
        assert "modelrollout.modelrollout.dev/fraud serverside-applied" in dry_run(
            cluster, namespace, (EXAMPLES / name).read_text()), name
    applied = dry_run(cluster, namespace, publish("store") + "---\n" + publish("traffic", "--service", "fraud",
                                                                               "--model", "fraud"))
    for obj in ("configmap/model-store-scripts", "deployment.apps/model-store", "service/model-store",
                "deployment.apps/traffic-fraud"):
        assert obj in applied, applied


class PublishedExamples:
    """The model store from publish.py in a namespace, and the examples applied as a user does."""

    def __init__(self, cluster: ClusterHandle, namespace: str, manifest: Path) -> None:
        self.cluster, self.namespace = cluster, namespace
        self.store = start_store(cluster, namespace)
        with urllib.request.urlopen(f"{self.store}/manifest.json", timeout=5) as response:
            self.served = {e["file"]: e["digest"] for e in json.load(response)}
        self.manifest = manifest
        manifest.write_text(json.dumps([{"file": f, "digest": d} for f, d in self.served.items()]))

    def apply(self, name: str) -> None:
        # As written: the model URIs name the model-store Service, resolved by cluster DNS.
        rendered = publish("render", str(EXAMPLES / name), "--manifest", str(self.manifest))
        self.cluster.kubectl("apply", "-n", self.namespace, "-f", "-", input=rendered)

    @contextlib.contextmanager
    def traffic(self, service_url: str, seconds: int) -> Iterator[list[str]]:
        """traffic.py against the Service for the block; yields a list that receives its output lines."""
        lines: list[str] = []
        proc = subprocess.Popen(
            [sys.executable, str(EXAMPLES / "models" / "traffic.py"), "--url", service_url, "--model", "fraud",
             "--holdout", f"{self.store}/holdout-classification.json", "--rate", "40", "--seconds", str(seconds),
             "--report", "5"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            yield lines
        finally:
            proc.terminate()
            lines.extend(proc.communicate(timeout=30)[0].splitlines())


@pytest.fixture
def examples(cluster: ClusterHandle, namespace: str, tmp_path: Path) -> PublishedExamples:
    return PublishedExamples(cluster, namespace, tmp_path / "manifest.json")


def test_canary_example_is_promoted_with_the_published_models(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, examples: PublishedExamples) -> None:
    # Given the model store from publish.py, serving what it trained in its pod
    for name in ROLLOUTS:  # the committed digests are the real ones (pinned library versions)
        model = yaml.safe_load((EXAMPLES / name).read_text())["spec"]["model"]
        assert examples.served[model["uri"].rsplit("/", 1)[1]] == model["digest"], name
    holdout = yaml.safe_load((EXAMPLES / "validation-gate.yaml").read_text())["spec"]["validation"]["data"]
    with urllib.request.urlopen(holdout["url"].replace("http://model-store", examples.store), timeout=5) as response:
        assert hashlib.sha256(response.read()).hexdigest() == holdout["sha256"]

    # When the baseline runs and the canary example is applied under traffic from traffic.py
    s = Scenario(cluster, namespace, "fraud")
    examples.apply("baseline.yaml")
    s.wait_phase("Healthy", 60)
    # Traffic lasts as long as the wait: on a loaded machine the example's steps take over 80 s.
    with examples.traffic(s.service_url(), seconds=180) as output:
        examples.apply("canary.yaml")
        final = s.wait_phase("Healthy", 180)

    # Then version 2 is stable, every check passed, and the traffic saw both versions answer
    assert final["stableVersion"] == "2" and "canaryVersion" not in final, final
    progress = [ln for ln in output if "v2 ok=" in ln]
    assert progress and "v1 ok=" in progress[-1], output[-40:]
    assert all(n == "0" for n in re.findall(r"failed=(\d+)", progress[-1])), progress[-1]
    accuracy = [st for st in s.seen if any(r.get("name") == "accuracy" and r.get("verdict") == "Pass"
                                           for r in (st.get("analysis") or {}).get("results") or [])]
    assert accuracy, "the accuracy check (feedback labels) never passed"


def test_bad_model_is_rolled_back_and_blue_green_is_promoted_from_the_examples(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, examples: PublishedExamples) -> None:
    s = Scenario(cluster, namespace, "fraud")
    examples.apply("baseline.yaml")
    s.wait_phase("Healthy", 60)
    with examples.traffic(s.service_url(), seconds=170) as output:
        examples.apply("bad-model.yaml")
        rejected = s.wait_phase("RolledBack", 90)
        examples.apply("blue-green.yaml")
        promoted = s.wait_phase("Healthy", 90)
    assert rejected["rejectedVersion"] == "3" and "accuracy" in rejected["message"], rejected["message"]
    assert promoted["stableVersion"] == "2", promoted
    assert any(reason == "Switched" for _, reason, _ in s.events()), s.events()
    progress = [ln for ln in output if "ok=" in ln]
    assert progress and "v2 ok=" in progress[-1], output[-40:]


def test_shadow_example_runs_version_2_unseen_then_promotes_it(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, examples: PublishedExamples) -> None:
    # Given the baseline under traffic.py's requests and labels
    s = Scenario(cluster, namespace, "fraud")
    examples.apply("baseline.yaml")
    s.wait_phase("Healthy", 60)
    with examples.traffic(s.service_url(), seconds=240) as output:
        # When the shadow example is applied as written
        examples.apply("shadow.yaml")
        final = s.wait_phase("Healthy", 240)
    # Then version 2 passed its shadow stage (both checks), then its canary, and is stable
    assert final["stableVersion"] == "2" and final["shadow"]["stage"] == "Passed", final
    verdicts = {r["name"]: r["verdict"] for r in final["shadow"]["results"]}
    assert verdicts == {"agreement": "Pass", "paired-accuracy": "Pass"}, final["shadow"]
    shadowing = [st for st in s.seen if (st.get("shadow") or {}).get("stage") == "Mirroring"]
    assert shadowing and all(st.get("desiredWeight", 0) == 0 for st in shadowing)
    progress = [ln for ln in output if "v2 ok=" in ln]
    assert progress and all(n == "0" for n in re.findall(r"failed=(\d+)", progress[-1])), output[-40:]


def _ended(st: dict[str, Any]) -> dict[str, Any] | None:
    """The status once version 2's experiment ended (promoted, or rolled back keeping version 1)."""
    ended = st.get("phase") == "RolledBack" or (st.get("phase") == "Healthy" and st.get("stableVersion") == "2")
    return st if ended else None


def test_ab_test_example_runs_an_experiment_to_its_end(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, examples: PublishedExamples) -> None:
    # Given the baseline under traffic.py's requests and labels
    s = Scenario(cluster, namespace, "fraud")
    examples.apply("baseline.yaml")
    s.wait_phase("Healthy", 60)
    with examples.traffic(s.service_url(), seconds=300) as output:
        # When the A/B example is applied as written
        examples.apply("ab-test.yaml")
        final = wait_until(lambda: _ended(s.status()), 300, "the experiment to end", interval=1,
                           describe=s.describe)
    # Then both arms served and were judged, and the outcome is the one the assessment names
    ab = final["abTest"]
    assert ab["version"] == "2" and min(ab["arms"]["A"]["samples"], ab["arms"]["B"]["samples"]) > 0, ab
    assert any(st.get("reason") == "Experimenting" and st.get("desiredWeight") == 50 for st in s.seen)
    if ab["winner"] == "B":
        assert final["stableVersion"] == "2" and final["history"][-1]["reason"] == "ABTestWinner", final
    else:
        assert final["stableVersion"] == "1" and final["reason"] in ("ABTestNoWinner", "ABTestLost"), final
        assert "always-valid interval" in final["message"], final["message"]
    progress = [ln for ln in output if "v2 ok=" in ln]
    assert progress and all(n == "0" for n in re.findall(r"failed=(\d+)", progress[-1])), output[-40:]


@pytest.fixture
def monitoring(cluster: ClusterHandle, namespace: str) -> Iterator[PrometheusPod]:
    """The example's Prometheus: namespace monitoring, scraping the test's namespace, as the example says."""
    core = kubernetes.client.CoreV1Api(cluster.api)
    core.create_namespace({"metadata": {"name": "monitoring"}})
    wait_until(lambda: core.read_namespaced_service_account("default", "monitoring"), 30, "default SA in monitoring")
    try:
        yield PrometheusPod(cluster, "monitoring", scrape_namespace=namespace)
    finally:
        core.delete_namespace("monitoring")
        wait_until(lambda: "monitoring" not in {n.metadata.name for n in core.list_namespace().items}, 90,
                   "namespace monitoring to be deleted")


def test_prometheus_canary_example_is_promoted_by_the_charts_operator(
        cluster: ClusterHandle, namespace: str, apply_crds: None, local_operator_paused: None,  # noqa: F811
        examples: PublishedExamples, monitoring: PrometheusPod) -> None:
    # Given the chart's operator (a pod, resolving the example's Prometheus address by cluster DNS),
    # the Prometheus of namespace monitoring scraping this namespace, and the baseline under traffic
    release = Release(cluster, "mr", namespace)
    release.install("rbac.namespaced=true", f"watchNamespaces={{{namespace}}}")
    try:
        release.wait_ready()
        s = Scenario(cluster, namespace, "fraud")
        examples.apply("baseline.yaml")
        s.wait_phase("Healthy", 60)
        with examples.traffic(s.service_url(), seconds=120):
            # When the Prometheus example is applied as written
            examples.apply("prometheus-canary.yaml")
            final = s.wait_phase("Healthy", 120)
    finally:
        logs = release.log()
        release.uninstall()
    # Then version 2 is promoted, each check having passed on counts from Prometheus
    assert final["stableVersion"] == "2" and "canaryVersion" not in final, final
    passed = {r["name"] for st in s.seen for r in (st.get("analysis") or {}).get("results") or []
              if r.get("verdict") == "Pass"}
    assert passed == {"error-rate", "slow-requests", "accuracy"}, s.seen[-1]
    assert monitoring.query(f'modelserver_requests_total{{namespace="{namespace}",version="2"}}')
    assert "forbidden" not in logs.lower(), logs[-3000:]


def test_gateway_example_is_promoted_through_a_real_gateway(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, examples: PublishedExamples,
        gateway: Gateway) -> None:
    # Given version 1 from the baseline example and a Gateway named `web` (Traefik), as the example asks
    for example in ("gateway-canary.yaml", "ab-test-sticky.yaml"):
        applied = dry_run(cluster, namespace, (EXAMPLES / example).read_text())
        assert "httproute.gateway.networking.k8s.io/fraud serverside-applied" in applied, example
        assert "modelrollout.modelrollout.dev/fraud serverside-applied" in applied, example
    s = Scenario(cluster, namespace, "fraud")
    examples.apply("baseline.yaml")
    s.wait_phase("Healthy", 60)
    # When the gateway example is applied as written, under traffic.py through the gateway
    with examples.traffic(gateway.url, seconds=150) as output:
        examples.apply("gateway-canary.yaml")
        wait_until(lambda: gateway.weights("fraud").get("fraud-canary") == 5, 90, "the route at 5%",
                   describe=s.describe)
        final = s.wait_phase("Healthy", 150)
    # Then version 2 is stable, every request was answered and the route is back on Service fraud alone
    assert final["stableVersion"] == "2" and final["trafficRouter"] == "gatewayAPI", final
    progress = [ln for ln in output if "v2 ok=" in ln]
    assert progress and "v1 ok=" in progress[-1], output[-40:]
    assert all(n == "0" for n in re.findall(r"failed=(\d+)", progress[-1])), progress[-1]
    wait_until(lambda: gateway.weights("fraud") == {"fraud": 100, "fraud-canary": 0}, 30, "the route at 0%")
