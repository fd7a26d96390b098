"""`make bench-serving`: this model server against MLServer 1.7.1 on the same model files.

Creates (once) a separate virtualenv for MLServer under ~/.cache/modelrollout/bench/, trains the example
models, starts both servers on 127.0.0.1, drives them with bench/serving/loadgen.py (aiohttp, a second
process, bounded runs), interleaves rounds, and writes the medians to docs/benchmarks.md.
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

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("MODELROLLOUT_CACHE", Path.home() / ".cache/modelrollout")) / "bench"
MLSERVER_VENV = CACHE / "mlserver-venv"
MODELS = CACHE / "models"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
DURATION_S = float(os.environ.get("BENCH_DURATION_S", "3"))
ROW = [0.1 * i - 1.0 for i in range(20)]


@dataclass(frozen=True)
class Scenario:
    model: str
    rows: int
    concurrency: int


SCENARIOS = [Scenario("lr", 1, 1), Scenario("lr", 1, 16), Scenario("rf", 1, 1), Scenario("rf", 1, 16),
             Scenario("lr", 64, 16), Scenario("rf", 64, 16)]


def ensure_mlserver() -> Path:
    mlserver = MLSERVER_VENV / "bin/mlserver"
    if not mlserver.exists():
        print("[bench] creating MLServer virtualenv (once)...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(MLSERVER_VENV)], check=True)
        subprocess.run([str(MLSERVER_VENV / "bin/pip"), "install", "-q", "mlserver==1.7.1",
                        "mlserver-sklearn==1.7.1", "uvloop<0.22"], check=True)
    return mlserver


def prepare_models() -> list[dict[str, Any]]:
    subprocess.run([sys.executable, str(ROOT / "examples/models/train.py"), str(MODELS)], check=True,
                   stdout=subprocess.DEVNULL)
    manifest = json.loads((MODELS / "manifest.json").read_text())
    repo = CACHE / "mlserver-repo"
    for name, batch in (("lr", None), ("rf", None), ("rf-batched", (16, 0.005))):
        folder = repo / name
        folder.mkdir(parents=True, exist_ok=True)
        settings: dict[str, Any] = {"name": name, "implementation": "mlserver_sklearn.SKLearnModel",
                                    "parameters": {"uri": str(MODELS / f"{name.split('-')[0]}.joblib")}}
        if batch:
            settings.update(max_batch_size=batch[0], max_batch_time=batch[1])
        (folder / "model-settings.json").write_text(json.dumps(settings))
    (repo / "settings.json").write_text(json.dumps({"host": "127.0.0.1", "http_port": 18181, "grpc_port": 18182,
                                                    "metrics_port": 18183}))
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


def drive(url: str, pid: int, scenario: Scenario) -> dict[str, float]:
    cpu_before = tree_cpu_seconds(pid)
    out = subprocess.run([sys.executable, str(Path(__file__).with_name("loadgen.py")), "--url", url,
                          "--body-file", str(body_file(scenario.rows)), "--concurrency", str(scenario.concurrency),
                          "--duration", str(DURATION_S)], check=True, capture_output=True, text=True)
    result: dict[str, float] = json.loads(out.stdout)
    result["cpu_ms_per_request"] = (tree_cpu_seconds(pid) - cpu_before) * 1000 / max(1, result["requests"])
    return result


def predict_floor(rows: int, model: str) -> float:
    import joblib

    estimator = joblib.load(MODELS / f"{model}.joblib")
    x = np.array([ROW] * rows)
    timings = []
    for _ in range(200 if model == "lr" else 50):
        started = time.perf_counter()
        estimator.predict(x)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1000


def start_servers(manifest: list[dict[str, Any]]) -> dict[str, tuple[str, subprocess.Popen[bytes]]]:
    """name -> (base URL, process). Ours serves one model per process; MLServer serves all three."""
    logs = CACHE / "logs"
    logs.mkdir(exist_ok=True)
    servers: dict[str, tuple[str, subprocess.Popen[bytes]]] = {}
    for offset, model in enumerate(("lr", "rf")):
        entry = next(m for m in manifest if m["file"] == f"{model}.joblib")
        port = 18090 + offset
        env = {**os.environ, "MODEL_NAME": model, "MODEL_URI": str(MODELS / entry["file"]),
               "MODEL_DIGEST": entry["digest"], "HOST": "127.0.0.1", "PORT": str(port),
               "MODELSERVER_LOG_LEVEL": "WARNING", "MODELSERVER_DRAIN_DELAY_S": "0"}
        proc = subprocess.Popen([sys.executable, "-m", "modelserver"], env=env,
                                stdout=(logs / f"modelserver-{model}.log").open("wb"), stderr=subprocess.STDOUT)
        servers[f"modelserver-{model}"] = (f"http://127.0.0.1:{port}", proc)
    mlserver = subprocess.Popen([str(ensure_mlserver()), "start", str(CACHE / "mlserver-repo")],
                                stdout=(logs / "mlserver.log").open("wb"), stderr=subprocess.STDOUT)
    servers["mlserver"] = ("http://127.0.0.1:18181", mlserver)
    for model in ("lr", "rf"):
        wait_ready(f"{servers[f'modelserver-{model}'][0]}/v2/models/{model}/ready")
    for model in ("lr", "rf", "rf-batched"):
        wait_ready(f"http://127.0.0.1:18181/v2/models/{model}/ready")
    return servers


def targets_for(scenario: Scenario) -> list[tuple[str, str]]:
    """(label, server key/model) pairs driven for one scenario."""
    ours = (f"modelserver ({'batching' if scenario.model == 'rf' else 'inline'})",
            f"modelserver-{scenario.model}|{scenario.model}")
    pairs = [ours, ("MLServer", f"mlserver|{scenario.model}")]
    if scenario.model == "rf":
        pairs.append(("MLServer + adaptive batching", "mlserver|rf-batched"))
    return pairs


def measure(servers: dict[str, tuple[str, subprocess.Popen[bytes]]]) -> dict[tuple[int, str], list[dict[str, float]]]:
    results: dict[tuple[int, str], list[dict[str, float]]] = {}
    for round_no in range(ROUNDS):
        for index, scenario in enumerate(SCENARIOS):
            pairs = targets_for(scenario)
            for label, key in (pairs if round_no % 2 == 0 else list(reversed(pairs))):
                server, model = key.split("|")
                url, proc = servers[server]
                result = drive(f"{url}/v2/models/{model}/infer", proc.pid, scenario)
                results.setdefault((index, label), []).append(result)
                print(f"[bench] round {round_no + 1} {scenario} {label}: {result}", flush=True)
    return results


def median_of(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def render(results: dict[tuple[int, str], list[dict[str, float]]], floors: dict[tuple[str, int], float]) -> str:
    lines = ["| Model | rows | conc. | server | req/s | p50 ms | p99 ms | server CPU ms/req | req/s vs MLServer "
             "| errors |", "|---|---|---|---|---|---|---|---|---|---|"]
    for index, scenario in enumerate(SCENARIOS):
        base = median_of(results[(index, "MLServer")], "rps")
        for label, _ in targets_for(scenario):
            runs = results[(index, label)]
            rps = median_of(runs, "rps")
            errors = sum(int(run["errors"]) for run in runs)
            lines.append(f"| {scenario.model} | {scenario.rows} | {scenario.concurrency} | {label} | {rps:,.0f} | "
                         f"{median_of(runs, 'p50_ms'):.2f} | {median_of(runs, 'p99_ms'):.2f} | "
                         f"{median_of(runs, 'cpu_ms_per_request'):.2f} | {rps / base:.2f}x | {errors} |")
    lines += ["", "In-process `predict()` floor (median, same rows, no HTTP):", ""]
    lines += [f"- {model} {rows} row(s): {ms:.3f} ms" for (model, rows), ms in floors.items()]
    return "\n".join(lines) + "\n"


def main() -> int:
    manifest = prepare_models()
    floors = {(m, r): predict_floor(r, m) for m in ("lr", "rf") for r in (1, 64)}
    servers = start_servers(manifest)
    try:
        results = measure(servers)
    finally:
        for _, proc in servers.values():
            proc.terminate()
        for _, proc in servers.values():
            proc.wait(30)
    table = render(results, floors)
    machine = f"{platform.node()} ({os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()})"
    out = CACHE / "last-table.md"
    out.write_text(f"Measured {time.strftime('%Y-%m-%d %H:%M %Z')} on {machine}; {ROUNDS} interleaved rounds "
                   f"of {DURATION_S:.0f} s, medians.\n\n" + table)
    print(out.read_text())
    print(f"[bench] table written to {out}; copy it into docs/benchmarks.md with your reading of it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
