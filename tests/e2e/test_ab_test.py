"""strategy.abTest on the local cluster, under live traffic with feedback labels: a more accurate B is promoted as
the winner, a B earning more revenue per prediction (posted with feedback) wins on an outcome goal, an A/A
experiment ends at maxSamples with "no significant difference" keeping A, a B answering errors is stopped early by
the guard-rails, keeping A; and through a real gateway (the gatewayAPI router) B gets exactly its weight of
requests on fewer pods, and wins."""

from __future__ import annotations

import asyncio
import collections
import random
import subprocess
import sys
import threading
import time
from typing import Any

import aiohttp
import pytest

from localcluster.modeltraffic import revenue_after
from tests.conftest import ClusterHandle
from tests.e2e.gateway import Gateway
from tests.e2e.rollouts import OperatorProcess, Outcome, Scenario, Traffic, make_rollout

pytestmark = pytest.mark.e2e
GUARD_RAILS = {"interval": "2s", "minSamples": 60, "failureLimit": 2, "inconclusiveLimit": 1000,
               "metrics": [{"name": "error-rate", "type": "errorRate", "margin": 0.05}]}


def ab_rollout(s: Scenario, version: str, model: dict[str, Any], store: str, faults: dict[str, str] | None = None,
               **ab: Any) -> dict[str, Any]:
    """Two pods, B on one of them: each new connection (one request each, see `traffic`) picks an arm at random."""
    rollout = make_rollout(s.name, version, model, store, replicas=2, analysis=GUARD_RAILS, faults=faults)
    rollout["spec"]["strategy"] = {"abTest": {"weight": 50, "minSamplesPerArm": 100, "maxDuration": "4m", **ab}}
    return rollout


def routed_ab_rollout(s: Scenario, route: str, version: str, model: dict[str, Any], store: str,
                      **ab: Any) -> dict[str, Any]:
    """ab_rollout through the gateway: the HTTPRoute `route` splits the requests (trafficRouting.gatewayAPI)."""
    rollout = ab_rollout(s, version, model, store, **ab)
    rollout["spec"]["trafficRouting"] = {"gatewayAPI": {"httpRoute": route}}
    return rollout


def given_version_1(s: Scenario, model: dict[str, Any], store: str) -> None:
    s.apply(ab_rollout(s, "1", model, store))
    s.wait_phase("Healthy", 90)


def traffic(s: Scenario, models: dict[str, Any], outcome: Outcome | None = None) -> Traffic:
    # One request per connection: the sample-ratio check assumes requests, not connections, pick the arm.
    return Traffic(s.service_url(), s.name, models["holdout"], rate=80, burst=1, outcome=outcome)


def test_a_more_accurate_b_is_promoted_as_the_winner(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any],
        model_store: str) -> None:
    # Given version 1 (lr-biased, 80% accurate on the holdout) serving under traffic with labels
    s = Scenario(cluster, namespace, "abwin")
    given_version_1(s, models["models"]["lr-biased"], model_store)
    with traffic(s, models) as sent:
        # When version 2 (rf, 92%: 12 points better) is tried against it in an A/B experiment
        s.apply(ab_rollout(s, "2", models["models"]["rf"], model_store))
        final = s.wait_phase("Healthy", 240)
    # Then B is declared the winner on its interval and promoted
    assert final["stableVersion"] == "2", final["message"]
    assert final["history"][-1]["reason"] == "ABTestWinner", final["history"]
    ab = final["abTest"]
    assert ab["winner"] == "B" and ab["interval"][0] > 0, ab
    assert min(ab["arms"]["A"]["samples"], ab["arms"]["B"]["samples"]) >= 100, ab
    assert 0.05 < ab["estimate"] < 0.2, ab
    assert not ab["srmBroken"] and 0.35 < ab["shareB"] < 0.65, ab
    assert sent.stats.by_version["2"].ok > 0 and sent.stats.by_version["1"].ok > 0
    experimenting = [st for st in s.seen if st.get("reason") == "Experimenting"]
    assert experimenting and all(st.get("desiredWeight") == 50 for st in experimenting)
    events = s.events()
    assert any(reason == "ABTestStarted" for _, reason, _ in events), events
    assert any(reason == "ABTestWinner" and "B wins" in message for _, reason, message in events), events
    # And `kubectl modelrollout status` shows each arm and the result
    shown = subprocess.run([sys.executable, "-m", "modelrollout.cli", "status", s.name, "-n", namespace,
                            "--kubeconfig", str(cluster.kubeconfig)], capture_output=True, text=True, check=True)
    assert "A/B test:    v2 (B) against the stable version (A)" in shown.stdout and "winner B" in shown.stdout
    assert "  B wins: B - A = +0." in shown.stdout, shown.stdout


