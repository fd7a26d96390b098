"""`make demo`: the whole product on the built-in local cluster, in a few minutes.

1. start the local cluster and `helm install` the operator chart (the operator runs as a pod under
   the chart's ServiceAccount and RBAC);
2. train the example models and publish them from a model-store pod;
3. deploy version 1, start traffic with delayed ground-truth feedback;
4. roll out version 2 (the same quality, skops format) on a canary: it is promoted;
5. roll out version 3 (trained on shuffled labels): its accuracy from the feedback labels is far
   lower, and it is rolled back;
6. print a summary; exit 0 only if both outcomes happened.

A live view shows versions, desired vs effective weight, per-version request rate, error rate,
p99 latency, accuracy and the operator's events.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import kubernetes

from localcluster.binaries import binary
from localcluster.cluster import LocalCluster
from localcluster.modeltraffic import ModelTraffic
from localcluster.testing import wait_until

ROOT = Path(__file__).resolve().parents[2]
NS, NAME = "demo", "fraud"
GROUP, VERSION, PLURAL = "modelrollout.dev", "v1alpha1", "modelrollouts"
ANALYSIS = {
    "interval": "3s", "minSamples": 100, "minExposure": "6s", "failureLimit": 2, "inconclusiveLimit": 40,
    "metrics": [
        {"name": "error-rate", "type": "errorRate", "margin": 0.01},
        {"name": "latency-p99", "type": "latency", "quantile": 0.99, "maxRatioToStable": 3.0},
        {"name": "accuracy", "type": "accuracy", "margin": 0.05},
    ],
}
STEPS = [{"setWeight": 25}, {"pause": {"duration": "10s"}}, {"setWeight": 50}, {"pause": {"duration": "10s"}},
         {"setWeight": 100}]


def say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def helm_install(cluster: LocalCluster) -> None:
    say("installing the operator with Helm (charts/modelrollout)")
    done = subprocess.run([str(binary("helm")), "--kubeconfig", str(cluster.kubeconfig), "install", "modelrollout",
                           str(ROOT / "charts" / "modelrollout"), "--namespace", "modelrollout-system",
                           "--create-namespace", "--wait", "--timeout", "120s"], capture_output=True, text=True)
    if done.returncode != 0:
        pods = cluster.kubectl("get", "pods", "-n", "modelrollout-system", "-o", "wide", check=False).stdout
        raise SystemExit(f"helm install failed:\n{done.stdout}{done.stderr}\n{pods}")
    say("operator pod is Ready")


Models = dict[tuple[str, str], dict[str, Any]]  # (name, format) -> manifest entry


def publish_models(api: kubernetes.client.ApiClient, workdir: Path) -> tuple[Models, dict[str, Any], str]:
    sys.path.insert(0, str(ROOT / "examples" / "models"))
    from train import train_all

    out = workdir / "models"
    say(f"training the example models into {out}")
    entries = {(m["name"], m["format"]): m for m in train_all(out)}
    holdout = json.loads((out / "holdout-classification.json").read_text())
    core, apps = kubernetes.client.CoreV1Api(api), kubernetes.client.AppsV1Api(api)
    core.create_namespace({"metadata": {"name": NS}})
    wait_until(lambda: core.read_namespaced_service_account("default", NS), 30, "namespace demo")
    labels = {"app": "model-store"}
    apps.create_namespaced_deployment(NS, {"metadata": {"name": "model-store"}, "spec": {
        "replicas": 1, "selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": {
            "containers": [{"name": "files", "image": "localcluster/python:demo",
                            "args": ["-m", "http.server", "8080", "--bind", "$(POD_IP)", "--directory", str(out)],
                            "ports": [{"containerPort": 8080, "name": "http"}],
                            "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 1}}]}}}})
    core.create_namespaced_service(NS, {"metadata": {"name": "model-store"}, "spec": {
        "selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})
    store = f"http://model-store.{NS}.svc.cluster.local"
    say(f"model store serves {len(entries)} model files at {store}")
    return entries, holdout, store


def rollout(version: str, model: dict[str, Any], store: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelRollout", "metadata": {"name": NAME, "namespace": NS},
            "spec": {"replicas": 4, "model": {"name": NAME, "version": version, "uri": f"{store}/{model['file']}",
                                              "digest": model["digest"]},
                     "serving": {"image": "ghcr.io/modelrollout/modelserver:0.1.0"},
                     "service": {"name": NAME, "port": 80}, "strategy": {"canary": {"steps": STEPS}},
                     "analysis": ANALYSIS}}


class View:
    """The live terminal view (redrawn in place on a terminal, a line every few seconds otherwise)."""

    def __init__(self, api: kubernetes.client.ApiClient, traffic: ModelTraffic, tty: bool) -> None:
        self.custom = kubernetes.client.CustomObjectsApi(api)
        self.core = kubernetes.client.CoreV1Api(api)
        self.traffic, self.tty = traffic, tty
        self.last_plain = 0.0

    def status(self) -> dict[str, Any]:
        obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, NAME)
        return dict(obj.get("status") or {})

    def _versions(self) -> list[str]:
        now = time.monotonic()
        lines = [f"{'version':>8} {'req/s':>7} {'errors':>7} {'p99 ms':>7} {'accuracy':>9}"]
        for version, stats in sorted(self.traffic.stats.by_version.items()):
            recent = [t for t, v, _ in self.traffic.stats.timeline[-2000:] if v == version and t > now - 5]
            answered = stats.ok + stats.failed
            p99 = statistics.quantiles(stats.latencies[-500:], n=100)[98] * 1000 if len(stats.latencies) > 2 else 0
            accuracy = f"{stats.correct / stats.ok:.1%}" if stats.ok else "-"
            lines.append(f"{version:>8} {len(recent) / 5:>7.1f} {stats.failed / max(answered, 1):>7.1%} "
                         f"{p99:>7.1f} {accuracy:>9}")
        return lines

    def render(self) -> None:
        st = self.status()
        head = (f"phase {st.get('phase')} ({st.get('reason', '')})  stable v{st.get('stableVersion')}  "
                f"canary v{st.get('canaryVersion', '-')}  weight desired {st.get('desiredWeight', '-')}% / "
                f"effective {st.get('effectiveWeight', '-')}%")
        if not self.tty:
            if time.monotonic() - self.last_plain >= 5:
                self.last_plain = time.monotonic()
                say(head)
            return
        results = (st.get("analysis") or {}).get("results", [])
        verdicts = [f"  {r['verdict']:<12} {r.get('message', '')}" for r in results]
        events = self.core.list_namespaced_event(NS, field_selector=f"involvedObject.name={NAME}").items
        events.sort(key=lambda e: (e.first_timestamp or 0, e.metadata.name))
        log = [f"  {e.type:<8} {e.reason:<16} {e.message[:110]}" for e in events[-8:]]
        screen = ["modelrollout demo - ModelRollout demo/fraud", "", head, f"message: {st.get('message', '')}", "",
                  *self._versions(), "", "analysis:", *verdicts, "", "events:", *log]
        sys.stdout.write("\x1b[H\x1b[2J" + "\n".join(screen) + "\n")
        sys.stdout.flush()


def reached(st: dict[str, Any], version: str, phases: tuple[str, ...]) -> bool:
    """Whether the rollout settled on `version`: promoted (Healthy, stable) or rejected (RolledBack)."""
    if st.get("phase") not in phases:
        return False
    if st["phase"] == "RolledBack":
        return st.get("rejectedVersion") == version
    return st.get("stableVersion") == version


async def watch_until(view: View, version: str, phases: tuple[str, ...], timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view.render()
        st = await asyncio.to_thread(view.status)
        if reached(st, version, phases):
            return st
        await asyncio.sleep(1)
    raise TimeoutError(f"version {version} did not reach {phases} in {timeout:.0f}s")


async def run_rollouts(api: kubernetes.client.ApiClient, models: Models, holdout: dict[str, Any],
                       store: str, tty: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    custom = kubernetes.client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, rollout("1", models[("lr", "joblib")], store))
    say("version 1 (LogisticRegression, joblib) deploying")
    service_ip = wait_until(lambda: kubernetes.client.CoreV1Api(api).read_namespaced_service(NAME, NS).spec.cluster_ip,
                            60, "the fraud Service")
    traffic = ModelTraffic(f"http://{service_ip}", NAME, holdout["X"], holdout["y"], rate=60, clients=12, burst=3)
    view = View(api, traffic, tty)
    await watch_until(view, "1", ("Healthy",), 120)
    stop = asyncio.Event()
    load = asyncio.ensure_future(traffic.run(stop, max_seconds=900))
    say("traffic started: 60 requests/s with delayed feedback labels")

    def apply(version: str, model: dict[str, Any]) -> None:
        obj = custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, NAME)
        obj["spec"] = rollout(version, model, store)["spec"]
        custom.replace_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, NAME, obj)

    apply("2", models[("lr", "skops")])
    say("version 2 (the same quality, skops format) rolling out on a 25% -> 50% -> 100% canary")
    good = await watch_until(view, "2", ("Healthy", "RolledBack"), 300)
    apply("3", models[("lr-bad", "joblib")])
    say("version 3 (trained on shuffled labels) rolling out")
    bad = await watch_until(view, "3", ("RolledBack", "Healthy"), 300)
    stop.set()
    await load
    view.render()
    return good, {**bad, "_traffic": traffic.stats}


def summary(good: dict[str, Any], bad: dict[str, Any]) -> bool:
    stats = bad["_traffic"]
    promoted = good.get("phase") == "Healthy" and good.get("stableVersion") == "2"
    rolled_back = bad.get("phase") == "RolledBack" and bad.get("stableVersion") == "2"
    print("\n=== summary ===")
    print(f"version 2 (good): {'PROMOTED' if promoted else 'NOT promoted: ' + str(good.get('message'))}")
    print(f"version 3 (bad):  {'ROLLED BACK' if rolled_back else 'NOT rolled back: ' + str(bad.get('message'))}")
    print(f"  why: {bad.get('message')}")
    for version, s in sorted(stats.by_version.items()):
        print(f"  v{version}: {s.ok} answered, {s.failed} failed, accuracy {s.correct / max(s.ok, 1):.1%}")
    print(f"  transport errors: {sum(stats.transport_errors.values())}")
    return promoted and rolled_back


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plain", action="store_true", help="no live redraw (CI logs)")
    args = parser.parse_args()
    tty = sys.stdout.isatty() and not args.plain
    workdir = Path(tempfile.mkdtemp(prefix="modelrollout-demo-"))
    say("starting the local cluster (control plane, node, service proxy)")
    with LocalCluster(workdir / "cluster") as cluster:
        api = cluster.api_client()
        cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        helm_install(cluster)
        models, holdout, store = publish_models(api, workdir)
        good, bad = asyncio.run(run_rollouts(api, models, holdout, store, tty))
        ok = summary(good, bad)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
