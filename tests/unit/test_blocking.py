"""The timing the operator exports to say where a slow tick went: thread wait and event-loop lag."""

from __future__ import annotations

import asyncio
import time
from contextlib import suppress

import pytest
from prometheus_client import Histogram

from modelrollout import blocking, opmetrics

pytestmark = pytest.mark.unit


def _count_and_sum(histogram: Histogram) -> tuple[float, float]:
    samples = {s.name: s.value for metric in histogram.collect() for s in metric.samples}
    name = histogram._name  # the family name without suffixes
    return samples[f"{name}_count"], samples[f"{name}_sum"]


def test_a_blocking_call_runs_in_a_thread_and_its_wait_for_a_worker_is_recorded() -> None:
    count, _ = _count_and_sum(opmetrics.QUEUE_SECONDS)

    async def main() -> int:
        return await blocking.run(lambda a, b=0: a + b, 2, b=3)

    assert asyncio.run(main()) == 5
    assert _count_and_sum(opmetrics.QUEUE_SECONDS)[0] == count + 1


def test_a_loop_held_by_blocking_work_shows_as_lag() -> None:
    count, total = _count_and_sum(opmetrics.LOOP_LAG_SECONDS)

    async def main() -> None:
        watch = asyncio.create_task(blocking.watch_loop_lag(period=0.01))
        await asyncio.sleep(0.05)
        time.sleep(0.2)  # what a tick parsing a big answer on the loop would do
        await asyncio.sleep(0.05)
        watch.cancel()
        with suppress(asyncio.CancelledError):
            await watch

    asyncio.run(main())
    new_count, new_total = _count_and_sum(opmetrics.LOOP_LAG_SECONDS)
    assert new_count > count
    assert new_total - total >= 0.15
