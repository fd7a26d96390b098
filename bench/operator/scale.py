"""The operator at scale, with simulated nodes and pods (issue 16 item 4): `make bench-operator`.

Real model servers for a thousand rollouts do not fit on two cores, so the pods are kwok's: on the local
cluster (run inside hack/in-netns) kwok manages K fake Nodes (annotation kwok.x-k8s.io/node=fake, label
type=kwok, a NoSchedule taint so nothing else lands there) and makes their pods Running and Ready with IPs
from 10.245.0.0/16. The local cluster has no scheduler (its process kubelet binds its own pods), so a small
binder here binds pods that select the fake nodes to them round-robin. That range is made local in the
namespace and one metrics simulator process (podsim.py) answers every fake pod IP in the model server's
format, so the operator's real code path - pod lists, scrapes of pod IPs, analysis, writes - runs unchanged.

Per N (ModelRollouts, each with its own Deployment pair, one operator process), with and without
--watch-cache: create all N and wait until all are Healthy, watch a settled minute, then move all N to a
new version (a canary with analysis of error rate and latency) and wait until all are promoted. Per phase:
the operator's CPU seconds per minute and RSS (/proc/<pid>), the lateness of scheduled ticks
(`modelrollout_tick_lateness_seconds`: due time to status write, p50/p99 interpolated in its buckets), the
time from each spec write to the operator's first status for it (observedGeneration, from a watch here),
and the operator's API requests per rollout per minute (`modelrollout_api_request_duration_seconds_count`;
kopf's own watch and its patches are not in it). Not a test: numbers go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import kubernetes
from run import GROUP, PLURAL, ROOT, VERSION, Series, breakdown, cpu_seconds, free_port, histograms

from localcluster import netns
from localcluster.cluster import LocalCluster
from localcluster.informer import run_informer
from localcluster.testing import wait_until

NS = "bench"
KWOK_CIDR = "10.245.0.0/16"  # kwok's pod IPs; the process kubelet's pods keep 10.244.0.0/16
FAKE = "kwok.x-k8s.io/node"  # kwok's own annotation and taint key for the nodes it fakes
NODE_LABEL = {"type": "kwok"}
SERVING_PORT = 8080
LATENESS = "modelrollout_tick_lateness_seconds"
RECONCILE = "modelrollout_reconcile_duration_seconds"
API = "modelrollout_api_request_duration_seconds"
ANALYSIS = {"interval": "5s", "minExposure": "10s", "minSamples": 200, "metrics": [
    {"name": "errors", "type": "errorRate", "max": 0.05, "margin": 0.02},
    {"name": "slow", "type": "latency", "thresholdSeconds": 0.1, "max": 0.02}]}
STEPS = [{"setWeight": 50}, {"pause": {"duration": "20s"}}, {"setWeight": 100}]


def kwok_install() -> tuple[Path, Path]:
    """The kwok binary and its stages file, built once into the cache by hack/build-kwok.sh."""
    out = subprocess.run([str(ROOT / "hack" / "build-kwok.sh")], check=True, capture_output=True, text=True)
    bin_dir = Path(out.stdout.strip().splitlines()[-1])
    return bin_dir / "kwok", bin_dir.parent / "stages.yaml"


def fake_node(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {**NODE_LABEL, "kubernetes.io/hostname": name},
                         "annotations": {FAKE: "fake"}},
            "spec": {"taints": [{"key": FAKE, "value": "fake", "effect": "NoSchedule"}]}}


def rollout(name: str, version: str) -> dict[str, Any]:
    # The model file is never fetched: simulated pods load nothing (podsim answers for them).
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelRollout", "metadata": {"name": name, "namespace": NS},
            "spec": {"replicas": 1,
                     "model": {"name": name, "version": version, "uri": f"http://model-store/{name}.skops",
                               "format": "skops"},
                     "serving": {"image": "ghcr.io/modelrollout/modelserver:0.1.0", "port": SERVING_PORT,
                                 "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                                 "podTemplate": {"spec": {
                                     "nodeSelector": NODE_LABEL,
                                     "tolerations": [{"key": FAKE, "operator": "Exists", "effect": "NoSchedule"}]}}},
                     "service": {"name": name, "port": 80},
                     "strategy": {"canary": {"steps": STEPS}}, "analysis": ANALYSIS}}


class Binder:
    """The scheduler the local cluster lacks, for the fake nodes only: round-robin Bindings."""

    def __init__(self, api: kubernetes.client.ApiClient, nodes: list[str]) -> None:
        self.core = kubernetes.client.CoreV1Api(api)
        self.nodes = itertools.cycle(nodes)
        self.pending: set[str] = set()
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="bind")

    def on_pod(self, event: str, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        if (event == "DELETED" or spec.get("nodeName") or meta.get("deletionTimestamp") or meta["uid"] in self.pending
                or (spec.get("nodeSelector") or {}).get("type") != NODE_LABEL["type"]):
            return
        self.pending.add(meta["uid"])
        self.pool.submit(self._bind, meta, next(self.nodes))

    def _bind(self, meta: dict[str, Any], node: str) -> None:
        body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": meta["name"], "uid": meta["uid"]},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        try:
            self.core.create_namespaced_pod_binding(meta["name"], meta["namespace"], body, _preload_content=False)
        except kubernetes.client.ApiException as exc:
            if exc.status not in (404, 409):
                self.pending.discard(meta["uid"])  # the informer's next resync retries it
                print(f"binding {meta['name']} failed: {exc.reason}", file=sys.stderr)


class StatusWatch:
    """When each rollout's status first showed a generation (observedGeneration), from a watch."""

    def __init__(self, api: kubernetes.client.CustomObjectsApi) -> None:
        self.api = api
        self.seen: dict[tuple[str, int], float] = {}
        self.stop = threading.Event()
        threading.Thread(target=self._run, daemon=True, name="status-watch").start()

    def _note(self, obj: dict[str, Any]) -> None:
        gen = (obj.get("status") or {}).get("observedGeneration")
        if gen is not None:
            self.seen.setdefault((obj["metadata"]["name"], int(gen)), time.monotonic())

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                listing = self.api.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL)
                for obj in listing["items"]:
                    self._note(obj)
                for event in kubernetes.watch.Watch().stream(
                        self.api.list_namespaced_custom_object, GROUP, VERSION, NS, PLURAL,
                        resource_version=listing["metadata"]["resourceVersion"], timeout_seconds=120):
                    self._note(event["object"])
            except Exception as exc:  # a broken or expired watch: list again
                print(f"status watch restarting: {exc}", file=sys.stderr)
                self.stop.wait(0.5)