def test_b_earning_more_revenue_per_prediction_wins_on_the_outcome_goal_counted_by_a_s_older_pods_too(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any],
        model_store: str) -> None:
    # Given version 1 (lr-biased, 80% accurate), started before any experiment: no outcome declared to its pods
    s = Scenario(cluster, namespace, "abrevenue")
    given_version_1(s, models["models"]["lr-biased"], model_store)
    a_pods = {p.metadata.name for p in s.pods("1")}
    with traffic(s, models, outcome=revenue_after) as sent:
        # When version 2 (rf, 92%) is tried against it on the revenue clients post with their feedback
        s.apply(ab_rollout(s, "2", models["models"]["rf"], model_store,
                           goal={"type": "outcome", "outcome": "revenue"}))
        final = s.wait_phase("Healthy", 240)
    # Then B is declared the winner on mean revenue per prediction (+1.8 expected), reported as Cohen's d
    assert final["stableVersion"] == "2" and final["history"][-1]["reason"] == "ABTestWinner", final["message"]
    ab = final["abTest"]
    assert ab["goal"] == "revenue" and ab["winner"] == "B" and ab["interval"][0] > 0, ab
    assert 0.3 < ab["estimate"] < 3.5 and 0.0 < ab["effectSize"] < 0.6, ab
    assert min(ab["arms"]["A"]["samples"], ab["arms"]["B"]["samples"]) >= 100, ab
    assert "Cohen's d" in ab["message"] and not ab["srmBroken"], ab
    # counted on A's pods that predate the experiment (declared through the mounted file, no restart)
    assert {p.metadata.name for p in s.pods("1")} <= a_pods
    assert all(c.restart_count == 0 for p in s.pods("1") for c in p.status.container_statuses)
    assert sent.stats.by_version["1"].feedback_sent > 0 and sent.stats.by_version["2"].feedback_sent > 0
    started = [m for _, reason, m in s.events() if reason == "ABTestStarted"]
    assert started and "goal: the mean of outcome 'revenue'" in started[-1], started


def test_an_a_a_experiment_ends_at_max_samples_with_no_significant_difference(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any],
        model_store: str) -> None:
    # Given version 1 (lr) serving under traffic with labels
    s = Scenario(cluster, namespace, "abequal")
    given_version_1(s, models["models"]["lr"], model_store)
    with traffic(s, models):
        # When version 2 is the same model, tried in an A/B experiment of at most 1,500 judged predictions
        s.apply(ab_rollout(s, "2", models["models"]["lr"], model_store, maxSamples=1500, goal={"alpha": 0.01}))
        final = s.wait_phase("RolledBack", 240)
    # Then no winner was declared: A stays, and the message gives the interval around 0
    assert final["stableVersion"] == "1" and final["reason"] == "ABTestNoWinner", final["message"]
    assert "no significant difference: B - A = " in final["message"], final["message"]
    assert "always-valid interval [-" in final["message"] and "maxSamples 1500 reached" in final["message"]
    ab = final["abTest"]
    assert ab["winner"] == "none" and ab["interval"][0] < 0 < ab["interval"][1], ab
    assert ab["arms"]["A"]["samples"] + ab["arms"]["B"]["samples"] >= 1500, ab


def test_b_answering_errors_ends_the_experiment_early_keeping_a(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any],
        model_store: str) -> None:
    # Given version 1 (lr) serving under traffic with labels
    s = Scenario(cluster, namespace, "aberrs")
    given_version_1(s, models["models"]["lr"], model_store)
    with traffic(s, models) as sent:
        # When version 2 is more accurate (rf) but fails 30% of its requests
        s.apply(ab_rollout(s, "2", models["models"]["rf"], model_store,
                           faults={"MODELSERVER_CHAOS_ERROR_RATE": "0.3"}))
        final = s.wait_phase("RolledBack", 180)
    # Then the error-rate guard-rail rolled it back before the experiment could end, and A serves everything
    assert final["stableVersion"] == "1" and final["reason"] == "AnalysisFailed", final["message"]
    assert "canary error rate" in final["message"], final["message"]
    assert final["abTest"]["winner"] != "B", final["abTest"]
    assert sent.stats.by_version["2"].failed > 0 and sent.stats.by_version["1"].failed == 0


