"""Given / When / Then helpers and fixtures for ModelRollout scenarios on the local cluster."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from localcluster.demoview import event_time
from localcluster.modeltraffic import ModelTraffic, Outcome, TrafficStats
from localcluster.testing import wait_until
from tests.conftest import ROOT, ClusterHandle

GROUP, VERSION, PLURAL = "modelrollout.dev", "v1alpha1", "modelrollouts"
SERVING_IMAGE = "ghcr.io/modelrollout/modelserver:0.1.0"
# The same server wrapped by the test-only fault injection (serving/modelserver_testing): versions that fail.
FAULTY_SERVING_IMAGE = "ghcr.io/modelrollout/modelserver-testing:0.1.0"


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The example models (trained deterministically) and the held-out rows for traffic."""
    out = tmp_path_factory.mktemp("models")
    subprocess.run([sys.executable, str(ROOT / "examples" / "models" / "train.py"), str(out)], check=True,
                   capture_output=True)
    manifest = json.loads((out / "manifest.json").read_text())
    holdout = json.loads((out / "holdout-classification.json").read_text())
    entries = manifest["models"] if isinstance(manifest, dict) and "models" in manifest else manifest
    return {"dir": out, "models": {m["name"] + ("-skops" if m["format"] == "skops" else ""): m for m in entries},
            "holdout": holdout}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OperatorProcess:
    """The operator as a real process (admin kubeconfig): started once, restartable by tests."""

    def __init__(self, kubeconfig: Path, log_dir: Path, extra_args: Sequence[str] = ()) -> None:
        self.kubeconfig, self.log_dir, self.extra_args = kubeconfig, log_dir, list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.health = ""
        self.metrics_port = 0

    def start(self) -> None:
        self.starts += 1
        log = open(self.log_dir / f"operator-{self.starts}.log", "wb")  # noqa: SIM115 - owned by the child
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig))
        self.health = f"http://127.0.0.1:{_free_port()}"
        self.metrics_port = _free_port()  # its /metrics, as a user's Prometheus would scrape it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "modelrollout", "--metrics-port", str(self.metrics_port),
             "--metrics-address", "127.0.0.1", "--liveness", f"{self.health}/healthz", *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, env=env)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)

    def probe(self, path: str) -> int:
        """HTTP status of a health endpoint (0: not answering)."""
        try:
            with urllib.request.urlopen(f"{self.health}{path}", timeout=2) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return 0

    def logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("operator-*.log")))


