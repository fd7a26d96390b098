"""`make bench-serving`: this model server against MLServer 1.7.1 on the same model files.

Installs (once) MLServer in a virtualenv of its own (hack/build-mlserver.sh, shared with the local
cluster's seldonio/mlserver image), trains the example models, starts every server on 127.0.0.1,
drives them with wrk (or the Python generator when wrk cannot be had; see loadgen.py) in a second
process, interleaves rounds with alternating server order, and writes the medians into the generated
section of docs/benchmarks.md (BENCH_NO_DOCS=1 only prints them).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import requests

sys.path.insert(0, str(Path(__file__).parent))
import loadgen  # a sibling script, not a package
import mirrorbench
import report
from report import Scenario

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("MODELROLLOUT_CACHE", Path.home() / ".cache/modelrollout")) / "bench"
MODELS = CACHE / "models"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
DURATION_S = float(os.environ.get("BENCH_DURATION_S", "3"))
ROW = [0.1 * i - 1.0 for i in range(20)]
MLSERVER_PORT = 18181


@dataclass(frozen=True)
class Variant:
    """One of our server processes: a model with environment overrides."""

    key: str
    model: str
    label: str
    env: dict[str, str]


SCENARIOS = [Scenario("lr", 1, 1), Scenario("lr", 1, 16), Scenario("rf", 1, 1), Scenario("rf", 1, 16),
             Scenario("lr", 64, 16), Scenario("rf", 64, 16)]
# The default build, and the same server calling sklearn's own predict() (fast path off), so the table
# shows what the server saves and what the direct predict path saves separately.
VARIANTS = [Variant("lr", "lr", "modelserver", {}),
            Variant("lr-sklearn", "lr", "modelserver, sklearn predict()",
                    {"MODELSERVER_FAST_PATH": "false", "MODELSERVER_BATCHING": "off"}),
            Variant("rf", "rf", "modelserver", {}),
            Variant("rf-sklearn", "rf", "modelserver, sklearn predict()",
                    {"MODELSERVER_FAST_PATH": "false", "MODELSERVER_BATCHING": "on"})]
MLSERVER_TARGETS = {"lr": [("MLServer", "lr")],
                    "rf": [("MLServer", "rf"), ("MLServer + adaptive batching", "rf-batched")]}


def ensure_mlserver() -> Path:
    """The same MLServer 1.7.1 virtualenv the local cluster's seldonio/mlserver image runs (built once)."""
    out = subprocess.run([str(ROOT / "hack" / "build-mlserver.sh")], check=True, capture_output=True, text=True)
    return Path(out.stdout.strip().splitlines()[-1]) / "mlserver"


def prepare_models() -> list[dict[str, Any]]:
    subprocess.run([sys.executable, str(ROOT / "examples/models/train.py"), str(MODELS)], check=True,
                   stdout=subprocess.DEVNULL)
    manifest: list[dict[str, Any]] = json.loads((MODELS / "manifest.json").read_text())
    repo = CACHE / "mlserver-repo"
    for name, batch in (("lr", None), ("rf", None), ("rf-batched", (16, 0.005))):
        folder = repo / name
        folder.mkdir(parents=True, exist_ok=True)
        settings: dict[str, Any] = {"name": name, "implementation": "mlserver_sklearn.SKLearnModel",
                                    "parameters": {"uri": str(MODELS / f"{name.split('-')[0]}.joblib")}}
        if batch:
            settings.update(max_batch_size=batch[0], max_batch_time=batch[1])
        (folder / "model-settings.json").write_text(json.dumps(settings))
    (repo / "settings.json").write_text(json.dumps({"host": "127.0.0.1", "http_port": MLSERVER_PORT,
                                                    "grpc_port": 18182, "metrics_port": 18183}))
    return manifest


def wait_ready(url: str, deadline_s: float = 120) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} never became ready")


