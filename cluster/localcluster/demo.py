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
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
from pathlib import Path
from typing import Any

import kubernetes

from localcluster.binaries import MissingBinaryError, bin_dir, binary
from localcluster.cluster import LocalCluster, NotInNamespaceError
from localcluster.demoview import Snapshot, VersionRow, event_lines, frame, screen_lines
from localcluster.modeltraffic import ModelTraffic
from localcluster.testing import WaitTimeoutError, wait_until

ROOT = Path(__file__).resolve().parents[2]
NS, NAME = "demo", "fraud"
GROUP, VERSION, PLURAL = "modelrollout.dev", "v1alpha1", "modelrollouts"
# The examples' criteria (examples/canary.yaml), which `make bench-decisions` shows promote an equal
# canary in at least 98% of rollouts: a relative p99 bound would sit on server latencies of a few
# milliseconds, where a busy machine's tail alone keeps it Inconclusive.
ANALYSIS = {
    "interval": "3s", "minSamples": 100, "minExposure": "6s", "failureLimit": 2, "inconclusiveLimit": 40,
    "metrics": [
        {"name": "error-rate", "type": "errorRate", "margin": 0.02},
        {"name": "slow-requests", "type": "latency", "thresholdSeconds": 0.25, "max": 0.05},
        {"name": "accuracy", "type": "accuracy", "margin": 0.08},
    ],
}
STEPS = [{"setWeight": 25}, {"pause": {"duration": "10s"}}, {"setWeight": 50}, {"pause": {"duration": "10s"}},
         {"setWeight": 100}]


def say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


class DemoFailed(Exception):
    """The demo cannot go on; the message is the one line a person reads."""


def helm_install(cluster: LocalCluster, workdir: Path) -> None:
    say("installing the operator with Helm (charts/modelrollout)")
    done = subprocess.run([str(binary("helm")), "--kubeconfig", str(cluster.kubeconfig), "install", "modelrollout",
                           str(ROOT / "charts" / "modelrollout"), "--namespace", "modelrollout-system",
                           "--create-namespace", "--wait", "--timeout", "120s",
                           # Pods share the local cluster's network namespace: bind the pod's own IP.
                           "--set", "operator.bindAddress=podIP"], capture_output=True, text=True)
    if done.returncode != 0:
        pods = cluster.kubectl("get", "pods", "-n", "modelrollout-system", "-o", "wide", check=False).stdout
        log = workdir / "helm-install.log"
        log.write_text(f"{done.stdout}{done.stderr}\n{pods}")
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise DemoFailed(f"helm install failed ({reason}); helm's output and the operator pods: {log}")
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
    spec_model = {"name": NAME, "version": version, "uri": f"{store}/{model['file']}", "digest": model["digest"]}
    if model["format"] == "joblib":
        spec_model["allowPickle"] = True  # joblib runs code when loaded: the explicit opt-in, with the digest
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelRollout", "metadata": {"name": NAME, "namespace": NS},
            "spec": {"replicas": 4, "model": spec_model,
                     "serving": {"image": "ghcr.io/modelrollout/modelserver:0.1.0"},
                     "service": {"name": NAME, "port": 80}, "strategy": {"canary": {"steps": STEPS}},
                     "analysis": ANALYSIS}}