def test_through_the_gateway_b_gets_exactly_its_weight_of_requests_and_wins(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any],
        model_store: str, gateway: Gateway) -> None:
    # Given version 1 (lr-biased) behind the user's HTTPRoute, the A/B experiment routed by the gateway at 30%
    s = Scenario(cluster, namespace, "abgw")
    gateway.create_route("web-route", backend=s.name)
    split = {"weight": 30}
    s.apply(routed_ab_rollout(s, "web-route", "1", models["models"]["lr-biased"], model_store, **split))
    s.wait_phase("Healthy", 120)
    pods_seen: list[tuple[tuple[str, int], ...]] = []

    def note_pods(st: dict[str, Any]) -> None:
        if st.get("reason") == "Experimenting":
            pods_seen.append(tuple(sorted((d.metadata.labels["modelrollout.dev/version"], d.spec.replicas)
                                       for d in s.deployments())))

    with Traffic(gateway.url, s.name, models["holdout"], rate=80, burst=5) as sent:
        # When version 2 (rf, 12 points more accurate) is tried against it
        s.apply(routed_ab_rollout(s, "web-route", "2", models["models"]["rf"], model_store, **split))
        final = s.wait_phase("Healthy", 240, check=note_pods)
    # Then B won on its interval, having had 30% of the judged predictions (not 1 pod of 3), with no failed request
    assert final["stableVersion"] == "2" and final["history"][-1]["reason"] == "ABTestWinner", final["message"]
    ab = final["abTest"]
    assert ab["winner"] == "B" and ab["split"] == 0.3 and not ab["srmBroken"], ab
    assert 0.24 < ab["shareB"] < 0.36, ab
    # on one pod of B beside A's two: the route, not the pods, split the requests
    # (the last look may list the Deployments just after the winner was promoted: B already scaling up)
    assert len(pods_seen) > 1 and set(pods_seen[:-1]) == {(("1", 2), ("2", 1))}, pods_seen
    assert sent.stats.failures == 0, sent.stats.explain()


