"""Reconcile latency with many rollouts in one operator (issue 18 item 7): `make bench-reconcile`.

On the local cluster (run inside hack/in-netns): one operator process, N ModelRollouts of one
real model-server pod each (N=30 by default). All N are created, then all N move to a new version at
once (a canary step, a pause, the promotion), which is when ticks pile up. The operator's own
histogram `modelrollout_reconcile_duration_seconds` is read before and after each phase; reported:
ticks, mean, p50 and p99 (as the histogram's bucket bounds: "p99 <= 0.25 s"), the operator's CPU
seconds, and the wall time. Not a test: numbers go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "cluster"), str(ROOT / "operator"), str(ROOT / "serving")]

from localcluster import netns  # noqa: E402
from localcluster.cluster import LocalCluster  # noqa: E402
from localcluster.demo import NS, publish_models  # noqa: E402
from localcluster.testing import wait_until  # noqa: E402

GROUP, VERSION, PLURAL = "modelrollout.dev", "v1alpha1", "modelrollouts"
METRIC = "modelrollout_reconcile_duration_seconds"
STEPS = [{"setWeight": 50}, {"pause": {"duration": "2s"}}, {"setWeight": 100}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


BREAKDOWN = ("modelrollout_api_request_duration_seconds", "modelrollout_api_queue_wait_seconds",
             "modelrollout_event_loop_lag_seconds", "modelrollout_scrape_duration_seconds",
             "modelrollout_tick_stage_seconds")
Series = dict[str, dict[str, float]]  # "name{labels but le}" -> {le: cumulative count, "_sum", "_count"}


def histograms(url: str) -> Series:
    """Every histogram series of the operator's /metrics, bucket counts keyed by `le`."""
    out: Series = {}
    with urllib.request.urlopen(url, timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("#") or not line.startswith(("modelrollout_",)):
                continue
            series, value = line.rsplit(" ", 1)
            name, _, labels = series.partition("{")
            for suffix in ("_bucket", "_sum", "_count"):
                if name.endswith(suffix):
                    base = name.removesuffix(suffix)
                    break
            else:
                continue
            kept = [part for part in labels.rstrip("}").split(",") if part and not part.startswith("le=")]
            key = base + ("{" + ",".join(kept) + "}" if kept else "")
            field = labels.split('le="', 1)[1].split('"', 1)[0] if suffix == "_bucket" else suffix
            out.setdefault(key, {})[field] = float(value)
    return out


def histogram(url: str) -> dict[str, float]:
    return histograms(url).get(METRIC, {})


def breakdown(before: Series, after: Series) -> dict[str, dict[str, Any]]:
    """Per series of the timing metrics: how many, the mean and the p99 bucket in this phase."""
    rows: dict[str, dict[str, Any]] = {}
    for key, now in sorted(after.items()):
        if not key.startswith(BREAKDOWN):
            continue
        then = before.get(key, {})
        count = now.get("_count", 0) - then.get("_count", 0)
        if count:
            rows[key] = {"count": int(count), "mean_seconds": round((now["_sum"] - then.get("_sum", 0)) / count, 4),
                         "p99": quantile_bound(then, now, 0.99)}
    return rows


def quantile_bound(before: dict[str, float], after: dict[str, float], q: float) -> str:
    """The smallest bucket bound under which a fraction q of this phase's observations fell."""
    total = after["_count"] - before.get("_count", 0)
    bounds = sorted((k for k in after if not k.startswith("_")), key=lambda k: float(k.replace("+Inf", "inf")))
    for le in bounds:
        if after[le] - before.get(le, 0) >= q * total:
            return f"<= {le} s" if le != "+Inf" else f"> {bounds[-2]} s"
    return "?"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rollout(name: str, version: str, model: dict[str, Any], store: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelRollout", "metadata": {"name": name, "namespace": NS},
            "spec": {"replicas": 1,
                     "model": {"name": name, "version": version, "uri": f"{store}/{model['file']}",
                               "digest": model["digest"], "allowPickle": model["format"] == "joblib"},
                     "serving": {"image": "ghcr.io/modelrollout/modelserver:0.1.0"},
                     "service": {"name": name, "port": 80}, "strategy": {"canary": {"steps": STEPS}}}}


def phase(api: kubernetes.client.CustomObjectsApi, names: list[str], version: str, metrics: str, pid: int,
          apply: Any, timeout: float) -> dict[str, Any]:
    all_before, cpu0, started = histograms(metrics), cpu_seconds(pid), time.monotonic()
    before = all_before.get(METRIC, {})
    for name in names:
        apply(name)

    def all_healthy() -> bool:
        items = api.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL)["items"]
        done = [i for i in items if (i.get("status") or {}).get("phase") == "Healthy"
                and i["status"].get("stableVersion") == version]
        return len(done) == len(names)

    wait_until(all_healthy, timeout, f"{len(names)} rollouts Healthy on version {version}", interval=1)
    all_after = histograms(metrics)
    after = all_after.get(METRIC, {})
    ticks = after["_count"] - before.get("_count", 0)
    return {"version": version, "wall_seconds": round(time.monotonic() - started, 1), "ticks": int(ticks),
            "mean_seconds": round((after["_sum"] - before.get("_sum", 0)) / ticks, 3) if ticks else None,
            "p50": quantile_bound(before, after, 0.5), "p99": quantile_bound(before, after, 0.99),
            "operator_cpu_seconds": round(cpu_seconds(pid) - cpu0, 1),
            "where_the_time_goes": breakdown(all_before, all_after)}


def run(n: int, workdir: Path, cache: bool) -> dict[str, Any]:
    cluster = LocalCluster(workdir).start()
    operator = None
    try:
        cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        cluster.wait_crds_established()
        api_client = cluster.api_client()
        models, _, store = publish_models(api_client, workdir)
        model = models[("lr", "joblib")]
        metrics_port = free_port()
        log = open(workdir / "operator.log", "wb")  # noqa: SIM115 - the child's
        operator = subprocess.Popen(
            [sys.executable, "-m", "modelrollout", *(["--watch-cache"] if cache else []),
             "--metrics-port", str(metrics_port), "--metrics-address",
             "127.0.0.1", "--liveness", f"http://127.0.0.1:{free_port()}/healthz"],
            stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, KUBECONFIG=str(cluster.kubeconfig)))
        metrics = f"http://127.0.0.1:{metrics_port}/metrics"
        wait_until(lambda: METRIC in histograms(metrics), 60, "the operator's metrics")
        api = kubernetes.client.CustomObjectsApi(api_client)
        names = [f"model-{i:03d}" for i in range(n)]

        def create(name: str) -> None:
            api.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, rollout(name, "1", model, store))

        def update(name: str) -> None:
            api.patch_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name,
                                               {"spec": {"model": {"version": "2"}}},
                                               _content_type="application/merge-patch+json")

        first = phase(api, names, "1", metrics, operator.pid, create, 600)
        second = phase(api, names, "2", metrics, operator.pid, update, 600)
        return {"rollouts": n, "create": first, "new_version": second}
    finally:
        if operator is not None:
            operator.kill()
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rollouts", type=int, default=30)
    parser.add_argument("--watch-cache", action="store_true", help="run the operator with its watch cache")
    args = parser.parse_args()
    if not netns.is_inside():
        sys.exit("run through `make bench-reconcile` (it needs the cluster's network namespace)")
    workdir = Path(tempfile.mkdtemp(prefix="bench-reconcile-"))
    try:
        result = run(args.rollouts, workdir, args.watch_cache)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