class View:
    """The live view: redrawn in place on a terminal (sized to it at every draw), a line every few
    seconds otherwise. Gathering (API calls) runs in a thread so the traffic's event loop never waits."""

    def __init__(self, api: kubernetes.client.ApiClient, traffic: ModelTraffic | None, tty: bool) -> None:
        self.custom = kubernetes.client.CustomObjectsApi(api)
        self.core = kubernetes.client.CoreV1Api(api)
        self.traffic, self.tty = traffic, tty
        self.last_plain = 0.0
        self.stage = ""

    def note(self, text: str) -> None:
        """Progress: a line in the log, or on a terminal the view's title (a printed line would scroll it)."""
        self.stage = text
        if not self.tty:
            say(text)

    def status(self) -> dict[str, Any]:
        obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, NAME)
        return dict(obj.get("status") or {})

    def _versions(self) -> list[VersionRow]:
        if self.traffic is None:
            return []
        now, rows = time.monotonic(), []
        timeline = self.traffic.stats.timeline[-2000:]
        for version, stats in sorted(self.traffic.stats.by_version.items()):
            recent = sum(1 for t, v, _ in timeline if v == version and t > now - 5)
            answered = stats.ok + stats.failed
            p99 = statistics.quantiles(stats.latencies[-500:], n=100)[98] * 1000 if len(stats.latencies) > 2 else 0
            rows.append(VersionRow(version, recent / 5, stats.failed / max(answered, 1), p99,
                                   stats.correct / stats.ok if stats.ok else None))
        return rows

    def snapshot(self) -> Snapshot:
        """Blocking: call through asyncio.to_thread."""
        st = self.status()
        events = self.core.list_namespaced_event(NS, field_selector=f"involvedObject.name={NAME}").items
        return Snapshot(st, self._versions(), event_lines(events), self.stage)

    def draw(self, snap: Snapshot) -> None:
        st = snap.status
        if not self.tty:
            if time.monotonic() - self.last_plain >= 5:
                self.last_plain = time.monotonic()
                say(f"phase {st.get('phase')} ({st.get('reason', '')})  stable v{st.get('stableVersion')}  "
                    f"canary v{st.get('canaryVersion', '-')}  weight desired {st.get('desiredWeight', '-')}% / "
                    f"effective {st.get('effectiveWeight', '-')}%")
            return
        size = terminal_size()
        sys.stdout.write(frame(screen_lines(snap, size.columns, size.lines)))
        sys.stdout.flush()


def terminal_size() -> os.terminal_size:
    # The terminal itself, not $COLUMNS/$LINES (which shells export once and do not update on resize).
    try:
        return os.get_terminal_size(sys.stdout.fileno())
    except OSError:
        return os.terminal_size((80, 24))


def reached(st: dict[str, Any], version: str, phases: tuple[str, ...]) -> bool:
    """Whether the rollout settled on `version`: promoted (Healthy, stable) or rejected (RolledBack)."""
    if st.get("phase") not in phases:
        return False
    if st["phase"] == "RolledBack":
        return st.get("rejectedVersion") == version
    return st.get("stableVersion") == version


class Wakeups:
    """Why the view wakes before its next second: a resize (redraw now) or Ctrl-C (stop now).

    Ctrl-C is a flag checked at every redraw as well as a cancellation of the main task: Python 3.11's
    asyncio.wait_for can swallow a cancellation that lands as its timeout fires, and the demo then
    ran on to its end with the person's Ctrl-C ignored."""

    def __init__(self, tty: bool) -> None:
        self.redraw, self.interrupted = asyncio.Event(), False
        self.task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, self.interrupt)
        if tty:
            loop.add_signal_handler(signal.SIGWINCH, self.redraw.set)

    def interrupt(self) -> None:
        self.interrupted = True
        self.redraw.set()
        if self.task is not None:
            self.task.cancel()

    def check(self) -> None:
        if self.interrupted:
            raise KeyboardInterrupt

    async def wait(self, seconds: float) -> None:
        self.check()
        self.redraw.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.redraw.wait()
        self.check()


