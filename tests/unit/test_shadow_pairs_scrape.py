"""The shadow stage's scrape against real HTTP servers on loopback addresses (one per candidate pod), serving what
the model server's own metrics write: the operator reads the pairs the server counts, by pod uid, and a pod that
cannot be read is named, never silently left out."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from modelrollout.analysis.paired import PairedCounts
from modelrollout.kube import PodTarget
from modelrollout.sources.shadowpairs import read_shadow_pairs
from modelserver.contract import ShadowLabelOutcome
from modelserver.metrics import ServerMetrics
from tests.unit.test_podscrape_faults import free_port

pytestmark = pytest.mark.unit


def candidate_page() -> bytes:
    """A candidate's /metrics after 5 mirrored rows (4 agreeing) and 3 labelled ones, as its server writes it."""
    metrics = ServerMetrics("fraud", "2")
    metrics.record_shadow_pairs([("0", "0"), ("1", "1"), ("1", "1"), ("0", "0"), ("1", "0")])
    metrics.record_shadow_labelled([ShadowLabelOutcome.BOTH_RIGHT, ShadowLabelOutcome.STABLE_ONLY,
                                    ShadowLabelOutcome.STABLE_ONLY])
    return metrics.render()


async def _scenario() -> None:
    port = free_port()
    page = candidate_page()

    async def handle(_: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.2", port).start()
    try:
        pods = [PodTarget("fraud-v2-a", "uid-a", "127.0.0.2", "2", None),
                PodTarget("fraud-v2-b", "uid-b", "127.0.0.3", "2", None),  # nothing listens there
                PodTarget("fraud-v1-a", "uid-c", "127.0.0.4", "1", None)]  # a stable pod: not read
        seen = await read_shadow_pairs(pods, port, "/metrics", "fraud", "2", timeout=1.0)
    finally:
        await runner.cleanup()
    assert dict(seen.pods) == {"uid-a": PairedCounts(agree=4, disagree=1, both_right=1, stable_only=2)}
    assert len(seen.errors) == 1 and "fraud-v2-b: scrape failed" in seen.errors[0], seen.errors
    nobody = await read_shadow_pairs(pods[2:], port, "/metrics", "fraud", "2")
    assert not nobody.pods and nobody.errors == ("version 2 has no ready pods to scrape",)


def test_the_operator_reads_the_pairs_the_candidate_counts_and_names_an_unreadable_pod() -> None:
    asyncio.run(_scenario())