def tree_cpu_seconds(pid: int) -> float:
    """User+system CPU of a process and all its descendants (MLServer runs a worker process)."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = fields
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        if current in stats:
            total += (int(stats[current][11]) + int(stats[current][12])) / os.sysconf("SC_CLK_TCK")
        todo.extend(children.get(current, []))
    return total


def body_file(rows: int) -> Path:
    path = CACHE / f"body-{rows}.json"
    path.write_text(json.dumps({"inputs": [{"name": "input-0", "shape": [rows, 20], "datatype": "FP64",
                                            "data": ROW * rows}]}))
    return path


def own_cpu_seconds(pid: int) -> float:
    """User+system CPU of one process (all its threads), without its children (a mirroring server's senders)."""
    fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drive(wrk: str | None, url: str, pid: int, scenario: Scenario) -> dict[str, float]:
    cpu_before, own_before = tree_cpu_seconds(pid), own_cpu_seconds(pid)
    body = body_file(scenario.rows)
    if wrk is not None:
        result = loadgen.run_wrk(wrk, url, body, scenario.concurrency, DURATION_S, scenario.think_ms)
    else:
        result = loadgen.run_python(url, body, scenario.concurrency, DURATION_S, scenario.think_ms)
    result["cpu_ms_per_request"] = (tree_cpu_seconds(pid) - cpu_before) * 1000 / max(1, result["requests"])
    result["own_cpu_ms_per_request"] = (own_cpu_seconds(pid) - own_before) * 1000 / max(1, result["requests"])
    return result


def predict_floors() -> dict[str, float]:
    """Median in-process time of sklearn's predict() and of the server's fast path, same rows."""
    import joblib

    from modelserver.fastpath import fast_path_for

    floors: dict[str, float] = {}
    for model in ("lr", "rf"):
        estimator = joblib.load(MODELS / f"{model}.joblib")
        fast = fast_path_for(estimator, len(ROW))
        for rows in (1, 64):
            x = np.array([ROW] * rows)
            floors[f"{model}, {rows} row(s), sklearn predict()"] = _median_ms(estimator.predict, x)
            if fast is not None:
                floors[f"{model}, {rows} row(s), modelserver fast path"] = _median_ms(fast.predict, x)
    return floors


def _median_ms(predict: Any, x: np.ndarray, repeats: int = 100) -> float:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        predict(x)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1000


Servers = dict[str, tuple[str, subprocess.Popen[bytes]]]


def start_ours(manifest: list[dict[str, Any]], logs: Path) -> Servers:
    servers: Servers = {}
    for offset, variant in enumerate(VARIANTS):
        entry = next(m for m in manifest if m["file"] == f"{variant.model}.joblib")
        port = 18090 + offset
        env = {**os.environ, "MODEL_NAME": variant.model, "MODEL_URI": str(MODELS / entry["file"]),
               "MODEL_DIGEST": entry["digest"], "HOST": "127.0.0.1", "PORT": str(port),
               # The same joblib files MLServer serves, so both load the identical estimator.
               "MODEL_ALLOW_PICKLE": "true",
               "MODELSERVER_LOG_LEVEL": "INFO", "MODELSERVER_DRAIN_DELAY_S": "0", **variant.env}
        proc = subprocess.Popen([sys.executable, "-m", "modelserver"], env=env,
                                stdout=(logs / f"modelserver-{variant.key}.log").open("wb"),
                                stderr=subprocess.STDOUT)
        servers[variant.key] = (f"http://127.0.0.1:{port}", proc)
    return servers


def start_servers(manifest: list[dict[str, Any]]) -> Servers:
    """key -> (base URL, process). Ours serves one model per process; MLServer serves all three."""
    logs = CACHE / "logs"
    logs.mkdir(exist_ok=True)
    servers = start_ours(manifest, logs)
    mlserver = subprocess.Popen([str(ensure_mlserver()), "start", str(CACHE / "mlserver-repo")],
                                stdout=(logs / "mlserver.log").open("wb"), stderr=subprocess.STDOUT)
    servers["mlserver"] = (f"http://127.0.0.1:{MLSERVER_PORT}", mlserver)
    for variant in VARIANTS:
        wait_ready(f"{servers[variant.key][0]}/v2/models/{variant.model}/ready")
    for model in ("lr", "rf", "rf-batched"):
        wait_ready(f"http://127.0.0.1:{MLSERVER_PORT}/v2/models/{model}/ready")
    return servers


def batching_of(key: str) -> str:
    """'batching' or 'inline', as the server logged when its model became ready."""
    log_text = (CACHE / "logs" / f"modelserver-{key}.log").read_text(errors="replace")
    return "batching" if "(batching on)" in log_text else "inline"


def targets_for(scenario: Scenario) -> list[tuple[str, str, str]]:
    """(label, server key, model name in the URL) driven for one scenario."""
    ours = [(f"{v.label} ({batching_of(v.key)})", v.key, v.model) for v in VARIANTS if v.model == scenario.model]
    return ours + [(label, "mlserver", model) for label, model in MLSERVER_TARGETS[scenario.model]]


def measure(servers: Servers, wrk: str | None) -> report.Results:
    results: report.Results = {}
    for round_no in range(ROUNDS):
        for index, scenario in enumerate(SCENARIOS):
            targets = targets_for(scenario)
            for label, key, model in (targets if round_no % 2 == 0 else list(reversed(targets))):
                url, proc = servers[key]
                result = drive(wrk, f"{url}/v2/models/{model}/infer", proc.pid, scenario)
                results.setdefault((index, label), []).append(result)
                print(f"[bench] round {round_no + 1} {scenario} {label}: {result}", flush=True)
    return results


def describe_run(wrk: str | None) -> str:
    machine = f"{platform.node()} ({os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()})"
    if wrk is not None:
        version = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False).stdout.split("[")[0]
        generator = f"{version.strip()} (1 thread, closed loop)"
    else:
        generator = "the Python aiohttp generator (its CPU use competes with the servers on these cores)"
    return (f"Measured {time.strftime('%Y-%m-%d %H:%M %Z')} on {machine}; load generator: {generator}; "
            f"{ROUNDS} interleaved rounds of {DURATION_S:g} s, medians.")


