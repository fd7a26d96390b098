"""Chaos: the operator is SIGKILLed at random moments while a canary is promoted, a blue-green
rollout switches and a bad canary is rolled back, all at once and under continuous traffic.

Promise kept: every rollout reaches the right outcome, nothing is created twice, no canary step is
repeated or skipped (read from the Events), and no user request fails except those the bad model
itself answered with errors. The moments come from a seeded generator; the seed is printed and in
every failure message, and `CHAOS_SEED=<seed>` replays a run. `make test` runs 3 kills,
`make chaos` 20 (CHAOS_KILLS) over several rounds of new versions.
"""

from __future__ import annotations

import collections
import os
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

import pytest

from localcluster.testing import wait_until
from tests.conftest import ClusterHandle
from tests.e2e.rollouts import OperatorProcess, Scenario, Traffic, make_rollout

pytestmark = pytest.mark.e2e
ANALYSIS = {"interval": "2s", "minSamples": 40, "failureLimit": 2, "inconclusiveLimit": 40, "minExposure": "4s",
            "metrics": [{"name": "error-rate", "type": "errorRate", "margin": 0.03}]}
STEPS = [{"setWeight": 25}, {"pause": {"duration": "4s"}}, {"setWeight": 50}, {"pause": {"duration": "4s"}},
         {"setWeight": 100}]
BLUE_GREEN = {"previewService": "bg-preview", "autoPromotionSeconds": 4, "scaleDownDelaySeconds": 2}
KILLS_PER_ROUND = 3
ROUND_SECONDS = 40.0  # kills fall within this window after a round's new versions are applied


@dataclass
class Killer:
    """Kills and restarts the operator at the given offsets (seconds) from start() in a thread."""

    operator: OperatorProcess
    offsets: list[float]
    rng: random.Random

    def run(self) -> threading.Thread:
        started = time.monotonic()

        def loop() -> None:
            for offset in self.offsets:
                time.sleep(max(0.0, started + offset - time.monotonic()))
                self.operator.kill()
                time.sleep(self.rng.uniform(0.5, 3.0))  # down for a moment, as a crash-looping pod would be
                self.operator.start()

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        return thread


def _versions(s: Scenario) -> list[str]:
    return [d.metadata.labels["modelrollout.dev/version"] for d in s.deployments()]


def _serving(s: Scenario) -> list[str]:
    """Versions with pods wanted (a rolled-back canary's Deployment may stay at 0 replicas)."""
    return [d.metadata.labels["modelrollout.dev/version"] for d in s.deployments() if d.spec.replicas]


def _messages(s: Scenario, reason: str) -> list[str]:
    return [m for _, r, m in s.events() if r == reason]


def _run_round(version: str, scenarios: dict[str, Scenario], models: dict[str, Any], store: str,
               killer: Killer, context: str) -> None:
    good, bg, bad = scenarios["good"], scenarios["bg"], scenarios["bad"]
    lr = models["models"]["lr"]
    good.apply(make_rollout(good.name, version, lr, store, replicas=2, steps=STEPS, analysis=ANALYSIS))
    bg.apply(make_rollout(bg.name, version, lr, store, replicas=2, blue_green=BLUE_GREEN))
    bad.apply(make_rollout(bad.name, version, lr, store, replicas=2, steps=STEPS, analysis=ANALYSIS,
                           faults={"MODELSERVER_CHAOS_ERROR_RATE": "0.3"}))
    most = collections.Counter[str]()

    def done(s: Scenario, phase: str, stable: str) -> bool:
        most[s.name] = max(most[s.name], len(_serving(s)))
        duplicated = [v for v, n in collections.Counter(_versions(s)).items() if n > 1]
        assert not duplicated, f"{context}: two Deployments for version {duplicated} of {s.name}"
        st = s.status()
        return st.get("phase") == phase and st.get("stableVersion") == stable

    thread = killer.run()
    expectations = [(good, "Healthy", version), (bg, "Healthy", version), (bad, "RolledBack", bad.status()
                                                                             ["stableVersion"])]
    for s, phase, stable in expectations:
        wait_until(lambda s=s, p=phase, v=stable: done(s, p, v), 300, f"{context}: {s.name} {phase} on {stable}",
                   describe=s.describe)
    thread.join(ROUND_SECONDS + 10)
    assert not thread.is_alive(), f"{context}: the killer did not finish"
    assert max(most.values()) <= 2, f"{context}: more than two versions serving at once: {dict(most)}"
    # The next round starts from one serving version per rollout, as a person's next release would.
    for s in scenarios.values():
        wait_until(lambda s=s: len(_serving(s)) == 1, 60, f"{context}: {s.name} down to one version",
                   describe=s.describe)


def test_operator_killed_at_random_moments_converges_without_repeats_or_failed_requests(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any],
        model_store: str) -> None:
    kills = int(os.environ.get("CHAOS_KILLS", "3"))
    seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(1 << 30))
    print(f"chaos: seed {seed}, {kills} kills (replay with CHAOS_SEED={seed})")
    rng = random.Random(seed)
    scenarios = {key: Scenario(cluster, namespace, key) for key in ("good", "bg", "bad")}
    lr = models["models"]["lr"]
    for key, s in scenarios.items():
        s.apply(make_rollout(s.name, "1", lr, model_store, replicas=2, steps=STEPS, analysis=ANALYSIS,
                             blue_green=BLUE_GREEN if key == "bg" else None))
    for s in scenarios.values():
        s.wait_phase("Healthy", 120)
    rounds = max(1, -(-kills // KILLS_PER_ROUND))
    left = kills
    traffic = {k: Traffic(s.service_url(), s.name, models["holdout"], rate=30) for k, s in scenarios.items()}
    for t in traffic.values():
        t.__enter__()
    try:
        for n in range(rounds):
            count = min(KILLS_PER_ROUND, left)
            left -= count
            offsets = sorted(rng.uniform(1.0, ROUND_SECONDS) for _ in range(count))
            context = f"seed {seed}, round {n + 1}/{rounds}, kills at {[round(o, 1) for o in offsets]} s"
            _run_round(str(n + 2), scenarios, models, model_store, Killer(operator, offsets, rng), context)
    finally:
        for t in traffic.values():
            t.__exit__(None, None, None)
    context = f"seed {seed}"
    assert operator.starts > kills, f"{context}: the operator was not restarted {kills} times"
    completed = _messages(scenarios["good"], "StepCompleted")
    assert sorted(collections.Counter(completed).values()) == [rounds] * (len(STEPS) - 1), (context, completed)
    for key in ("good", "bg"):
        promoted = _messages(scenarios[key], "Promoted")
        assert len(promoted) == len(set(promoted)) == rounds, (context, key, promoted)
    rolled_back = [m for _, _, m in scenarios["bad"].events() if m.startswith("version ") and " rolled back: " in m]
    assert len(rolled_back) == len(set(rolled_back)) == rounds, (context, rolled_back)
    for key in ("good", "bg"):
        stats = traffic[key].stats
        assert stats.failures == 0, (context, key, stats.statuses, stats.transport_errors)
    bad = traffic["bad"].stats
    assert bad.by_version["1"].failed == 0 and bad.by_version["1"].ok > 100, (context, bad.statuses)
    assert not bad.transport_errors, (context, bad.transport_errors)
