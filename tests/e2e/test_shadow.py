"""Shadow steps on the local cluster, under continuous traffic whose labels come back after each burst through the
users' Service: the stable pods mirror the requests to the candidate (told so by the rollout's mirror ConfigMap,
which the kubelet updates in place), the candidate is judged on the same requests, and users only ever get the
stable version's answers. A good candidate passes and is promoted; a candidate 10 points less accurate is rolled
back on the paired test; turning mirroring on and off restarts no stable pod."""

from __future__ import annotations

import contextlib
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import kubernetes
import pytest

from localcluster.testing import wait_until
from modelserver.contract_parse import parse_pod_metrics
from tests.conftest import ClusterHandle
from tests.e2e.rollouts import OperatorProcess, Scenario, Traffic, make_rollout

pytestmark = pytest.mark.e2e
STABLE_STEPS = [{"setWeight": 50}, {"setWeight": 100}]


def shadowed(s: Scenario, version: str, model: dict[str, Any], store: str, analysis: dict[str, Any]) -> dict[str, Any]:
    rollout = make_rollout(s.name, version, model, store, replicas=2, steps=[
        {"shadow": {"percent": 100, "replicas": 1, "interval": "4s", "timeout": "4m", "analysis": analysis}}])
    return rollout


def pods(s: Scenario, version: str) -> list[Any]:
    core = kubernetes.client.CoreV1Api(s.cluster.api)
    selector = f"modelrollout.dev/rollout={s.name},modelrollout.dev/version={version}"
    return core.list_namespaced_pod(s.namespace, label_selector=selector).items


def restarts(s: Scenario, version: str) -> dict[str, int]:
    """Each pod of `version` by uid, with its containers' restart count."""
    return {p.metadata.uid: sum(c.restart_count for c in p.status.container_statuses or ())
            for p in pods(s, version)}


def endpoint_pods(s: Scenario, service: str) -> set[str]:
    """The pods behind `service` (its EndpointSlices), by name."""
    discovery = kubernetes.client.DiscoveryV1Api(s.cluster.api)
    slices = discovery.list_namespaced_endpoint_slice(s.namespace,
                                                      label_selector=f"kubernetes.io/service-name={service}")
    return {e.target_ref.name for sl in slices.items for e in sl.endpoints or () if e.target_ref is not None}


def mirror_percents(s: Scenario, version: str) -> list[float]:
    """What each pod of `version` says it mirrors now (modelserver_mirror_percent)."""
    found = []
    for pod in pods(s, version):
        with urllib.request.urlopen(f"http://{pod.status.pod_ip}:8080/metrics", timeout=5) as response:
            metrics = parse_pod_metrics(response.read().decode()).model(s.name, version)
        found.append(-1.0 if metrics is None else metrics.mirror_percent)
    return found


class StableMirroring:
    """A wait_phase check recording, at every look, what each stable pod says it mirrors: the stage can pass or
    fail within seconds of mirroring starting, so it is seen while the rollout runs, not waited for after."""

    def __init__(self, s: Scenario, before: dict[str, int], also: Callable[[dict[str, Any]], None] | None = None,
                 ) -> None:
        self.s, self.before, self.also = s, before, also
        self.seen: list[list[float]] = []

    def __call__(self, status: dict[str, Any]) -> None:
        if self.also is not None:
            self.also(status)
        now = restarts(self.s, "1")
        assert all(now[uid] == n for uid, n in self.before.items() if uid in now), (self.before, now)
        with contextlib.suppress(OSError):  # a stable pod going away after the promotion
            self.seen.append(mirror_percents(self.s, "1"))


def never_behind_users(s: Scenario, candidate: str) -> Callable[[dict[str, Any]], None]:
    """A wait_phase check: at every look, no pod of `candidate` is an endpoint of the users' Service."""
    def check(_: dict[str, Any]) -> None:
        behind_users = endpoint_pods(s, s.name)
        candidates = {p.metadata.name for p in pods(s, candidate)}
        assert not candidates & behind_users, f"shadow pods {candidates & behind_users} behind Service {s.name}"
    return check


def first_answer_at(traffic: Traffic, version: str) -> datetime | None:
    """When (wall clock) a user first got `version`'s answer; the traffic's timeline is monotonic."""
    offset = time.time() - time.monotonic()
    times = [t for t, v, _ in traffic.stats.timeline if v == version]
    return None if not times else datetime.fromtimestamp(min(times) + offset, UTC)


