"""One scheduler for every rollout's ticks, instead of a kopf timer per rollout.

A kopf timer is one asyncio task per object that wakes every second, builds the handler's arguments and does
kopf's bookkeeping whether or not the rollout is due: at 500 settled rollouts that was most of the operator's CPU
(make bench-operator, docs/benchmarks.md). Here a rollout costs nothing between its ticks: the watch (a kopf
event handler) hands the latest body to `observe`, which runs the rollout at once when it is due now (a new
rollout, a spec change, a command), and otherwise the one task below sleeps until the earliest decided wake-up
time of all rollouts.

What the timer guaranteed is kept: a rollout's ticks never overlap, and one starts at least `spacing` seconds
after the previous one ended (the timer's interval), so a tick does not start from a status older than the one
the previous tick wrote because the watch had not delivered it yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

# (rollout uid, latest body) -> the time (monotonic seconds) the rollout should tick next, or None when it waits
# for a change; raising Retry(delay) asks for another tick after `delay` seconds.
RunTick = Callable[[str, dict[str, Any]], Awaitable[float | None]]
Predicate = Callable[[dict[str, Any]], bool]


class Retry(Exception):
    """A tick that failed in a way worth retrying: tick again after `delay` seconds."""

    def __init__(self, delay: float) -> None:
        super().__init__(f"retry in {delay:g}s")
        self.delay = delay


@dataclass
class _Rollout:
    body: dict[str, Any]
    wake_at: float | None = None  # monotonic; None: only a change wakes it
    running: bool = False
    ended_at: float = -1e9  # when its last tick ended (monotonic)
    poked: bool = False  # a change arrived while it ran: look again when it ends


@dataclass
class TickScheduler:
    run_tick: RunTick
    is_due: Predicate  # tick it now (its wake-up time came, or a change waits)
    has_change: Predicate  # a change waits (a new spec, a command): what a running tick cannot have seen
    spacing: float = 1.0
    crash_delay: float = 5.0  # after a tick raised something other than Retry
    clock: Callable[[], float] = time.monotonic
    _rollouts: dict[str, _Rollout] = field(default_factory=dict)
    _heap: list[tuple[float, str]] = field(default_factory=list)  # (wake_at, uid); stale entries skipped
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def observe(self, uid: str, body: dict[str, Any]) -> None:
        """The watch saw this rollout (created, changed, or listed at start): keep its body, wake it if due."""
        rollout = self._rollouts.get(uid)
        if rollout is None:
            rollout = self._rollouts[uid] = _Rollout(body)
        rollout.body = body
        if rollout.running:
            # Not is_due: its wake-up time has passed while it runs, and the event may be its own status write.
            rollout.poked = rollout.poked or self.has_change(body)
        elif self.is_due(body):
            self._wake(uid, rollout, self.clock())

    def forget(self, uid: str) -> None:
        """The rollout is gone: never tick it again (a running tick finishes)."""
        self._rollouts.pop(uid, None)

    @property
    def size(self) -> int:
        return len(self._rollouts)

    def _wake(self, uid: str, rollout: _Rollout, at: float) -> None:
        at = max(at, rollout.ended_at + self.spacing)
        if rollout.wake_at is not None and rollout.wake_at <= at:
            return  # already due as early
        rollout.wake_at = at
        heapq.heappush(self._heap, (at, uid))
        self._changed.set()

    async def run(self) -> None:
        """Start each rollout's tick when it is due, forever (cancel to stop; running ticks are cancelled too)."""
        try:
            while True:
                self._start_due()
                await self._sleep()
        finally:
            for task in self._tasks:
                task.cancel()

    def _start_due(self) -> None:
        now = self.clock()
        while self._heap and self._heap[0][0] <= now:
            at, uid = heapq.heappop(self._heap)
            rollout = self._rollouts.get(uid)
            if rollout is None or rollout.wake_at != at or rollout.running:
                continue  # forgotten, moved, or running (it is looked at again when its tick ends)
            rollout.wake_at, rollout.running, rollout.poked = None, True, False
            task = asyncio.get_running_loop().create_task(self._tick(uid, rollout), name=f"tick-{uid}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _sleep(self) -> None:
        self._changed.clear()
        timeout = max(0.0, self._heap[0][0] - self.clock()) if self._heap else None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    async def _tick(self, uid: str, rollout: _Rollout) -> None:
        next_at: float | None
        try:
            next_at = await self.run_tick(uid, rollout.body)
        except Retry as retry:
            next_at = self.clock() + retry.delay
        except Exception:  # a bug in one rollout's tick must not stop the others': logged, retried
            log.exception("tick of rollout %s failed; retrying in %gs", uid, self.crash_delay)
            next_at = self.clock() + self.crash_delay
        finally:
            rollout.running = False
            rollout.ended_at = self.clock()
        if self._rollouts.get(uid) is not rollout:
            return  # forgotten while it ran
        # Only a change seen while it ran brings the next tick forward: the body it ran on may still lack the
        # status it wrote (the watch delivers that later), and would look due again.
        if rollout.poked:
            next_at = self.clock() if next_at is None else min(next_at, self.clock())
        if next_at is not None:
            self._wake(uid, rollout, next_at)