def main() -> int:
    # BENCH_LOADGEN=python forces the fallback generator (to check it, or to compare with old runs).
    wrk = None if os.environ.get("BENCH_LOADGEN") == "python" else loadgen.ensure_wrk()
    if wrk is None and os.environ.get("BENCH_LOADGEN") == "python":
        print("[bench] BENCH_LOADGEN=python: using the Python load generator", flush=True)
    elif wrk is None:
        print("[bench] WARNING: wrk is not installed and could not be installed (needs root and apt-get); "
              "falling back to the Python load generator, which shares the CPU and caps req/s.", flush=True)
    else:
        print(f"[bench] load generator: {wrk}", flush=True)
    manifest = prepare_models()
    # BENCH_ONLY=mirror runs the mirroring mode alone (about a minute), leaving the main table as it is.
    if os.environ.get("BENCH_ONLY") != "mirror":
        compare_with_mlserver(wrk, manifest)
    measure_mirroring(wrk, manifest)
    return 0


def stop(servers: Servers) -> None:
    for _, proc in servers.values():
        proc.terminate()
    for _, proc in servers.values():
        proc.wait(30)


def publish(section: str, name: str, begin: str, end: str) -> None:
    (CACHE / name).write_text(section)
    print(section)
    if os.environ.get("BENCH_NO_DOCS") != "1":
        report.write_into(ROOT / "docs/benchmarks.md", section, begin, end)
        print("[bench] generated section of docs/benchmarks.md updated", flush=True)


def compare_with_mlserver(wrk: str | None, manifest: list[dict[str, Any]]) -> None:
    floors = predict_floors()
    servers = start_servers(manifest)
    try:
        results = measure(servers, wrk)
    finally:
        stop(servers)
    publish(report.render_section(describe_run(wrk), SCENARIOS, targets_for, results, floors), "last-table.md",
            report.BEGIN, report.END)


def measure_mirroring(wrk: str | None, manifest: list[dict[str, Any]]) -> None:
    """The same server with mirroring at 100 % and off, side by side (mirrorbench.py)."""
    (CACHE / "logs").mkdir(exist_ok=True)
    servers = mirrorbench.start(manifest, MODELS, CACHE)
    try:
        for url in mirrorbench.ready_urls(servers):
            wait_ready(url)
        results = mirrorbench.measure(servers, wrk, drive, ROUNDS)
    finally:
        stop(servers)
    publish(report.render_mirror_section(describe_run(wrk), mirrorbench.SCENARIOS, results, mirrorbench.LABELS),
            "last-mirror-table.md", report.MIRROR_BEGIN, report.MIRROR_END)


if __name__ == "__main__":
    sys.exit(main())
