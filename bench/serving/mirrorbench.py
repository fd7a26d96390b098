"""The mirroring mode of `make bench-serving`: the primary's latency with mirroring at 100 % beside mirroring off.

Processes of this server on 127.0.0.1, on the LogisticRegression: "off" (no mirror configuration); "sink"
(mirroring 100 % of answered requests to sink.py, a minimal HTTP responder); "candidate" (mirroring 100 % to
a real candidate server: the same model as version 2, sharing the rollout key so it verifies the copies'
tokens and counts pairs, as in a rollout). wrk drives the three in interleaved rounds with rotating order;
each run also reads how many copies were sent, failed and dropped, since dropped copies would understate
the cost.

Placement: the stable servers run on the first core; wrk, the sink, the candidate server and the stable
servers' sender processes (mirror_send.py, which have the pod's CPUs in a cluster) on the others. What the
stable server pays for mirroring is the "sink" row against "off": there the copies cost the other core
little. In a cluster the candidate has CPUs of its own; here a real candidate answering a copy of every
request shares the second core with wrk, which then measures its own lost time as latency: the "candidate"
row shows that effect of this machine, not a cost a stable pod would see.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from report import MirrorResults, Run, Scenario

from modelserver.contract_parse import parse_pod_metrics

# 16 clients pausing 10 ms on average between requests: about 1,500 req/s, a server below saturation, where
# p99 is a request's latency; and the same clients back to back, where a saturated server's p99 is the queue.
SCENARIOS = [Scenario("lr", 1, 16, think_ms=10.0), Scenario("lr", 1, 16)]
MODES = ("off", "sink", "candidate")  # the stable server without mirroring, and mirroring to each target
PORTS = {"off": 18110, "sink": 18111, "candidate": 18112, "candidate-server": 18113, "sink-server": 18114}
LABELS = {"off": "off", "sink": "100%, to a minimal responder", "candidate": "100%, to a candidate server"}
BODY = json.dumps({"inputs": [{"name": "x", "shape": [1, 20], "datatype": "FP64", "data": [0.0] * 20}]})
Drive = Callable[[str | None, str, int, Scenario], Run]
Servers = dict[str, tuple[str, subprocess.Popen[bytes]]]


def _cpus() -> tuple[set[int], set[int]]:
    """(the stable servers' core, everything else's); one core for all on a machine that has one."""
    cpus = sorted(os.sched_getaffinity(0))
    return ({cpus[0]}, set(cpus[1:])) if len(cpus) > 1 else (set(cpus), set(cpus))


def _popen(command: list[str], env: dict[str, str], log: Path, cpus: set[int]) -> subprocess.Popen[bytes]:
    # Pinned in the child before it starts any thread: every thread inherits the process's CPUs.
    return subprocess.Popen(command, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            preexec_fn=lambda: os.sched_setaffinity(0, cpus))


def start(manifest: list[dict[str, Any]], models: Path, cache: Path) -> Servers:
    """The three stable servers (off, sink, candidate), the candidate server and the sink."""
    entry = next(m for m in manifest if m["file"] == "lr.joblib")
    key = cache / "mirror-key"
    key.write_bytes(b"b" * 32)
    stable_cpus, other_cpus = _cpus()
    logs = cache / "logs"
    servers: Servers = {"sink-server": (f"http://127.0.0.1:{PORTS['sink-server']}", _popen(
        [sys.executable, str(Path(__file__).with_name("sink.py")), str(PORTS["sink-server"])], dict(os.environ),
        logs / "mirror-sink.log", other_cpus))}
    for name in ("off", "sink", "candidate", "candidate-server"):
        env = {**os.environ, "MODEL_NAME": "lr", "MODEL_VERSION": "2" if name == "candidate-server" else "1",
               "MODEL_URI": str(models / "lr.joblib"), "MODEL_DIGEST": entry["digest"],
               "MODEL_ALLOW_PICKLE": "true", "HOST": "127.0.0.1", "PORT": str(PORTS[name]),
               "MODELSERVER_DRAIN_DELAY_S": "0", "MODELSERVER_FEEDBACK_KEY_FILE": str(key)}
        if name in ("sink", "candidate"):
            config = cache / f"mirror-{name}.json"
            config.write_text(json.dumps({"target": f"http://127.0.0.1:{PORTS[name + '-server']}", "percent": 100,
                                          "version": "2"}))
            env["MODELSERVER_MIRROR_CONFIG"] = str(config)
        servers[name] = (f"http://127.0.0.1:{PORTS[name]}", _popen(
            [sys.executable, "-m", "modelserver"], env, logs / f"modelserver-mirror-{name}.log",
            other_cpus if name == "candidate-server" else stable_cpus))
    return servers


def ready_urls(servers: Servers) -> list[str]:
    return [f"{url}/v2/models/lr/ready" for name, (url, _) in servers.items() if name != "sink-server"]


def copies(url: str) -> Run:
    """A mirroring server's cumulative copy outcomes."""
    m = parse_pod_metrics(requests.get(url + "/metrics", timeout=10).text).model("lr", "1")
    assert m is not None
    return {"sent": m.mirror_sent, "failed": m.mirror_failed, "dropped": m.mirror_dropped}


def pin_sender_process(server_pid: int, cpus: set[int]) -> None:
    """Move a mirroring server's sender process (mirror_send.py, started at its first copy), every thread of
    it, to `cpus`: it inherited the server's core, and in a cluster it has the pod's CPUs, not the loop's."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent == server_pid:
                for task in (entry / "task").iterdir():
                    os.sched_setaffinity(int(task.name), cpus)
        except (OSError, ValueError, IndexError):
            continue


def measure(servers: Servers, wrk: str | None, drive: Drive, rounds: int) -> MirrorResults:
    _, others = _cpus()
    os.sched_setaffinity(0, others)  # wrk, started from here, off the stable servers' core
    for mode in ("sink", "candidate"):
        url, proc = servers[mode]
        requests.post(f"{url}/v2/models/lr/infer", data=BODY, timeout=10)  # starts its sender process
        pin_sender_process(proc.pid, others)
    results: MirrorResults = {}
    for round_no in range(rounds):
        for index, scenario in enumerate(SCENARIOS):
            shift = round_no % len(MODES)
            for mode in MODES[shift:] + MODES[:shift]:
                url, proc = servers[mode]
                before = copies(url)
                result = drive(wrk, f"{url}/v2/models/lr/infer", proc.pid, scenario)
                after = copies(url)
                result.update({k: after[k] - before[k] for k in after})
                results.setdefault((index, mode), []).append(result)
                print(f"[bench] mirroring round {round_no + 1} {scenario} {mode}: {result}", flush=True)
    return results
