"""The pod metric source counts a version's feedback over the pods of both versions: with prediction
tokens a label counts for the version that predicted on whichever pod received it. Real servers on
loopback addresses expose the model server's own metrics (ServerMetrics), so the operator reads what
the server writes."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from modelrollout.kube import PodTarget
from modelrollout.sources import ScrapeRequest
from modelrollout.sources.podscrape import PodScrapeSource
from modelserver.contract import FeedbackOutcome, Protocol
from modelserver.metrics import ServerMetrics
from tests.unit.test_podscrape_faults import free_port

pytestmark = pytest.mark.unit
MODEL = "fraud"


class Pod:
    def __init__(self, ip: str, version: str) -> None:
        self.ip, self.version = ip, version
        self.restart()

    def restart(self) -> None:
        """A container restart: the same pod, its counters from zero."""
        self.metrics = ServerMetrics(MODEL, self.version)
        self.metrics.declare_classes(("0", "1"))

    async def handle(self, _: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), content_type="text/plain")

    def labels(self, version: str, correct: int, incorrect: int) -> None:
        """Labels for `version`'s predictions arriving at this pod (its own version or the other one)."""
        self.metrics.record_feedback(FeedbackOutcome.CORRECT, correct, version)
        self.metrics.record_feedback(FeedbackOutcome.INCORRECT, incorrect, version)

    def target(self) -> PodTarget:
        return PodTarget(name=f"pod-{self.ip}", uid=self.ip, ip=self.ip, version=self.version, started_at=None)


async def serve(*pods: Pod, port: int) -> list[web.AppRunner]:
    """Each pod's /metrics on its own loopback address, as a pod IP answers the operator's scrape."""
    runners = []
    for pod in pods:
        app = web.Application()
        app.router.add_get("/metrics", pod.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, pod.ip, port).start()
        runners.append(runner)
    return runners


def scrape_request(stable: Pod, canary: Pod, port: int) -> ScrapeRequest:
    return ScrapeRequest(key="ns/fraud", model=MODEL, canary_version="2", stable_version="1", port=port,
                         pods=[stable.target(), canary.target()])


async def _scenario() -> list[tuple[float, float, float, float, int, int]]:
    port = free_port()
    stable, canary = Pod("127.0.0.21", "1"), Pod("127.0.0.22", "2")
    runners = await serve(stable, canary, port=port)
    source = PodScrapeSource()
    request = scrape_request(stable, canary, port)
    seen = []
    try:
        canary.labels("1", 5, 5)  # history before the first look: a baseline, not counted
        assert await source.observe(request) is None

        async def look() -> None:
            tick = await source.observe(request)
            assert tick is not None and tick.stable is not None and tick.canary is not None, tick
            seen.append((tick.stable.feedback_correct, tick.stable.feedback_incorrect, tick.canary.feedback_correct,
                         tick.canary.feedback_incorrect, tick.stable.pods, tick.canary.pods))

        stable.metrics.observe_request(Protocol.V2, 200, 0.001)
        canary.labels("1", 3, 1)  # version 1's labels, received by the canary's pod
        stable.labels("2", 2, 0)  # a series that first appears now, in a pod seen before: counts in full
        stable.labels("1", 1, 0)
        await look()
        canary.restart()  # its counters begin again: the new value is the increment
        canary.labels("1", 1, 0)
        await look()
    finally:
        for runner in runners:
            await runner.cleanup()
    return seen


def test_a_version_s_feedback_is_summed_over_the_pods_of_both_versions() -> None:
    assert asyncio.run(_scenario()) == [(4.0, 1.0, 2.0, 0.0, 1, 1), (1.0, 0.0, 0.0, 0.0, 1, 1)]