@pytest.fixture(scope="session")
def operator(cluster: ClusterHandle, apply_crds: None,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(cluster.kubeconfig, tmp_path_factory.mktemp("operator"))
    proc.start()
    yield proc
    proc.kill()


@pytest.fixture
def model_store(cluster: ClusterHandle, namespace: str, models: dict[str, Any]) -> str:
    """A pod serving the model files over HTTP behind Service `model-store`; returns its base URL."""
    labels = {"app": "model-store"}
    apps, core = kubernetes.client.AppsV1Api(cluster.api), kubernetes.client.CoreV1Api(cluster.api)
    apps.create_namespaced_deployment(namespace, {
        "metadata": {"name": "model-store"},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{
                "name": "files", "image": "localcluster/python:test",
                "args": ["-m", "http.server", "8080", "--bind", "$(POD_IP)", "--directory", str(models["dir"])],
                "ports": [{"containerPort": 8080, "name": "http"}],
                "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 1}}]}}}})
    core.create_namespaced_service(namespace, {"metadata": {"name": "model-store"}, "spec": {
        "selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})
    # Resolved by the cluster DNS inside the pods' namespace, as on any cluster.
    return "http://model-store"


def make_rollout(name: str, version: str, model: dict[str, Any], store: str, *, replicas: int = 4,
                 steps: list[dict[str, Any]] | None = None, blue_green: dict[str, Any] | None = None,
                 analysis: dict[str, Any] | None = None, env: dict[str, str] | None = None,
                 faults: dict[str, str] | None = None) -> dict[str, Any]:
    """`faults`: MODELSERVER_CHAOS_* variables; the version then runs the fault-injecting test image."""
    strategy = {"blueGreen": blue_green} if blue_green is not None else {"canary": {"steps": steps or [
        {"setWeight": 25}, {"pause": {"duration": "4s"}}, {"setWeight": 50}, {"pause": {"duration": "4s"}},
        {"setWeight": 75}, {"pause": {"duration": "4s"}}, {"setWeight": 100}]}}
    spec: dict[str, Any] = {
        "replicas": replicas,
        "model": {"name": name, "version": version, "uri": f"{store}/{model['file']}", "digest": model["digest"],
                  # The test models are mostly joblib (reproducible digests): the explicit pickle opt-in.
                  "allowPickle": model["format"] == "joblib"},
        "serving": {"image": FAULTY_SERVING_IMAGE if faults else SERVING_IMAGE, "port": 8080,
                    "env": [{"name": k, "value": v} for k, v in {**(env or {}), **(faults or {})}.items()]},
        "service": {"name": name, "port": 80},
        "strategy": strategy,
    }
    if analysis is not None:
        spec["analysis"] = analysis
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelRollout", "metadata": {"name": name}, "spec": spec}


@dataclass
class Scenario:
    """One rollout under test: apply, watch, command, with readable waits."""

    cluster: ClusterHandle
    namespace: str
    name: str
    seen: list[dict[str, Any]] = field(default_factory=list)
    shares: list[float | None] = field(default_factory=list)  # canary share of ready pods at each look

    @property
    def api(self) -> kubernetes.client.CustomObjectsApi:
        return kubernetes.client.CustomObjectsApi(self.cluster.api)

    def apply(self, rollout: dict[str, Any]) -> None:
        try:
            current = self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.name)
            current["spec"] = rollout["spec"]
            self.api.replace_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.name, current)
        except kubernetes.client.ApiException as exc:
            if exc.status != 404:
                raise
            self.api.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, rollout)

    def get(self) -> dict[str, Any]:
        obj = self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.name)
        st = obj.get("status") or {}
        self.seen.append(st)
        self.shares.append(self._replica_share(st.get("canaryVersion")))
        return dict(obj)

    def _replica_share(self, canary: str | None) -> float | None:
        ready = {d.metadata.labels["modelrollout.dev/version"]: d.status.ready_replicas or 0
                 for d in self.deployments()}
        total = sum(ready.values())
        return None if not canary or not total else 100 * ready.get(canary, 0) / total

    def status(self) -> dict[str, Any]:
        return dict(self.get().get("status") or {})

    def describe(self) -> str:
        return self.cluster.kubectl("describe", "mro", self.name, "-n", self.namespace, check=False)

    def wait_phase(self, phase: str, timeout: float,
                   check: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            obj = self.get()
            st = dict(obj.get("status") or {})
            if check:
                check(st)
            current = st.get("observedGeneration") == obj["metadata"].get("generation")
            return st if current and st.get("phase") == phase else None

        return wait_until(probe, timeout, f"{self.name} to reach {phase}", interval=0.5, describe=self.describe)

    def command(self, command: str) -> None:
        out = subprocess.run([sys.executable, "-m", "modelrollout.cli", command, self.name, "-n", self.namespace,
                              "--kubeconfig", str(self.cluster.kubeconfig)], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr

    def deployments(self) -> list[Any]:
        apps = kubernetes.client.AppsV1Api(self.cluster.api)
        selector = f"modelrollout.dev/rollout={self.name}"
        return list(apps.list_namespaced_deployment(self.namespace, label_selector=selector).items)

    def pods(self, version: str) -> list[Any]:
        """The pods of one version of this rollout (not yet deleted)."""
        selector = f"modelrollout.dev/rollout={self.name},modelrollout.dev/version={version}"
        items = kubernetes.client.CoreV1Api(self.cluster.api).list_namespaced_pod(self.namespace,
                                                                                  label_selector=selector).items
        return [p for p in items if p.metadata.deletion_timestamp is None]

    def events(self) -> list[tuple[str, str, str]]:
        core = kubernetes.client.CoreV1Api(self.cluster.api)
        items = core.list_namespaced_event(self.namespace, field_selector=f"involvedObject.name={self.name}").items
        items.sort(key=lambda e: (event_time(e), e.metadata.name))  # Events carry different timestamps
        return [(e.type, e.reason, e.message) for e in items]

    def service_url(self) -> str:
        svc = kubernetes.client.CoreV1Api(self.cluster.api).read_namespaced_service(self.name, self.namespace)
        return f"http://{svc.spec.cluster_ip}:{svc.spec.ports[0].port}"


class Traffic:
    """Continuous traffic (with feedback labels) in a background thread's event loop."""

    def __init__(self, url: str, model: str, holdout: dict[str, Any], rate: float = 80, burst: int = 3,
                 abort_fraction: float = 0.0, headers: dict[str, str] | None = None,
                 outcome: Outcome | None = None) -> None:
        # Short bursts per connection: the Service balances connections, so fewer requests per
        # connection make the per-tick share less noisy.
        self.generator = ModelTraffic(url, model, holdout["X"], holdout["y"], rate=rate, clients=12, burst=burst,
                                      abort_fraction=abort_fraction, headers=headers, outcome=outcome)
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread: Any = None
        self.started = time.monotonic()

    def __enter__(self) -> Traffic:
        import threading

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self.generator.run(self._stop, max_seconds=600))

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        return self

    @property
    def stats(self) -> TrafficStats:
        return self.generator.stats

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
