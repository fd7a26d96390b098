"""Soak: back-to-back rollouts under continuous traffic for SOAK_SECONDS (make test: about 4 minutes;
`make soak`: 30). Three rollouts at once: one promotes a good canary every round, one switches
blue-green every round, one rejects a bad canary every round while its stable pods keep serving.

Promise kept: the operator's and a long-lived model server's resident memory grow under 10% after
the first round (their warm-up), nothing is left behind (one Deployment per rollout, the rejected
canary's at 0 at most; status history at its limit), and no request fails but the bad model's own.
"""

from __future__ import annotations

import os
import time
from typing import Any

import kubernetes
import pytest

from localcluster.testing import wait_until
from modelrollout.core.status import HISTORY_LIMIT
from tests.conftest import ClusterHandle
from tests.e2e.rollouts import OperatorProcess, Scenario, Traffic, make_rollout

pytestmark = pytest.mark.e2e
ANALYSIS = {"interval": "2s", "minSamples": 40, "failureLimit": 2, "inconclusiveLimit": 60, "minExposure": "4s",
            "metrics": [{"name": "error-rate", "type": "errorRate", "margin": 0.03}]}
STEPS = [{"setWeight": 50}, {"pause": {"duration": "2s"}}, {"setWeight": 100}]
BLUE_GREEN = {"previewService": "bg-preview", "autoPromotionSeconds": 2, "scaleDownDelaySeconds": 1}
MAX_GROWTH = 0.10


def rss_bytes(pid: int) -> int:
    for line in open(f"/proc/{pid}/status").read().splitlines():  # noqa: SIM115 - read at once
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def server_pids(cluster: ClusterHandle, namespace: str, rollout: str) -> dict[str, int]:
    """Pod name -> the model server's pid (the local node reports containerID process://<pid>)."""
    core = kubernetes.client.CoreV1Api(cluster.api)
    pods = core.list_namespaced_pod(namespace, label_selector=f"modelrollout.dev/rollout={rollout}").items
    return {p.metadata.name: int(p.status.container_statuses[0].container_id.removeprefix("process://"))
            for p in pods if p.status.container_statuses and p.status.container_statuses[0].container_id}


def _round(n: int, scenarios: dict[str, Scenario], models: dict[str, Any], store: str) -> None:
    lr, version = models["models"]["lr"], str(n + 1)
    good, bg, bad = scenarios["good"], scenarios["bg"], scenarios["bad"]
    good.apply(make_rollout(good.name, version, lr, store, replicas=2, steps=STEPS, analysis=ANALYSIS))
    bg.apply(make_rollout(bg.name, version, lr, store, replicas=2, blue_green=BLUE_GREEN))
    bad.apply(make_rollout(bad.name, version, lr, store, replicas=2, steps=STEPS, analysis=ANALYSIS,
                           faults={"MODELSERVER_CHAOS_ERROR_RATE": "0.3"}))
    for s, phase, stable in ((good, "Healthy", version), (bg, "Healthy", version), (bad, "RolledBack", "1")):
        wait_until(lambda s=s, p=phase, v=stable: (st := s.status()).get("phase") == p and st.get("stableVersion")
                   == v, 180, f"round {n}: {s.name} {phase} on {stable}", describe=s.describe)
    for s in (good, bg):
        wait_until(lambda s=s: len(s.deployments()) == 1, 60, f"round {n}: {s.name} down to one Deployment")


def test_back_to_back_rollouts_leak_neither_memory_nor_objects(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any],
        model_store: str) -> None:
    seconds = float(os.environ.get("SOAK_SECONDS", "60"))  # after the first round: about 4 minutes in all
    lr = models["models"]["lr"]
    scenarios = {key: Scenario(cluster, namespace, key) for key in ("good", "bg", "bad")}
    for key, s in scenarios.items():
        s.apply(make_rollout(s.name, "1", lr, model_store, replicas=2, steps=STEPS, analysis=ANALYSIS,
                             blue_green=BLUE_GREEN if key == "bg" else None))
    for s in scenarios.values():
        s.wait_phase("Healthy", 120)
    traffic = {k: Traffic(s.service_url(), s.name, models["holdout"], rate=30) for k, s in scenarios.items()}
    for t in traffic.values():
        t.__enter__()
    try:
        _round(1, scenarios, models, model_store)
        assert operator.proc is not None
        # Version 1 of `bad` serves throughout; a ReplicaSet scales down its newest pods first, so its
        # oldest pod lives through every round.
        steady = server_pids(cluster, namespace, "bad")
        before = {"operator": rss_bytes(operator.proc.pid), **{p: rss_bytes(pid) for p, pid in steady.items()}}
        started, rounds = time.monotonic(), 1
        while time.monotonic() - started < seconds:
            rounds += 1
            _round(rounds, scenarios, models, model_store)
        lived = {p: pid for p, pid in server_pids(cluster, namespace, "bad").items() if steady.get(p) == pid}
        assert lived, f"no model server pod lived through the soak: {steady}"
        after = {"operator": rss_bytes(operator.proc.pid), **{p: rss_bytes(pid) for p, pid in lived.items()}}
    finally:
        for t in traffic.values():
            t.__exit__(None, None, None)
    growth = {k: after[k] / before[k] - 1 for k in after}
    print(f"soak: {rounds} rounds in {time.monotonic() - started:.0f} s; RSS growth "
          + ", ".join(f"{k} {before[k] / 2**20:.0f}->{after[k] / 2**20:.0f} MiB ({g:+.1%})" for k, g in growth.items()))
    assert max(growth.values()) < MAX_GROWTH, growth
    for s in scenarios.values():
        history = s.status().get("history") or []
        assert 0 < len(history) <= HISTORY_LIMIT and (rounds < HISTORY_LIMIT or len(history) == HISTORY_LIMIT), (
            s.name, len(history))
    assert len(scenarios["good"].deployments()) == len(scenarios["bg"].deployments()) == 1
    left = [(d.metadata.labels["modelrollout.dev/version"], d.spec.replicas) for d in scenarios["bad"].deployments()]
    assert sorted(left)[0] == ("1", 2) and all(r == 0 for v, r in left if v != "1"), left
    assert len(left) <= 2, f"rejected canaries' Deployments pile up: {left}"
    core = kubernetes.client.CoreV1Api(cluster.api)
    assert core.list_namespaced_config_map(namespace, label_selector="modelrollout.dev/rollout").items == []
    for key in ("good", "bg"):
        assert traffic[key].stats.failures == 0, (key, traffic[key].stats.statuses)
    assert traffic["bad"].stats.by_version["1"].failed == 0