class StickyUsers:
    """Users of a product behind the gateway, each with a cookie jar (a browser's): a user sends `requests`
    predictions on fresh connections, then posts one revenue outcome for the whole visit (on the token of
    their first answer, from whether it was right), as a sticky split needs: one sample per user."""

    def __init__(self, url: str, model: str, holdout: dict[str, Any], requests: int = 2, concurrency: int = 8) -> None:
        self.url, self.model, self.holdout = url, model, holdout
        self.requests, self.concurrency = requests, concurrency
        self.seen: list[list[str]] = []  # the versions that answered each user, in order
        self.assigned: list[bool] = []  # whether the user's first answer put them on an arm (Set-Cookie)
        self.times: list[tuple[float, float]] = []  # each visit's first request and last answer (monotonic)
        self.failures = 0
        self._stop = asyncio.Event()
        self._thread: threading.Thread | None = None
        self._loop = asyncio.new_event_loop()
        self._rng = random.Random(11)

    async def _user(self) -> None:
        jar = aiohttp.CookieJar(unsafe=True)  # the gateway is reached by IP: keep its cookies anyway
        async with aiohttp.ClientSession(cookie_jar=jar, connector=aiohttp.TCPConnector(force_close=True),
                                         timeout=aiohttp.ClientTimeout(total=10)) as session:
            versions, first, assigned, began = [], None, False, time.monotonic()
            for _ in range(self.requests):
                i = self._rng.randrange(len(self.holdout["X"]))
                row = self.holdout["X"][i]
                body = {"inputs": [{"name": "x", "shape": [1, len(row)], "datatype": "FP64", "data": row}]}
                async with session.post(f"{self.url}/v2/models/{self.model}/infer", json=body) as resp:
                    if resp.status != 200:
                        self.failures += 1
                        return
                    answer = await resp.json()
                versions.append(resp.headers["X-Model-Version"])
                if first is None:
                    assigned = "Set-Cookie" in resp.headers
                    right = answer["outputs"][0]["data"][0] == self.holdout["y"][i]
                    first = (answer["parameters"]["prediction_token"], right)
            assert first is not None
            self.seen.append(versions)
            self.assigned.append(assigned)
            self.times.append((began, time.monotonic()))
            item = {"token": first[0], "outcome": revenue_after(first[1], self._rng)}
            async with session.post(f"{self.url}/v2/models/{self.model}/feedback", json={"feedback": [item]}) as r:
                self.failures += r.status != 200

    async def _run(self) -> None:
        async def worker() -> None:
            while not self._stop.is_set():
                try:
                    await self._user()
                except (aiohttp.ClientError, OSError, TimeoutError):
                    self.failures += 1
                await asyncio.sleep(0.02)  # a user's think time between visits: pacing, not waiting

        await asyncio.gather(*(worker() for _ in range(self.concurrency)))

    def __enter__(self) -> StickyUsers:
        self._thread = threading.Thread(target=lambda: self._loop.run_until_complete(self._run()), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        assert self._thread is not None
        self._thread.join(30)


def test_a_sticky_split_keeps_each_user_on_one_arm_and_b_wins_on_revenue_per_user(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any],
        model_store: str, gateway: Gateway) -> None:
    # Given version 1 (lr-biased) behind the user's HTTPRoute
    s = Scenario(cluster, namespace, "absticky")
    gateway.create_route("sticky-route", backend=s.name)
    sticky = {"weight": 50, "goal": {"type": "outcome", "outcome": "revenue"}, "sticky": {"cookie": "ab-arm"}}
    s.apply(routed_ab_rollout(s, "sticky-route", "1", models["models"]["lr-biased"], model_store, **sticky))
    s.wait_phase("Healthy", 120)
    rules_seen: list[list[str]] = []
    experimenting: list[float] = []  # when the status said Experimenting (monotonic)

    def note_rules(st: dict[str, Any]) -> None:
        if st.get("reason") == "Experimenting":
            experimenting.append(time.monotonic())
            rules_seen.append([r.get("name", "") for r in gateway.route("sticky-route")["spec"]["rules"]])

    with StickyUsers(gateway.url, s.name, models["holdout"]) as users:
        # When version 2 (rf, more accurate: more revenue per user) is tried against it with a sticky split
        s.apply(routed_ab_rollout(s, "sticky-route", "2", models["models"]["rf"], model_store, **sticky))
        try:
            final = s.wait_phase("Healthy", 240, check=note_rules)
        finally:
            firsts = collections.Counter(v[0] for v in users.seen)
            print(f"sticky e2e: {len(users.seen)} visits, first answers {dict(firsts)}, failures {users.failures}")
    # Then each user put on an arm during the experiment was answered by that version only (the cookie and the
    # route's rules; without them half of these two-request visits would see both versions)
    # (the last look may read the route just after the experiment ended and its rules went)
    assert len(rules_seen) > 1, "never seen Experimenting"
    assert all(r[:2] == ["modelrollout-sticky-a", "modelrollout-sticky-b"] for r in rules_seen[:-1]), rules_seen
    during = [v for v, assigned, (began, ended) in zip(users.seen, users.assigned, users.times, strict=True)
              if assigned and experimenting[0] <= began and ended <= experimenting[-1]]
    mixed = [v for v in during if len(set(v)) > 1]
    assert len(during) > 200 and not mixed, (len(during), mixed)
    assert {v[0] for v in during} == {"1", "2"}
    # And B won on revenue per user, with the users (not the requests) split at the weight
    assert final["stableVersion"] == "2" and final["history"][-1]["reason"] == "ABTestWinner", final["message"]
    ab = final["abTest"]
    assert ab["goal"] == "revenue" and ab["winner"] == "B" and not ab["srmBroken"] and 0.4 < ab["shareB"] < 0.6, ab
    assert users.failures == 0
    # And once promoted the route carries no cookie rule any more
    assert [r.get("name") for r in gateway.route("sticky-route")["spec"]["rules"]] == [None]

