"""The pod metric source against real HTTP servers on loopback addresses (127.0.0.x, one per
"pod"): one canary pod answering garbage, timing out or hanging makes the canary unobserved for
that tick (Inconclusive), never judged on the other pods; when it recovers, nothing was lost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from modelrollout.analysis.config import AnalysisConfig
from modelrollout.analysis.engine import assess_tick
from modelrollout.analysis.state import AnalysisState
from modelrollout.analysis.types import Verdict
from modelrollout.kube import PodTarget
from modelrollout.sources import ScrapeRequest
from modelrollout.sources.podscrape import PodScrapeSource

pytestmark = pytest.mark.unit
MODEL = "fraud"


def metrics_text(version: str, requests: int, errors: int) -> str:
    lines = [
        f'modelserver_requests_total{{model="{MODEL}",version="{version}",protocol="v2",code="200"}} '
        f"{requests - errors}",
        f'modelserver_requests_total{{model="{MODEL}",version="{version}",protocol="v2",code="500"}} {errors}',
    ]
    return "\n".join(lines) + "\n"


class FakePod:
    """A real HTTP server whose /metrics behaviour a test switches: ok, garbage, slow or hang."""

    def __init__(self, ip: str, version: str) -> None:
        self.ip, self.version = ip, version
        self.requests = self.errors = 0
        self.mode = "ok"
        self.release = asyncio.Event()  # lets a hanging handler end when the test is done

    async def handle(self, _: web.Request) -> web.Response:
        if self.mode == "garbage":
            return web.Response(text="<html>502 Bad Gateway</html>{{{")
        if self.mode == "hang":
            await self.release.wait()
        if self.mode == "http500":
            return web.Response(status=500, text="oops")
        return web.Response(text=metrics_text(self.version, self.requests, self.errors))

    def target(self) -> PodTarget:
        return PodTarget(name=f"pod-{self.ip}", uid=self.ip, ip=self.ip, version=self.version, started_at=None)


@asynccontextmanager
async def serving(pods: list[FakePod], port: int) -> AsyncIterator[None]:
    runners = []
    for pod in pods:
        app = web.Application()
        app.router.add_get("/metrics", pod.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, pod.ip, port).start()
        runners.append(runner)
    try:
        yield
    finally:
        for pod in pods:
            pod.release.set()
        for runner in runners:
            await runner.cleanup()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("fault", ["garbage", "hang", "http500"])
def test_one_unreadable_canary_pod_makes_the_tick_inconclusive_and_loses_nothing(fault: str) -> None:
    asyncio.run(_scenario(fault))


async def _scenario(fault: str) -> None:
    port = free_port()
    pods = [FakePod("127.0.0.2", "2"), FakePod("127.0.0.3", "2"), FakePod("127.0.0.4", "1")]
    bad = pods[1]
    source = PodScrapeSource(timeout=0.5)
    req = ScrapeRequest(key="ns/fraud", model=MODEL, canary_version="2", stable_version="1", port=port,
                        pods=[p.target() for p in pods])
    config = AnalysisConfig.from_spec({"minSamples": 10, "metrics": [
        {"name": "error-rate", "type": "errorRate", "margin": 0.05}]})
    async with serving(pods, port):
        assert await source.observe(req) is None  # the first look records baselines
        for pod in pods:
            pod.requests += 500
        bad.errors += 250  # the unreadable pod is the one failing half its requests
        bad.mode = fault
        tick = await source.observe(req)
        assert tick is not None and tick.canary is None and tick.stable is not None, tick
        assert any(bad.target().name in e for e in tick.errors), tick.errors
        outcome, _ = assess_tick(config, AnalysisState.initial(config), tick)
        assert outcome.overall is Verdict.INCONCLUSIVE, outcome
        bad.mode = "ok"
        tick = await source.observe(req)
    assert tick is not None and tick.canary is not None
    assert (tick.canary.requests, tick.canary.errors) == (1000, 250), "the gap is covered by the next read"
