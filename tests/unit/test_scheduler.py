"""The one tick scheduler (scheduler.py) that replaced a kopf timer per rollout: a rollout ticks when it is seen
first, when its decided time comes and when a change arrives, never twice at once, at least `spacing` apart, and
costs nothing in between; failures are retried; a forgotten rollout never ticks again."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from modelrollout.scheduler import Retry, TickScheduler

pytestmark = pytest.mark.unit
SPACING = 0.05


def body(generation: int = 1, observed: int = 1) -> dict[str, Any]:
    return {"metadata": {"uid": "u", "generation": generation}, "status": {"observedGeneration": observed}}


def changed(b: dict[str, Any]) -> bool:
    return bool(b["status"]["observedGeneration"] != b["metadata"]["generation"])


class Rollouts:
    """Ticks recorded per uid; each tick asks to run again after `every` seconds (None: only on a change)."""

    def __init__(self, every: float | None = None, duration: float = 0.0) -> None:
        self.every, self.duration = every, duration
        self.ticks: list[tuple[str, float, int]] = []  # (uid, started, generation seen)
        self.running: set[str] = set()
        self.overlaps = 0
        self.fail: Callable[[str], Awaitable[None]] | None = None

    async def run_tick(self, uid: str, b: dict[str, Any]) -> float | None:
        self.overlaps += uid in self.running
        self.running.add(uid)
        self.ticks.append((uid, time.monotonic(), b["metadata"]["generation"]))
        try:
            if self.fail is not None:
                await self.fail(uid)
            await asyncio.sleep(self.duration)
            b["status"]["observedGeneration"] = b["metadata"]["generation"]  # what a tick's status write does
        finally:
            self.running.discard(uid)
        return None if self.every is None else time.monotonic() + self.every

    def scheduler(self, first_seen_due: bool = True) -> TickScheduler:
        seen: set[str] = set()

        def is_due(b: dict[str, Any]) -> bool:
            first = b["metadata"]["uid"] not in seen and first_seen_due
            seen.add(b["metadata"]["uid"])
            return first or changed(b)

        return TickScheduler(self.run_tick, is_due=is_due, has_change=changed, spacing=SPACING)


async def _running(s: TickScheduler, seconds: float, during: Callable[[], Awaitable[None]] | None = None) -> None:
    task = asyncio.create_task(s.run())
    try:
        if during is not None:
            await during()
        await asyncio.sleep(seconds)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_a_rollout_ticks_when_first_seen_then_at_its_decided_times_only() -> None:
    r = Rollouts(every=0.2)

    async def scenario() -> None:
        s = r.scheduler()
        s.observe("u", body())
        await _running(s, 0.5)

    asyncio.run(scenario())
    starts = [t for _, t, _ in r.ticks]
    assert len(starts) == 3, starts  # at once, then 0.2 s and 0.4 s later
    assert all(0.18 < b - a < 0.3 for a, b in itertools.pairwise(starts)), starts


def test_a_thousand_settled_rollouts_cost_no_wake_ups_between_their_ticks() -> None:
    r = Rollouts(every=60.0)

    async def scenario() -> int:
        s = r.scheduler()
        for i in range(1000):
            s.observe(f"u{i}", {**body(), "metadata": {"uid": f"u{i}", "generation": 1}})
        woke = 0
        original = s._start_due

        def counted() -> None:
            nonlocal woke
            woke += 1
            original()

        s._start_due = counted  # type: ignore[method-assign]
        await _running(s, 0.5)
        return woke

    wake_ups = asyncio.run(scenario())
    assert len(r.ticks) == 1000, "each ticked once when first seen"
    assert wake_ups < 50, f"{wake_ups} scheduler wake-ups in 0.5 s for 1,000 settled rollouts"


def test_a_spec_change_ticks_at_once_and_one_seen_during_a_tick_right_after_it() -> None:
    r = Rollouts(every=None, duration=0.1)

    async def scenario() -> None:
        s = r.scheduler()
        b = body()
        s.observe("u", b)

        async def edits() -> None:
            await asyncio.sleep(0.05)  # the first tick runs
            s.observe("u", {**b, "metadata": {"uid": "u", "generation": 2}, "status": {"observedGeneration": 1}})

        await _running(s, 0.5, edits)

    asyncio.run(scenario())
    assert [g for _, _, g in r.ticks] == [1, 2], r.ticks
    assert r.overlaps == 0
    assert r.ticks[1][1] - r.ticks[0][1] >= 0.1 + SPACING - 0.01, "never overlapping, spacing after the end"


def test_the_rollout_s_own_status_write_seen_during_its_tick_does_not_tick_it_again() -> None:
    r = Rollouts(every=None, duration=0.1)

    async def scenario() -> None:
        s = r.scheduler()
        s.observe("u", body(generation=2, observed=1))

        async def own_write() -> None:
            await asyncio.sleep(0.05)
            s.observe("u", body(generation=2, observed=2))

        await _running(s, 0.4, own_write)

    asyncio.run(scenario())
    assert len(r.ticks) == 1, r.ticks


def test_a_failed_tick_is_retried_after_its_delay_and_a_crash_does_not_stop_the_others() -> None:
    r = Rollouts(every=None)
    calls = {"n": 0}

    async def fail_twice(uid: str) -> None:
        if uid != "u":
            return
        calls["n"] += 1
        if calls["n"] == 1:
            raise Retry(0.1)
        if calls["n"] == 2:
            raise RuntimeError("a bug in one rollout's tick")

    r.fail = fail_twice

    async def scenario() -> None:
        s = r.scheduler()
        s.crash_delay = 0.1
        s.observe("u", body())
        s.observe("v", {**body(), "metadata": {"uid": "v", "generation": 1}})
        await _running(s, 0.4)

    asyncio.run(scenario())
    # u: failed (Retry 0.1 s), crashed (crash_delay 0.1 s), then ticked; v ticked beside it all along
    assert [u for u, _, _ in r.ticks].count("u") == 3 and "v" in [u for u, _, _ in r.ticks], r.ticks


def test_a_forgotten_rollout_never_ticks_again() -> None:
    r = Rollouts(every=0.05)
    forgotten: list[float] = []

    async def scenario() -> None:
        s = r.scheduler()
        s.observe("u", body())

        async def delete() -> None:
            await asyncio.sleep(0.12)
            s.forget("u")
            forgotten.append(time.monotonic())

        await _running(s, 0.3, delete)
        assert s.size == 0

    asyncio.run(scenario())
    assert len(r.ticks) >= 2 and all(t < forgotten[0] for _, t, _ in r.ticks), (r.ticks, forgotten)
