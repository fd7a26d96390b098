"""Two operator replicas with leader election on a Lease: only the leader acts; SIGKILL the leader
mid-canary and the standby takes over within the lease duration, the rollout completes with no step
repeated or skipped and no failed request; a leader stopped cleanly hands over at once."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from localcluster.testing import wait_until
from modelrollout import leader
from tests.conftest import ClusterHandle
from tests.e2e.rollouts import OperatorProcess, Scenario, Traffic, make_rollout

pytestmark = pytest.mark.e2e
ANALYSIS = {"interval": "2s", "minSamples": 40, "failureLimit": 2, "inconclusiveLimit": 60, "minExposure": "4s",
            "metrics": [{"name": "error-rate", "type": "errorRate", "margin": 0.03}]}
STEPS = [{"setWeight": 25}, {"pause": {"duration": "4s"}}, {"setWeight": 50}, {"pause": {"duration": "10s"}},
         {"setWeight": 75}, {"pause": {"duration": "4s"}}, {"setWeight": 100}]
LEASE = "modelrollout-operator"


def holder(cluster: ClusterHandle, namespace: str) -> str | None:
    coordination = kubernetes.client.CoordinationV1Api(cluster.api)
    try:
        return coordination.read_namespaced_lease(LEASE, namespace).spec.holder_identity or None
    except kubernetes.client.ApiException:
        return None


def replica(cluster: ClusterHandle, namespace: str, name: str, logs: Path) -> OperatorProcess:
    (logs / name).mkdir()
    return OperatorProcess(cluster.kubeconfig, logs / name,
                           ["--leader-elect", "--lease-namespace", namespace, "--identity", name])


def test_standby_takes_over_from_a_killed_leader_mid_canary(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any],
        model_store: str, tmp_path: Path) -> None:
    operator.kill()  # the session's single operator would act beside the pair
    a, b = replica(cluster, namespace, "op-a", tmp_path), replica(cluster, namespace, "op-b", tmp_path)
    try:
        a.start()
        wait_until(lambda: holder(cluster, namespace) == "op-a", 30, "op-a to lead")
        b.start()
        wait_until(lambda: b.probe("/readyz") == 200, 30, "the standby to be ready")
        assert b.probe("/healthz") == 200 and holder(cluster, namespace) == "op-a"
        s = Scenario(cluster, namespace, "ha")
        lr = models["models"]["lr"]
        s.apply(make_rollout(s.name, "1", lr, model_store, replicas=2, analysis=ANALYSIS))
        s.wait_phase("Healthy", 90)
        with Traffic(s.service_url(), s.name, models["holdout"], rate=40) as traffic:
            s.apply(make_rollout(s.name, "2", lr, model_store, replicas=2, steps=STEPS, analysis=ANALYSIS))
            wait_until(lambda: s.status().get("desiredWeight") == 50, 120, "the 50% step", describe=s.describe)
            a.kill()
            killed = time.monotonic()
            wait_until(lambda: holder(cluster, namespace) == "op-b", leader.LEASE_SECONDS + 10, "op-b to take over")
            took = time.monotonic() - killed
            print(f"ha: op-b took over {took:.1f} s after op-a was killed")
            final = wait_until(lambda: (st := s.status()).get("phase") == "Healthy" and st.get("stableVersion") == "2"
                               and st, 180, "Healthy on version 2 under op-b", describe=s.describe)
        assert took <= 15, f"the standby took {took:.1f} s to take over"
        assert final["stableVersion"] == "2"
        completed = [m for _, reason, m in s.events() if reason == "StepCompleted"]
        assert completed == sorted(set(completed)) and len(completed) == len(STEPS) - 1, completed
        assert traffic.stats.failures == 0, traffic.stats.explain()

        # A clean stop releases the Lease: the restarted op-a takes over at its next retry.
        a.start()
        wait_until(lambda: a.probe("/readyz") == 200, 30, "op-a back as a standby")
        b.kill(signal.SIGTERM)
        stopped = time.monotonic()
        wait_until(lambda: holder(cluster, namespace) == "op-a", 15, "op-a to take the released Lease")
        assert time.monotonic() - stopped < leader.LEASE_SECONDS, "the Lease was not released"
        assert b.proc is not None and b.proc.returncode == 0, b.logs()[-2000:]
    finally:
        a.kill()
        b.kill()
        operator.start()
