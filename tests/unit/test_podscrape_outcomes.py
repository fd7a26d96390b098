"""The pod metric source reads the numeric outcomes the server counts (modelserver_outcome, _squares) into each
version's tick, summed over the pods of both versions as feedback is: real ServerMetrics pages on loopback
addresses, a negative outcome (a refund) that makes a sum fall, and a container restart."""

from __future__ import annotations

import asyncio

import pytest

from modelrollout.analysis.types import ArmTotals
from modelrollout.sources.podscrape import PodScrapeSource
from tests.unit.test_podscrape_faults import free_port
from tests.unit.test_podscrape_feedback import Pod, scrape_request, serve

pytestmark = pytest.mark.unit


class OutcomePod(Pod):
    def restart(self) -> None:
        super().restart()
        self.metrics.declare_outcomes(["revenue"])

    def outcomes(self, version: str, *values: float) -> None:
        for value in values:
            self.metrics.record_outcome("revenue", value, version)


async def _scenario() -> list[tuple[ArmTotals, ArmTotals]]:
    port = free_port()
    stable, canary = OutcomePod("127.0.0.31", "1"), OutcomePod("127.0.0.32", "2")
    runners = await serve(stable, canary, port=port)
    source = PodScrapeSource()
    request = scrape_request(stable, canary, port)
    seen = []

    async def look() -> None:
        tick = await source.observe(request)
        assert tick is not None and tick.stable is not None and tick.canary is not None, tick
        seen.append((tick.stable.outcomes["revenue"], tick.canary.outcomes["revenue"]))

    try:
        stable.outcomes("1", 100.0)  # history before the first look: a baseline, not counted
        assert await source.observe(request) is None
        stable.outcomes("1", 10.0, 20.0)
        canary.outcomes("1", 5.0)  # version 1's outcome, received by the canary's pod
        stable.outcomes("2", 8.0)  # a series first seen now, in a pod seen before: counts in full
        await look()
        stable.outcomes("1", -30.0)  # a refund: the sum falls, the count does not
        await look()
        canary.restart()  # its counters begin again: the new value is the increment
        canary.outcomes("2", 2.0)
        await look()
    finally:
        for runner in runners:
            await runner.cleanup()
    return seen


def test_a_version_s_outcomes_are_summed_over_the_pods_of_both_versions() -> None:
    assert asyncio.run(_scenario()) == [
        (ArmTotals(3, 35, 525), ArmTotals(1, 8, 64)),
        (ArmTotals(1, -30, 900), ArmTotals(0, 0, 0)),
        (ArmTotals(0, 0, 0), ArmTotals(1, 2, 4)),
    ]
