"""Numeric outcomes (revenue) posted the way they arrive in production - through the Service, on fresh connections,
to whichever pod of the rollout answers - are counted for the version that predicted, in the counters the operator's
pod scrape reads (docs/metrics.md, "Numeric outcomes"); a typo in an outcome's name is refused, not a new series."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import kubernetes
import pytest

from localcluster.testing import wait_until
from localcluster.traffic import read_metrics
from modelserver.contract_parse import OutcomeTotals, parse_pod_metrics
from tests.conftest import ClusterHandle
from tests.e2e.predictions import predict_on_fresh_connections
from tests.e2e.rollouts import OperatorProcess, Scenario, make_rollout

pytestmark = pytest.mark.e2e

PREDICTIONS = 200
SELECTOR = "modelrollout.dev/rollout=shop"
REVENUE = {"1": 10.0, "2": 12.5}  # what a customer spends after each version's answer


async def _predict(url: str, rows: list[list[float]]) -> list[tuple[str, str]]:
    """(version, token) of answers, spread over every pod."""
    answered = await predict_on_fresh_connections(url, "shop", rows, PREDICTIONS)
    return [(version, payload["parameters"]["prediction_token"]) for version, payload in answered]


async def _post_outcomes(url: str, items: list[dict[str, Any]]) -> list[int]:
    """Each item on its own fresh connection: any pod of the rollout may count it."""
    statuses = []
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as session:
        for item in items:
            async with session.post(f"{url}/v2/models/shop/feedback", json=item) as resp:
                await resp.read()
                statuses.append(resp.status)
    return statuses


def _revenue_by_version(core: kubernetes.client.CoreV1Api, namespace: str) -> dict[str, OutcomeTotals]:
    """What the pod scrape reads: each version's revenue series summed over every pod of the rollout."""
    totals: dict[str, OutcomeTotals] = {}
    for pod in core.list_namespaced_pod(namespace, label_selector=SELECTOR).items:
        for (_model, version), m in parse_pod_metrics(read_metrics(pod.status.pod_ip, 8080)).models.items():
            found, seen = m.outcomes.get("revenue", OutcomeTotals()), totals.get(version, OutcomeTotals())
            totals[version] = OutcomeTotals(seen.count + found.count, seen.sum + found.sum,
                                            seen.squares + found.squares)
    return totals


def test_outcomes_posted_through_the_service_count_for_the_version_that_predicted(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any],
        model_store: str) -> None:
    core = kubernetes.client.CoreV1Api(cluster.api)
    # Given two versions declaring the outcome "revenue", two pods each behind one Service (a canary paused at 50%)
    env = {"MODELSERVER_OUTCOMES": "revenue"}
    s = Scenario(cluster, namespace, "shop")
    s.apply(make_rollout("shop", "1", models["models"]["lr"], model_store, env=env))
    s.wait_phase("Healthy", 90)
    s.apply(make_rollout("shop", "2", models["models"]["rf"], model_store, env=env,
                         steps=[{"setWeight": 50}, {"pause": {}}]))
    s.wait_phase("Paused", 120)
    wait_until(lambda: sorted(d.status.ready_replicas or 0 for d in s.deployments()) == [2, 2], 60,
               "two ready pods per version")

    # When predictions go through the Service, and each one's revenue comes back later on a fresh connection
    answered = asyncio.run(_predict(s.service_url(), models["holdout"]["X"]))
    sent = {v: sum(1 for version, _ in answered if version == v) for v in REVENUE}
    assert min(sent.values()) >= PREDICTIONS * 0.25, sent
    items = [{"token": token, "outcome": {"revenue": REVENUE[version]}} for version, token in answered]
    statuses = asyncio.run(_post_outcomes(s.service_url(), items))
    # And a client misspells the name
    typo = asyncio.run(_post_outcomes(s.service_url(), [{"token": answered[0][1], "outcome": {"revenu": 1}}]))

    # Then every outcome counted once, for the version that predicted, whichever pod received it
    assert statuses == [200] * PREDICTIONS
    counted = _revenue_by_version(core, namespace)
    for version, value in REVENUE.items():
        n = sent[version]
        assert counted[version] == OutcomeTotals(n, n * value, n * value * value), (version, counted)
    # And the misspelt one was refused naming the item, with no series of its own
    assert typo == [422]
    pages = [read_metrics(p.status.pod_ip, 8080) for p in
             core.list_namespaced_pod(namespace, label_selector=SELECTOR).items]
    assert not any("revenu\"" in page for page in pages)
    assert any('reason="undeclared_outcome"' in page for page in pages)