async def watch_until(view: View, version: str, phases: tuple[str, ...], timeout: float,
                      wake: Wakeups) -> dict[str, Any]:
    """Redraw every second (at once after a resize) until `version` settles in one of `phases`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snap = await asyncio.to_thread(view.snapshot)
        view.draw(snap)
        if reached(snap.status, version, phases):
            return snap.status
        await wake.wait(1)
    raise DemoFailed(f"version {version} did not reach {' or '.join(phases)} within {timeout:.0f}s")


async def run_rollouts(api: kubernetes.client.ApiClient, models: Models, holdout: dict[str, Any],
                       store: str, tty: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    wake = Wakeups(tty)
    try:
        return await rollouts(api, models, holdout, store, tty, wake)
    except asyncio.CancelledError:
        if wake.interrupted:
            raise KeyboardInterrupt from None
        raise


async def rollouts(api: kubernetes.client.ApiClient, models: Models, holdout: dict[str, Any],
                   store: str, tty: bool, wake: Wakeups) -> tuple[dict[str, Any], dict[str, Any]]:
    custom = kubernetes.client.CustomObjectsApi(api)
    await asyncio.to_thread(custom.create_namespaced_custom_object, GROUP, VERSION, NS, PLURAL,
                            rollout("1", models[("lr", "joblib")], store))
    service_ip = await asyncio.to_thread(
        wait_until, lambda: kubernetes.client.CoreV1Api(api).read_namespaced_service(NAME, NS).spec.cluster_ip,
        60, "the fraud Service")
    traffic = ModelTraffic(f"http://{service_ip}", NAME, holdout["X"], holdout["y"], rate=60, clients=12, burst=3)
    view = View(api, traffic, tty)
    view.note("version 1 (LogisticRegression, joblib) deploying")
    await watch_until(view, "1", ("Healthy",), 120, wake)
    stop = asyncio.Event()
    load = asyncio.ensure_future(traffic.run(stop, max_seconds=900))
    view.note("traffic: 60 requests/s with delayed feedback labels")

    def apply(version: str, model: dict[str, Any]) -> None:
        obj = custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, NAME)
        obj["spec"] = rollout(version, model, store)["spec"]
        custom.replace_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, NAME, obj)

    await asyncio.to_thread(apply, "2", models[("lr", "skops")])
    view.note("version 2 (same quality, skops) rolling out: canary 25% -> 50% -> 100%")
    good = await watch_until(view, "2", ("Healthy", "RolledBack"), 300, wake)
    await asyncio.to_thread(apply, "3", models[("lr-bad", "joblib")])
    view.note("version 3 (trained on shuffled labels) rolling out")
    bad = await watch_until(view, "3", ("RolledBack", "Healthy"), 300, wake)
    stop.set()
    await load
    view.draw(await asyncio.to_thread(view.snapshot))
    return good, {**bad, "_traffic": traffic.stats}


def summary(good: dict[str, Any], bad: dict[str, Any], width: int) -> bool:
    stats = bad["_traffic"]
    promoted = good.get("phase") == "Healthy" and good.get("stableVersion") == "2"
    rolled_back = bad.get("phase") == "RolledBack" and bad.get("stableVersion") == "2"
    lines = ["", "=== summary ===",
             f"version 2 (good): {'PROMOTED' if promoted else 'NOT promoted: ' + str(good.get('message'))}",
             f"version 3 (bad):  {'ROLLED BACK' if rolled_back else 'NOT rolled back: ' + str(bad.get('message'))}",
             *textwrap.wrap(f"  why: {bad.get('message')}", width=width, subsequent_indent="    ")]
    for version, s in sorted(stats.by_version.items()):
        lines.append(f"  v{version}: {s.ok} answered, {s.failed} failed, accuracy {s.correct / max(s.ok, 1):.1%}")
    lines.append(f"  transport errors: {sum(stats.transport_errors.values())}")
    print("\n".join(lines), flush=True)
    return promoted and rolled_back


def run_demo(tty: bool, workdir: Path) -> bool:
    bin_dir()  # a missing binary fails here, before anything starts, with how to get it
    say("starting the local cluster (control plane, node, service proxy)")
    cluster = LocalCluster(workdir / "cluster")
    try:
        cluster.start()
        api = cluster.api_client()
        cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        helm_install(cluster, workdir)
        models, holdout, store = publish_models(api, workdir)
        good, bad = asyncio.run(run_rollouts(api, models, holdout, store, tty))
        return summary(good, bad, terminal_size().columns if tty else 100)
    finally:
        # A second Ctrl-C must not cut the clean-up short and leave processes behind.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        cluster.stop()
        signal.signal(signal.SIGINT, previous)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plain", action="store_true", help="no live redraw (CI logs)")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (models, cluster logs)")
    args = parser.parse_args()
    tty = sys.stdout.isatty() and not args.plain
    workdir = Path(tempfile.mkdtemp(prefix="modelrollout-demo-"))
    say(f"working directory {workdir}")
    try:
        code = 0 if run_demo(tty, workdir) else 1
        message = "" if code == 0 else f"demo failed: an outcome was not reached; logs kept in {workdir}"
    except KeyboardInterrupt:
        code, message = 130, "demo interrupted: the local cluster is stopped and nothing is left running"
    except Exception as exc:  # the person gets one or two lines; the traceback goes to a file
        expected = isinstance(exc, (MissingBinaryError, NotInNamespaceError, DemoFailed, WaitTimeoutError))
        what = first_line(exc) if expected else f"{type(exc).__name__}: {first_line(exc)}"
        code, message = 1, f"demo failed: {what}\n  details: {record_failure(workdir, exc)}"
    if code in (0, 130) and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    if message:
        print(("\r\n" if tty else "") + message, file=sys.stderr, flush=True)
    sys.exit(code)


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def record_failure(workdir: Path, exc: BaseException) -> Path:
    """The whole story (traceback, message) in a file next to the cluster's logs."""
    path = workdir / "demo-error.log"
    path.write_text("".join(traceback.format_exception(exc)))
    return path


if __name__ == "__main__":
    main()