def interpolated(before: dict[str, float], after: dict[str, float], q: float) -> float | str | None:
    """Prometheus's histogram_quantile over this phase's observations (linear within a bucket); None
    without observations; "> <highest finite bound>" when the quantile lies in +Inf."""
    total = after.get("_count", 0) - before.get("_count", 0)
    if total <= 0:
        return None
    bounds = sorted((k for k in after if not k.startswith("_")), key=lambda k: float(k.replace("+Inf", "inf")))
    low, below = 0.0, 0.0
    for le in bounds:
        count = after[le] - before.get(le, 0)
        if count >= q * total:
            if le == "+Inf":
                return f"> {low:g}"
            return round(low + (float(le) - low) * (q * total - below) / max(count - below, 1e-9), 3)
        low, below = float(le), count
    return None


def percentile(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2) if ordered else None


def rss_mib(pid: int) -> tuple[float, float]:
    """The process's resident memory now and at its peak (VmRSS, VmHWM), MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return (round(int(fields["VmRSS"].split()[0]) / 1024, 1), round(int(fields["VmHWM"].split()[0]) / 1024, 1))


def api_requests(series: Series) -> float:
    return sum(v.get("_count", 0) for k, v in series.items() if k.startswith(API + "{"))


class Measured:
    """The operator's numbers over one phase: what changed between two readings."""

    def __init__(self, metrics: str, pid: int, n: int) -> None:
        self.metrics, self.pid, self.n = metrics, pid, n
        self.before, self.cpu, self.started = histograms(metrics), cpu_seconds(pid), time.monotonic()

    def result(self) -> dict[str, Any]:
        after, wall = histograms(self.metrics), time.monotonic() - self.started
        cpu, (rss, peak) = cpu_seconds(self.pid) - self.cpu, rss_mib(self.pid)
        late_b, late_a = self.before.get(LATENESS, {}), after.get(LATENESS, {})
        rec_b, rec_a = self.before.get(RECONCILE, {}), after.get(RECONCILE, {})
        calls = api_requests(after) - api_requests(self.before)
        return {"wall_seconds": round(wall, 1), "cpu_seconds": round(cpu, 1),
                "cpu_seconds_per_minute": round(cpu / wall * 60, 1), "rss_mib": rss, "peak_rss_mib": peak,
                "scheduled_ticks": int(late_a.get("_count", 0) - late_b.get("_count", 0)),
                "tick_lateness_p50": interpolated(late_b, late_a, 0.5),
                "tick_lateness_p99": interpolated(late_b, late_a, 0.99),
                "ticks": int(rec_a.get("_count", 0) - rec_b.get("_count", 0)),
                "reconcile_p50": interpolated(rec_b, rec_a, 0.5), "reconcile_p99": interpolated(rec_b, rec_a, 0.99),
                "api_requests": int(calls), "api_requests_per_rollout_minute": round(calls / self.n / wall * 60, 2),
                "where_the_time_goes": breakdown(self.before, after)}