def serving_version_1(cluster: ClusterHandle, namespace: str, models: dict[str, Any],
                      model_store: str) -> tuple[Scenario, dict[str, int]]:
    """Version 1 (logistic regression) Healthy on 2 pods; with its pods' restart counts."""
    s = Scenario(cluster, namespace, "fraud")
    s.apply(make_rollout(s.name, "1", models["models"]["lr"], model_store, replicas=2, steps=STABLE_STEPS))
    s.wait_phase("Healthy", 90)
    return s, restarts(s, "1")


def test_a_good_candidate_runs_in_the_shadow_unseen_then_is_promoted(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any],
        model_store: str) -> None:
    # Given version 1 (logistic regression) serving continuous traffic with labels
    s, before = serving_version_1(cluster, namespace, models, model_store)
    with Traffic(s.service_url(), "fraud", models["holdout"], burst=1) as traffic:
        # When version 2 (a random forest, 2 points better) runs in the shadow of version 1
        s.apply(shadowed(s, "2", models["models"]["rf"], model_store, {"minAgreement": 0.9, "margin": 0.03}))
        mirroring = StableMirroring(s, before)  # and no stable pod restarts while it goes on and off
        final = s.wait_phase("Healthy", 300, check=mirroring)
        wait_until(lambda: traffic.stats.by_version["2"].ok > 0, 30, "users to get version 2's answers",
                   describe=lambda: str(dict(traffic.stats.by_version)))
    assert [100.0, 100.0] in mirroring.seen, mirroring.seen  # both stable pods mirrored every request
    # Then it passed on the same requests, users got only version 1 until the promotion, and nothing failed
    assert final["stableVersion"] == "2" and final["shadow"]["stage"] == "Passed", final
    # The operator decided the pass at lastLookAt and only then pointed the users' Service at version 2.
    passed_at = datetime.fromisoformat(final["shadow"]["lastLookAt"].replace("Z", "+00:00"))
    first = first_answer_at(traffic, "2")
    assert first is not None and first >= passed_at, (first, passed_at)
    counts = final["shadow"]["counts"]
    assert counts["agree"] + counts["disagree"] >= 200, counts  # minSamples mirrored rows before any verdict
    assert counts["bothRight"] + counts["stableOnly"] + counts["candidateOnly"] + counts["bothWrong"] > 0, counts
    assert "agreement" in final["shadow"]["message"] and "paired difference" in final["shadow"]["message"]
    reasons = [reason for _, reason, _ in s.events()]
    assert "ShadowStarted" in reasons and "ShadowPassed" in reasons, reasons
    assert traffic.stats.failures == 0, traffic.stats.explain()


def test_a_worse_candidate_is_rolled_back_on_the_paired_test_and_no_stable_pod_restarts(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any],
        model_store: str) -> None:
    # Given version 1 serving continuous traffic with labels
    s, before = serving_version_1(cluster, namespace, models, model_store)
    assert mirror_percents(s, "1") == [0.0, 0.0]  # the optional ConfigMap does not exist yet: off
    with Traffic(s.service_url(), "fraud", models["holdout"], burst=1) as traffic:
        # When a candidate 10 points less accurate (lr-biased) runs in the shadow
        s.apply(shadowed(s, "2", models["models"]["lr-biased"], model_store, {"margin": 0.03}))
        mirroring = StableMirroring(s, before, also=never_behind_users(s, "2"))
        rolled = s.wait_phase("RolledBack", 240, check=mirroring)
        # Then the stable pods had turned mirroring on (a ConfigMap change, updated in place by the kubelet)
        assert [100.0, 100.0] in mirroring.seen, mirroring.seen
        # and turn it off again after the rollback
        wait_until(lambda: mirror_percents(s, "1") == [0.0, 0.0], 30, "both stable pods to stop mirroring",
                   describe=lambda: str(mirror_percents(s, "1")))
    # Then it was rolled back on the paired test, with the discordant counts in the message
    assert (rolled["reason"], rolled["rejectedVersion"]) == ("ShadowFailed", "2"), rolled
    assert "discordant" in rolled["message"] and "stable-only vs" in rolled["message"], rolled["message"]
    assert "paired difference" in rolled["message"] and "always-valid interval" in rolled["message"]
    assert rolled["shadow"]["stage"] == "Failed" and rolled["shadow"]["counts"]["stableOnly"] > 0
    # And no user got its answer or an error, and no stable pod was restarted or replaced
    assert set(traffic.stats.by_version) == {"1"}, dict(traffic.stats.by_version)
    assert traffic.stats.failures == 0, traffic.stats.explain()
    assert restarts(s, "1") == before and all(n == 0 for n in before.values()), (before, restarts(s, "1"))
    wait_until(lambda: not pods(s, "2") and endpoint_pods(s, s.name) == {p.metadata.name for p in pods(s, "1")}, 60,
               "the users' Service to select every version again once the candidate's pods are gone")
