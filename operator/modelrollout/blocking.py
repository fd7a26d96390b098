"""Blocking adapter calls run in worker threads, off kopf's event loop, with the wait for a free
thread measured (`modelrollout_api_queue_wait_seconds`), and a watch on the event loop's own lag
(`modelrollout_event_loop_lag_seconds`): together with the API call durations they say where a slow
tick spent its time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

from modelrollout import opmetrics
from modelrollout.kubecache import CacheMiss

T = TypeVar("T")
A = TypeVar("A")
LAG_PERIOD = 0.25


async def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    submitted = time.monotonic()

    def timed() -> T:
        opmetrics.QUEUE_SECONDS.observe(time.monotonic() - submitted)
        return fn(*args, **kwargs)

    return await asyncio.to_thread(timed)


async def read(adapter: A, view: A | None, fn: Callable[..., T], *args: Any) -> T:
    """`fn(view, *args)` right here on the event loop when `view` (the adapter's cache-only view, None
    without a watch cache) settles it from memory - a read, or a write found not needed; `fn(adapter, *args)`
    in a worker thread when it would have to call the API server (CacheMiss)."""
    if view is not None:
        try:
            return fn(view, *args)
        except CacheMiss:
            pass
    return await run(fn, adapter, *args)


async def watch_loop_lag(period: float = LAG_PERIOD) -> None:
    """Forever: how much later than asked a short sleep returns, i.e. how long ready callbacks
    (ticks parsing answers, kopf's own work) kept the loop from running anything else."""
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        await asyncio.sleep(period)
        opmetrics.LOOP_LAG_SECONDS.observe(max(0.0, loop.time() - started - period))