class Profile:
    """py-spy sampling the operator over one phase (--profile): collapsed stacks, one file per phase."""

    def __init__(self, out: Path | None, pid: int, name: str) -> None:
        self.proc = None if out is None else subprocess.Popen(
            # --gil: only the thread holding the GIL, i.e. where the CPU goes, not threads waiting on sockets.
            [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid), "--rate", "50", "--gil",
             "--format", "raw", "--output", str(out / f"{name}.txt")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def done(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)  # py-spy writes its file when interrupted
            self.proc.wait(60)


def start(argv: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)


def run(n: int, nodes: int, cache: bool, steady: float, workdir: Path, profile: Path | None) -> dict[str, Any]:
    kwok, stages = kwok_install()
    subprocess.run(["ip", "route", "replace", "local", KWOK_CIDR, "dev", "lo"], check=True)
    cluster = LocalCluster(workdir).start()
    children: list[subprocess.Popen[bytes]] = []
    stop = threading.Event()
    try:
        env = dict(os.environ, KUBECONFIG=str(cluster.kubeconfig))
        cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        cluster.wait_crds_established()
        cluster.kubectl("create", "namespace", NS)
        api = cluster.api_client()
        core = kubernetes.client.CoreV1Api(api)
        names = [f"kwok-node-{i}" for i in range(nodes)]
        for name in names:
            core.create_node(fake_node(name))
        children.append(start([str(kwok), f"--kubeconfig={cluster.kubeconfig}", f"--config={stages}",
                               "--manage-all-nodes=false", f"--manage-nodes-with-annotation-selector={FAKE}=fake",
                               f"--cidr={KWOK_CIDR}", "--node-ip=10.245.0.1", "--node-lease-duration-seconds=40"],
                              workdir / "kwok.log", env))
        binder = Binder(api, names)
        run_informer(api, core.list_pod_for_all_namespaces, binder.on_pod, stop, field_selector="spec.nodeName=")
        children.append(start([sys.executable, str(ROOT / "bench" / "operator" / "podsim.py"),
                               "--port", str(SERVING_PORT)], workdir / "podsim.log", env))
        metrics_port = free_port()
        operator = start([sys.executable, "-m", "modelrollout", *(["--watch-cache"] if cache else []),
                          "--metrics-port", str(metrics_port), "--metrics-address", "127.0.0.1",
                          "--liveness", f"http://127.0.0.1:{free_port()}/healthz"], workdir / "operator.log", env)
        children.append(operator)
        metrics = f"http://127.0.0.1:{metrics_port}/metrics"
        wait_until(lambda: RECONCILE in histograms(metrics), 60, "the operator's metrics")
        crs = kubernetes.client.CustomObjectsApi(api)
        watch = StatusWatch(crs)
        rollouts = [f"model-{i:04d}" for i in range(n)]
        timeout = 300 + 1.5 * n

        def create(name: str) -> int:
            return int(crs.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL,
                                                           rollout(name, "1"))["metadata"]["generation"])

        def update(name: str) -> int:
            return int(crs.patch_namespaced_custom_object(
                GROUP, VERSION, NS, PLURAL, name, {"spec": {"model": {"version": "2"}}},
                _content_type="application/merge-patch+json")["metadata"]["generation"])

        result: dict[str, Any] = {"rollouts": n, "watch_cache": cache, "fake_nodes": nodes}
        tag = f"{n}-{'cache' if cache else 'nocache'}"
        sampled = Profile(profile, operator.pid, f"{tag}-create")
        result["create"] = phase(crs, watch, rollouts, "1", create, metrics, operator.pid, timeout)
        sampled.done()
        # A long run's first part, printed at once: it may have to be cut before the second ends.
        print(json.dumps({"rollouts": n, "watch_cache": cache, "create": result["create"]}), flush=True)
        quiet, sampled = Measured(metrics, operator.pid, n), Profile(profile, operator.pid, f"{tag}-settled")
        stop.wait(steady)  # a settled minute: only the idle looks and the timers' own cost
        result["settled"] = quiet.result()
        sampled.done()
        sampled = Profile(profile, operator.pid, f"{tag}-new-version")
        result["new_version"] = phase(crs, watch, rollouts, "2", update, metrics, operator.pid, timeout)
        sampled.done()
        watch.stop.set()
        return result
    finally:
        stop.set()
        for child in children:
            child.kill()
            child.wait()
        cluster.stop()


def phase(crs: kubernetes.client.CustomObjectsApi, watch: StatusWatch, rollouts: list[str], version: str,
          write: Callable[[str], int], metrics: str, pid: int, timeout: float) -> dict[str, Any]:
    """Write every rollout (8 writers), wait until all are Healthy on `version`, and measure."""
    measured = Measured(metrics, pid, len(rollouts))
    written: dict[tuple[str, int], float] = {}

    def one(name: str) -> None:
        generation = write(name)
        written[(name, generation)] = time.monotonic()

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, rollouts))
    writes_done = time.monotonic() - measured.started

    def all_healthy() -> bool:
        items = crs.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL)["items"]
        done = [i for i in items if (i.get("status") or {}).get("phase") == "Healthy"
                and i["status"].get("stableVersion") == version]
        return len(done) == len(rollouts)

    wait_until(all_healthy, timeout, f"{len(rollouts)} rollouts Healthy on version {version}", interval=2)
    out = measured.result()
    # A status for a generation can come before the write's answer reached this process: counted as 0.
    reaction = [max(0.0, watch.seen[key] - at) for key, at in written.items() if key in watch.seen]
    out.update({"writes_seconds": round(writes_done, 1), "spec_to_status_p50": percentile(reaction, 0.5),
                "spec_to_status_p99": percentile(reaction, 0.99), "spec_to_status_seen": len(reaction)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rollouts", type=int, nargs="+", default=[50, 200, 500, 1000])
    parser.add_argument("--watch-cache", choices=("off", "on", "both"), default="both")
    parser.add_argument("--nodes", type=int, default=10, help="fake (kwok) nodes")
    parser.add_argument("--settled-seconds", type=float, default=60)
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs) and print it")
    parser.add_argument("--profile", type=Path,
                        help="sample the operator with py-spy (pip install py-spy) into this directory")
    args = parser.parse_args()
    if not netns.is_inside():
        sys.exit("run through `make bench-operator` (it needs the cluster's network namespace)")
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    caches = {"off": [False], "on": [True], "both": [False, True]}[args.watch_cache]
    for n in args.rollouts:
        for cache in caches:
            workdir = Path(tempfile.mkdtemp(prefix="bench-operator-"))
            started = time.strftime("%H:%M UTC", time.gmtime())
            load = os.getloadavg()
            try:
                result = run(n, args.nodes, cache, args.settled_seconds, workdir, args.profile)
            finally:
                if args.keep:
                    print(f"work directory: {workdir}", file=sys.stderr)
                else:
                    shutil.rmtree(workdir, ignore_errors=True)
            result.update({"started": started, "load_average_before": [round(x, 2) for x in load]})
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
